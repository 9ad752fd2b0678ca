package wsapi_test

import (
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// media/call/transfer: only a party of an answered call may ask, with a well-formed target;
// a party that cannot be moved (here an API connection, whose browser keeps its
// PeerConnection) is a clear 1006 and the call goes on. (SIP legs are moved for real in
// sip/sipgw's transfer tests.)
func TestCallTransferRules(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	bLogin := b.Login("bob", "")
	c := dial(t, env.url)
	c.Login("carol", "")

	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	callID := a.OK("media", "call", "start", msg{"type": "session", "session_id": sid, "callee": bLogin, "offer": msg{"sdp": "A"}})["call_id"].(string)
	inviteOf(t, b)
	// Not answered yet.
	a.Fail(signaling.CodeInvalidOperation, "media", "call", "transfer", msg{"call_id": callID, "target": "dave"})
	b.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "B"}})
	a.Event("media", "call", "accepted", callID)

	// Somebody else's call does not exist for carol.
	c.Fail(signaling.CodeCallNotFound, "media", "call", "transfer", msg{"call_id": callID, "target": "dave"})
	b.Fail(signaling.CodeMissingField, "media", "call", "transfer", msg{"call_id": callID})
	for _, bad := range []string{"dave\r\nVia: x", "sip:dave@h?Via=evil", "sip:<dave>", strings.Repeat("d", 300), "da ve", "sip:d@h\x00"} {
		b.Fail(signaling.CodeInvalidParameters, "media", "call", "transfer", msg{"call_id": callID, "target": bad})
	}
	b.Fail(signaling.CodeInvalidParameters, "media", "call", "transfer", msg{"call_id": callID, "target": "dave", "type": "session"})
	// Either party: the other one is an API connection, which cannot be moved.
	if txt := b.Fail(signaling.CodeNotImplemented, "media", "call", "transfer", msg{"call_id": callID, "target": "dave"}); !strings.Contains(txt, "caller") {
		t.Errorf("callee's transfer error %q does not name the caller", txt)
	}
	if txt := a.Fail(signaling.CodeNotImplemented, "media", "call", "transfer", msg{"call_id": callID, "target": "sip:dave@127.0.0.1"}); !strings.Contains(txt, "callee") {
		t.Errorf("caller's transfer error %q does not name the callee", txt)
	}
	// The call went on.
	if m, ok := env.core.LookupCall(callID); !ok || m.State != signaling.CallAnswered {
		t.Fatalf("call after refused transfers: %+v %v", m, ok)
	}
	a.OK("media", "call", "hangup", msg{"call_id": callID})
}
