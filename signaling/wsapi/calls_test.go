package wsapi_test

import (
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func inviteOf(t *testing.T, c *client) msg {
	t.Helper()
	m := c.Next(apitest.IsRequest("media", "call", "invite"), 5*time.Second, "invite")
	return m["data"].(map[string]any)
}

// The later release's callee commands: ringing (with early answer),
// answered; type session; callee fields "callee" and "session".
func TestCallLaterStyleToSession(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	bLogin := b.Login("bob", "")

	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	callID := a.OK("media", "call", "start", msg{"type": "session", "session_id": sid, "callee": bLogin,
		"offer": msg{"sdp": "A"}, "caller_name": "Alice"})["call_id"].(string)
	inv := inviteOf(t, b)
	if inv["call_id"] != callID || inv["type"] != "session" || inv["session"] != bLogin || inv["caller_name"] != "Alice" {
		t.Fatalf("invite = %v", inv)
	}
	b.OK("media", "call", "ringing", msg{"call_id": callID, "answer": msg{"sdp": "early"}})
	ev := a.Event("media", "call", "ringing", callID)
	if ans, _ := body(ev)["answer"].(map[string]any); ans["sdp"] != "early" {
		t.Fatalf("ringing = %v", ev)
	}
	// The callee links its own session to the call.
	bs := b.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "B"}, "answer": msg{"sdp": "B-ans"}})["session_id"].(string)
	b.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "B"}, "session_id": bs})
	ev = a.Event("media", "session", "answer", sid)
	if ans, _ := body(ev)["answer"].(map[string]any); ans["sdp"] != "B" {
		t.Fatalf("answer = %v", ev)
	}
	// A second answer is refused.
	b.Fail(signaling.CodeAlreadyAnswered, "media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "B2"}})

	// The callee hangs up the answered call: the caller gets hangup and its
	// session stops; the callee's linked session stops too.
	b.OK("media", "call", "hangup", msg{"call_id": callID, "reason": "bye"})
	ev = a.Event("media", "call", "hangup", callID)
	if b := body(ev); b["reason"] != "bye" || num(b["code"]) != signaling.CodeUnknown {
		t.Fatalf("hangup = %v", ev)
	}
	a.Event("media", "session", "stop", sid)
	b.Event("media", "session", "stop", bs)
	peers.WaitFor(t, 2*time.Second, "sessions gone", func() bool { return len(env.core.ListSessions()) == 0 })
}

// Rejection in both styles: when every invitee rejects, the caller gets
// rejected then hangup (2021); an error answer to the invite is a rejection.
func TestCallRejectedByAll(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b1 := dial(t, env.url)
	b1.Login("bob", "")
	b2 := dial(t, env.url)
	b2.Login("bob", "")
	b3 := dial(t, env.url)
	b3.SetAutoReply(false)
	b3.Login("bob", "")

	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "bob"})["call_id"].(string)
	inviteOf(t, b1)
	inviteOf(t, b2)
	inv3 := b3.Next(apitest.IsRequest("media", "call", "invite"), 5*time.Second, "invite")
	b3.Send(msg{"result": "error", "tid": inv3["tid"], "data": msg{"code": 2021, "error": "Busy here"}})
	b1.OK("core", "", "event", msg{"class": "media", "subclass": "call", "type": "rejected", "obj_id": callID,
		"body": msg{"code": 0, "error": "User Rejected"}})
	if a.Has(apitest.IsEvent("media", "call", "hangup", callID), 200*time.Millisecond) {
		t.Fatal("call hung up while an invitee still rings")
	}
	b2.OK("media", "call", "rejected", msg{"call_id": callID, "reason": "Not now"})
	ev := a.Event("media", "call", "rejected", callID)
	if b := body(ev); num(b["code"]) != signaling.CodeCallRejected || b["error"] != "Not now" {
		t.Fatalf("rejected = %v", ev)
	}
	ev = a.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeCallRejected {
		t.Fatalf("hangup = %v", ev)
	}
	b1.Fail(signaling.CodeCallNotFound, "media", "call", "ringing", msg{"call_id": callID})
}

// Ring timeout: nobody answers within ring_time -> 2023 to the caller and a
// hangup to every invitee; the linked session stops.
func TestCallRingTimeout(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")
	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	start := time.Now()
	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "bob", "session_id": sid, "ring_time": 0.3})["call_id"].(string)
	inviteOf(t, b)
	b.OK("media", "call", "ringing", msg{"call_id": callID})
	ev := a.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeNoAnswer {
		t.Fatalf("hangup = %v", ev)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("ring timeout after %v, want ~300ms", el)
	}
	ev = b.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeNoAnswer {
		t.Fatalf("callee hangup = %v", ev)
	}
	ev = a.Event("media", "session", "stop", sid)
	if num(body(ev)["code"]) != signaling.CodeNoAnswer {
		t.Fatalf("session stop = %v", ev)
	}
}

