package wsapi_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// A client that never answers a server request (an event) is disconnected
// after the answer deadline, and its sessions stop (1012).
func TestServerRequestDeadline(t *testing.T) {
	env := startServer(t, wsapi.Config{RequestTimeout: 300 * time.Millisecond, AckTimeout: 1200 * time.Millisecond, Admins: []string{"watcher"}}, signaling.Options{})
	watch := dial(t, env.url)
	watch.Login("watcher", "")
	watch.OK("core", "event", "subscribe", msg{"class": "media", "subclass": "session", "type": "stop", "obj_id": "*"})

	mute := dial(t, env.url)
	mute.Login("mute", "")
	mute.SetAutoReply(false)
	sid := mute.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}})["session_id"].(string)
	// An event the client will not answer.
	watch.OK("core", "event", "send", msg{"class": "core", "subclass": "user_event", "type": "hello", "obj_id": "mute"})
	start := time.Now()
	mute.Next(apitest.IsEvent("core", "user_event", "hello", "mute"), 2*time.Second, "user event")
	err := mute.WaitClosed(3 * time.Second)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the deadline", el)
	}
	if code := closeCode(err); code != websocket.ClosePolicyViolation {
		t.Fatalf("close = %v", err)
	}
	ev := watch.Event("media", "session", "stop", sid)
	if num(body(ev)["code"]) != signaling.CodeRegisteredDown {
		t.Fatalf("stop = %v", ev)
	}

	// An ack buys time: 180 s in production, 1.2 s here.
	slow := dial(t, env.url)
	slow.Login("slow", "")
	slow.SetAutoReply(false)
	watch.OK("core", "event", "send", msg{"class": "core", "subclass": "user_event", "type": "hello", "obj_id": "slow"})
	req := slow.Next(apitest.IsEvent("core", "user_event", "hello", "slow"), 2*time.Second, "user event")
	slow.Send(msg{"ack": req["tid"]})
	time.Sleep(600 * time.Millisecond) // past the 300 ms deadline
	slow.Send(msg{"result": "ok", "tid": req["tid"]})
	slow.OK("core", "user", "list", nil) // still connected
	// Acked but never answered: closed after the ack deadline.
	watch.OK("core", "event", "send", msg{"class": "core", "subclass": "user_event", "type": "again", "obj_id": "slow"})
	req2 := slow.Next(apitest.IsEvent("core", "user_event", "again", "slow"), 2*time.Second, "user event")
	acked := time.Now()
	slow.Send(msg{"ack": req2["tid"]})
	err = slow.WaitClosed(4 * time.Second)
	if el := time.Since(acked); el < time.Second {
		t.Fatalf("closed %v after the ack, want ~1.2 s", el)
	}
	if closeCode(err) != websocket.ClosePolicyViolation {
		t.Fatalf("close = %v", err)
	}
}

// Server pings: core/ping with a time, every ping_interval after login; a
// client answering them stays; one that does not is closed.
func TestPing(t *testing.T) {
	env := startServer(t, wsapi.Config{PingInterval: 100 * time.Millisecond, RequestTimeout: 300 * time.Millisecond}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("u", "")
	var last float64
	for i := range 3 {
		m := c.Next(apitest.IsRequest("core", "", "ping"), 2*time.Second, "ping")
		d, _ := m["data"].(map[string]any)
		tm, _ := d["time"].(float64)
		if tm < float64(time.Now().Add(-time.Minute).Unix()) || tm < last {
			t.Fatalf("ping %d time = %v", i, d)
		}
		last = tm
	}
	c.OK("core", "user", "list", nil)

	// Before login nothing is pinged.
	pre := dial(t, env.url)
	if pre.Has(apitest.IsRequest("core", "", "ping"), 300*time.Millisecond) {
		t.Fatal("ping before login")
	}
	mute := dial(t, env.url)
	mute.Login("m", "")
	mute.SetAutoReply(false)
	mute.Next(apitest.IsRequest("core", "", "ping"), 2*time.Second, "ping")
	if err := mute.WaitClosed(3 * time.Second); closeCode(err) != websocket.ClosePolicyViolation {
		t.Fatalf("close = %v", err)
	}
}

// Idle connections (no traffic) and connections that never log in are closed.
func TestIdleAndLoginTimeout(t *testing.T) {
	env := startServer(t, wsapi.Config{IdleTimeout: 600 * time.Millisecond, LoginTimeout: 2 * time.Second}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("u", "")
	start := time.Now()
	err := c.WaitClosed(3 * time.Second)
	if el := time.Since(start); el < 550*time.Millisecond {
		t.Fatalf("idle close after %v", el)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || ce.Text != "Idle timeout" {
		t.Fatalf("close = %v", err)
	}
	// Traffic keeps it open.
	k := dial(t, env.url)
	k.Login("k", "")
	for range 8 {
		time.Sleep(100 * time.Millisecond) // the subject: traffic spread over more than the idle timeout
		k.OK("core", "user", "list", nil)
	}

	env2 := startServer(t, wsapi.Config{LoginTimeout: 300 * time.Millisecond}, signaling.Options{})
	n := dial(t, env2.url)
	err = n.WaitClosed(3 * time.Second)
	if !errors.As(err, &ce) || ce.Text != "Login timeout" {
		t.Fatalf("login timeout close = %v", err)
	}
}

// wait_timeout and ready_timeout stop sessions with 1060; set_answer moves
// a session from wait to ready; peer links stop dependent sessions (2026).
func TestSessionTimeoutsAndPeer(t *testing.T) {
	env := startServer(t, wsapi.Config{}, signaling.Options{})
	c := dial(t, env.url)
	c.Login("u", "")

	w := c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "wait_timeout": 0.2})["session_id"].(string)
	r := c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "answer": msg{"sdp": "y"}, "ready_timeout": 0.3})["session_id"].(string)
	if info := c.OK("media", "session", "info", msg{"session_id": r}); info["state"] != "ready" {
		t.Fatalf("info = %v", info)
	}
	mv := c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "wait_timeout": 0.3, "ready_timeout": 30})["session_id"].(string)
	if info := c.OK("media", "session", "info", msg{"session_id": mv}); info["state"] != "wait" {
		t.Fatalf("info = %v", info)
	}
	c.OK("media", "session", "set_answer", msg{"session_id": mv, "answer": msg{"sdp": "y"}})
	for _, id := range []string{w, r} {
		ev := c.Event("media", "session", "stop", id)
		if b := body(ev); num(b["code"]) != signaling.CodeSessionTimeout || b["reason"] != "Session timeout" {
			t.Fatalf("stop = %v", ev)
		}
	}
	time.Sleep(200 * time.Millisecond) // an absence (no timeout of mv) has no condition: a window
	if info := c.OK("media", "session", "info", msg{"session_id": mv}); info["state"] != "ready" {
		t.Fatalf("moved session = %v", info)
	}

	// Peer: b has peer mv; stopping mv stops b with 2026.
	b := c.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "peer": mv})["session_id"].(string)
	c.Fail(signaling.CodeSessionNotFound, "media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "peer": "ghost"})
	c.OK("media", "session", "stop", msg{"session_id": mv})
	ev := c.Event("media", "session", "stop", b)
	if num(body(ev)["code"]) != signaling.CodePeerHangup {
		t.Fatalf("peer stop = %v", ev)
	}
	if n := len(env.core.ListSessions()); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}
