package wsapi_test

import (
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func withRecBackend() (signaling.Options, *recBackend) {
	rb := &recBackend{}
	bs := signaling.NewBackends()
	bs.Register("rec", rb, signaling.TypeEcho, signaling.TypeProxy, signaling.TypePark)
	return signaling.Options{Backends: bs}, rb
}

// The seed's "Start a Session", "Update a Session" and "Stop a Session"
// samples, as a transcript against the real server (echo served by a
// recording test backend).
func TestSeedSessionStartUpdateStop(t *testing.T) {
	opts, rb := withRecBackend()
	env := startServer(t, wsapi.Config{}, opts)
	c := dial(t, env.url)
	c.Login("user@domain.com", "any")

	// start: the reply carries session_id and the backend's answer.
	d := c.OK("media", "session", "start", msg{"type": "echo", "offer": msg{"sdp": "v=0..", "x_custom": 7}})
	sid, _ := d["session_id"].(string)
	if len(sid) != 36 {
		t.Fatalf("session_id %q is not a UUID", sid)
	}
	if ans, _ := d["answer"].(map[string]any); ans["sdp"] != "v=0 echo-answer" {
		t.Fatalf("answer = %v", d["answer"])
	}
	if n, _, _ := rb.snapshot(); n != 1 {
		t.Fatalf("backend started %d sessions", n)
	}
	if rb.lastMedia().req.Offer["x_custom"] != float64(7) {
		t.Errorf("unknown offer field lost: %v", rb.lastMedia().req.Offer)
	}

	// update, seed spelling (type) and later spelling (update_type).
	c.OK("media", "session", "update", msg{"type": "media", "session_id": sid, "record": true, "use_audio": false, "bitrate": 100000})
	c.OK("media", "session", "update", msg{"update_type": "media", "session_id": sid, "bitrate": 5000})
	if _, ups, _ := rb.snapshot(); len(ups) != 2 || ups[0] != "media" || ups[1] != "media" {
		t.Fatalf("backend updates = %v", ups)
	}
	c.Fail(signaling.CodeInvalidParameters, "media", "session", "update", msg{"type": "bad", "session_id": sid})
	c.Fail(signaling.CodeMissingField, "media", "session", "update", msg{"session_id": sid})

	info := c.OK("media", "session", "info", msg{"session_id": sid})
	if info["type"] != "echo" || info["state"] != "ready" || info["backend"] != "rec" {
		t.Fatalf("info = %v", info)
	}

	// stop with code and reason: both travel in the stop event.
	c.OK("media", "session", "stop", msg{"session_id": sid, "code": 2302, "reason": "bye now"})
	ev := c.Event("media", "session", "stop", sid)
	if b := body(ev); num(b["code"]) != 2302 || b["reason"] != "bye now" {
		t.Fatalf("stop event body = %v", b)
	}
	if _, _, stops := rb.snapshot(); len(stops) != 1 || stops[0].Code != 2302 {
		t.Fatalf("backend stops = %v", stops)
	}
	c.Fail(signaling.CodeSessionNotFound, "media", "session", "stop", msg{"session_id": sid})
}

// The seed's "Start a call" to a user with two logged-in connections, as a
// transcript: invites to both, ringing (seed event style), acceptance by one
// with the answer reaching the caller's session, hangup of the other, then
// the caller's hangup reaching the callee and stopping the session.
func TestSeedCallToUserTwoConnections(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	caller := dial(t, env.url)
	caller.Login("myuser@domain.com", "x")
	b1 := dial(t, env.url)
	b1.Login("user@domain.com", "x")
	b2 := dial(t, env.url)
	b2.Login("user@domain.com", "x")

	d := caller.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "v=0..", "caller_name": "My Name", "caller_id": "myuser@domain.com"}})
	sid := d["session_id"].(string)
	if _, has := d["answer"]; has {
		t.Fatalf("p2p start must not carry an answer: %v", d)
	}
	d = caller.OK("media", "call", "start", msg{"type": "user", "session_id": sid, "user": "user@domain.com",
		"offer": msg{"sdp": "v=0..", "caller_name": "My Name", "caller_id": "myuser@domain.com"}})
	callID, _ := d["call_id"].(string)
	if len(callID) != 36 {
		t.Fatalf("call_id = %v", d)
	}

	for i, b := range []*client{b1, b2} {
		inv := b.Next(apitest.IsRequest("media", "call", "invite"), 5*time.Second, "invite")
		id := inv["data"].(map[string]any)
		if id["call_id"] != callID || id["type"] != "user" || id["user"] != "user@domain.com" {
			t.Fatalf("invite %d = %v", i, inv)
		}
		if off, _ := id["offer"].(map[string]any); off["sdp"] != "v=0.." || off["caller_name"] != "My Name" {
			t.Fatalf("invite %d offer = %v", i, id["offer"])
		}
		if id["caller_name"] != "My Name" || id["caller_id"] != "myuser@domain.com" {
			t.Fatalf("invite %d caller = %v", i, id)
		}
	}

	// b1 rings (seed: a core/event request from the callee).
	b1.OK("core", "", "event", msg{"class": "media", "subclass": "call", "type": "ringing", "obj_id": callID})
	caller.Event("media", "call", "ringing", callID)

	// b2 accepts with its answer.
	b2.OK("core", "", "event", msg{"class": "media", "subclass": "call", "type": "accepted", "obj_id": callID,
		"body": msg{"answer": msg{"sdp": "v=0 callee"}}})
	ev := caller.Event("media", "session", "answer", sid)
	if a, _ := body(ev)["answer"].(map[string]any); a["sdp"] != "v=0 callee" {
		t.Fatalf("session answer event = %v", ev)
	}
	ev = caller.Event("media", "call", "accepted", callID)
	if a, _ := body(ev)["answer"].(map[string]any); a["sdp"] != "v=0 callee" {
		t.Fatalf("call accepted event = %v", ev)
	}
	caller.Event("media", "call", "answer", callID)
	info := caller.OK("media", "session", "info", msg{"session_id": sid})
	if info["state"] != "ready" || info["call_id"] != callID {
		t.Fatalf("caller session info = %v", info)
	}

	// b1 was answered elsewhere.
	ev = b1.Event("media", "call", "hangup", callID)
	if num(body(ev)["code"]) != signaling.CodeOriginatorCancel {
		t.Fatalf("b1 hangup = %v", ev)
	}
	// b1 is out of the call now.
	b1.Fail(signaling.CodeAlreadyAnswered, "media", "call", "answered", msg{"call_id": callID, "answer": msg{"sdp": "late"}})

	// The caller hangs up (seed sample fields).
	caller.OK("media", "call", "hangup", msg{"call_id": callID, "code": 0, "error": "User hangup"})
	ev = b2.Event("media", "call", "hangup", callID)
	if b := body(ev); b["reason"] != "User hangup" || b["error"] != "User hangup" {
		t.Fatalf("b2 hangup = %v", ev)
	}
	caller.Event("media", "call", "hangup", callID)
	ev = caller.Event("media", "session", "stop", sid)
	if body(ev)["reason"] != "User hangup" {
		t.Fatalf("session stop = %v", ev)
	}
	caller.Fail(signaling.CodeCallNotFound, "media", "call", "hangup", msg{"call_id": callID})
	if n := len(env.core.ListSessions()); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
	if n := len(env.core.ListCalls()); n != 0 {
		t.Fatalf("%d calls left", n)
	}
}