// No destination: ok reply first, then hangup 2022.
func TestCallNoDestination(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	for _, data := range []msg{
		{"type": "user", "user": "nobody"},
		{"type": "session", "session": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
		{"type": "sip", "url": "sip:bob@127.0.0.1"}, // no SIP resolver in this server
		{"callee": "nobody"},                        // no type: every resolver asked
	} {
		tid := a.NewTID()
		a.Send(msg{"class": "media", "subclass": "call", "cmd": "start", "tid": tid, "data": data})
		// The reply must come before the hangup event.
		var callID string
		for callID == "" {
			m := a.Next(func(msg) bool { return true }, 5*time.Second, "reply")
			if apitest.IsEvent("media", "call", "hangup", "")(m) {
				t.Fatalf("hangup before the reply: %v", m)
			}
			if m["result"] == "ok" {
				callID = m["data"].(map[string]any)["call_id"].(string)
			}
		}
		ev := a.Event("media", "call", "hangup", callID)
		if num(body(ev)["code"]) != signaling.CodeNoDestination {
			t.Fatalf("%v: hangup = %v", data, ev)
		}
	}
	// A caller does not ring itself.
	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "alice"})["call_id"].(string)
	a.Event("media", "call", "hangup", callID)
}

// The caller's session stopping hangs the call up; the caller hanging up
// before anyone answers cancels every invitee.
func TestCallSessionStopAndCancel(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")

	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "bob", "session_id": sid})["call_id"].(string)
	inviteOf(t, b)
	a.OK("media", "session", "stop", msg{"session_id": sid})
	ev := b.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeUserStop {
		t.Fatalf("hangup = %v", ev)
	}
	a.Event("media", "call", "hangup", callID)

	callID = a.OK("media", "call", "start", msg{"type": "user", "user": "bob"})["call_id"].(string)
	inviteOf(t, b)
	a.OK("media", "call", "hangup", msg{"call_id": callID, "code": 2025})
	ev = b.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeOriginatorCancel {
		t.Fatalf("cancel = %v", ev)
	}
	// Another user cannot hang up alice's call.
	callID = a.OK("media", "call", "start", msg{"type": "user", "user": "bob"})["call_id"].(string)
	inviteOf(t, b)
	c := dial(t, env.url)
	c.Login("carol", "")
	c.Fail(signaling.CodeCallNotFound, "media", "call", "hangup", msg{"call_id": callID})
	a.OK("media", "call", "hangup", msg{"call_id": callID})
}

// Disconnect cleanup: the caller's connection drops in an answered call:
// its session stops (1012) and the callee gets hangup 1012. A callee that
// drops while ringing is a rejection.
func TestDisconnectCleanup(t *testing.T) {
	env := startServer(t, wsapi.Config{Admins: []string{"watcher"}}, signaling.Options{})
	a := dial(t, env.url)
	a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")
	watch := dial(t, env.url)
	watch.Login("watcher", "")
	watch.OK("core", "event", "subscribe", msg{"class": "media", "subclass": "session", "type": "stop"})

	sid := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A"}})["session_id"].(string)
	a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "A2"}})
	callID := a.OK("media", "call", "start", msg{"type": "user", "user": "bob", "session_id": sid})["call_id"].(string)
	inviteOf(t, b)
	b.OK("media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "B"}})
	a.Event("media", "session", "answer", sid)
	a.WS.Close()

	ev := b.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeRegisteredDown {
		t.Fatalf("hangup = %v", ev)
	}
	for range 2 {
		ev = watch.Event("media", "session", "stop", "")
		if num(body(ev)["code"]) != signaling.CodeRegisteredDown {
			t.Fatalf("stop = %v", ev)
		}
	}
	peers.WaitFor(t, 2*time.Second, "sessions and calls cleaned", func() bool {
		return len(env.core.ListSessions()) == 0 && len(env.core.ListCalls()) == 0 && env.srv.ConnCount() == 2
	})

	// A ringing callee drops: the call is rejected (only invitee).
	a2 := dial(t, env.url)
	a2.Login("alice", "")
	callID = a2.OK("media", "call", "start", msg{"type": "user", "user": "bob"})["call_id"].(string)
	inviteOf(t, b)
	b.WS.Close()
	ev = a2.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeCallRejected {
		t.Fatalf("hangup after callee drop = %v", ev)
	}
}
