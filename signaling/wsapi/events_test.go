package wsapi_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// Subscriptions with '*' on each selector (including a '*' subclass with a
// concrete type), body merge, unsubscribe, get_subscriptions, event/send
// and the automatic user/session subscriptions.
func TestEventsSubscribe(t *testing.T) {
	env := startServer(t, wsapi.Config{Admins: []string{"bob"}}, signaling.Options{})
	a := dial(t, env.url)
	aLogin := a.Login("alice", "")
	b := dial(t, env.url)
	b.Login("bob", "")

	r := a.Req("core", "event", "get_subscriptions", nil)
	got, _ := r["data"].([]any)
	want := []any{
		map[string]any{"class": "core", "subclass": "session_event", "type": "*", "obj_id": aLogin},
		map[string]any{"class": "core", "subclass": "user_event", "type": "*", "obj_id": "alice"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("automatic subscriptions = %v", got)
	}

	// '*' subclass with a concrete type, body merged (event keys win).
	a.OK("core", "event", "subscribe", msg{"class": "chat", "subclass": "*", "type": "msg", "body": msg{"room": "lobby", "text": "default"}})
	b.OK("core", "event", "send", msg{"class": "chat", "subclass": "anything", "type": "msg", "obj_id": "o1", "body": msg{"text": "hi"}})
	ev := a.Event("chat", "anything", "msg", "o1")
	if bd := body(ev); bd["room"] != "lobby" || bd["text"] != "hi" {
		t.Fatalf("merged body = %v", bd)
	}
	b.OK("core", "event", "send", msg{"class": "chat", "subclass": "anything", "type": "other", "obj_id": "o1"})
	if a.Has(apitest.IsEvent("chat", "anything", "other", ""), 200*time.Millisecond) {
		t.Fatal("type filter ignored")
	}
	// '*' obj_id with concrete subclass and type; and a concrete obj_id.
	a.OK("core", "event", "subscribe", msg{"class": "game", "subclass": "move", "type": "*", "obj_id": "g7"})
	b.OK("core", "event", "send", msg{"class": "game", "subclass": "move", "type": "left", "obj_id": "g7"})
	a.Event("game", "move", "left", "g7")
	b.OK("core", "event", "send", msg{"class": "game", "subclass": "move", "type": "left", "obj_id": "g8"})
	if a.Has(apitest.IsEvent("game", "move", "left", "g8"), 200*time.Millisecond) {
		t.Fatal("obj_id filter ignored")
	}
	// Unsubscribe stops delivery; unknown subscription is an error.
	a.OK("core", "event", "unsubscribe", msg{"class": "chat", "subclass": "*", "type": "msg"})
	a.Fail(signaling.CodeInvalidParameters, "core", "event", "unsubscribe", msg{"class": "chat", "subclass": "*", "type": "msg"})
	a.Fail(signaling.CodeMissingField, "core", "event", "subscribe", msg{"type": "x"})
	b.OK("core", "event", "send", msg{"class": "chat", "subclass": "x", "type": "msg", "obj_id": "o2"})
	if a.Has(apitest.IsEvent("chat", "x", "msg", ""), 200*time.Millisecond) {
		t.Fatal("delivered after unsubscribe")
	}

	// Automatic subscriptions: user events and session events reach alice.
	b.OK("core", "event", "send", msg{"class": "core", "subclass": "user_event", "type": "note", "obj_id": "alice", "body": msg{"n": 1}})
	if bd := body(a.Event("core", "user_event", "note", "alice")); num(bd["n"]) != 1 {
		t.Fatal("user event body lost")
	}
	b.OK("core", "event", "send", msg{"class": "core", "subclass": "session_event", "type": "poke", "obj_id": aLogin})
	a.Event("core", "session_event", "poke", aLogin)

	// A session start subscribes (with events_body); subscribe:false does not.
	s1 := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "events_body": msg{"tag": "t1"}})["session_id"].(string)
	s2 := a.OK("media", "session", "start", msg{"type": "p2p", "offer": msg{"sdp": "x"}, "subscribe": false})["session_id"].(string)
	a.OK("media", "session", "stop", msg{"session_id": s2})
	a.OK("media", "session", "stop", msg{"session_id": s1})
	ev = a.Event("media", "session", "stop", s1)
	if body(ev)["tag"] != "t1" {
		t.Fatalf("events_body not merged: %v", ev)
	}
	if a.Has(apitest.IsEvent("media", "session", "stop", s2), 200*time.Millisecond) {
		t.Fatal("subscribe:false still subscribed")
	}
	// The session's automatic subscription died with the session.
	r = a.Req("core", "event", "get_subscriptions", nil)
	if n := len(r["data"].([]any)); n != 3 {
		t.Fatalf("subscriptions after stop: %v", r["data"])
	}
}

// user/list, user/get (an admin's view) and core session/stop (which
// disconnects that connection).
func TestUsersAndCoreSessionStop(t *testing.T) {
	env := startServer(t, wsapi.Config{Admins: []string{"admin"}}, signaling.Options{})
	adm := dial(t, env.url)
	adm.Login("admin", "")
	a := dial(t, env.url)
	a.Login("alice", "")
	b1 := dial(t, env.url)
	b1.OK("core", "user", "login", msg{"user": "bob", "password": "", "meta": msg{"device": "phone"}})
	b2 := dial(t, env.url)
	b2ID := b2.Login("bob", "")

	r := adm.Req("core", "user", "list", nil)
	if !reflect.DeepEqual(r["data"], []any{"admin", "alice", "bob"}) {
		t.Fatalf("user/list = %v", r)
	}
	// A user sees only itself.
	if r := a.Req("core", "user", "list", nil); !reflect.DeepEqual(r["data"], []any{"alice"}) {
		t.Fatalf("alice's user/list = %v", r)
	}
	a.Fail(signaling.CodeUserNotFound, "core", "user", "get", msg{"user": "bob"})
	d := adm.OK("core", "user", "get", msg{"user": "bob"})
	sessions, _ := d["sessions"].([]any)
	if len(sessions) != 2 {
		t.Fatalf("user/get = %v", d)
	}
	metaSeen := false
	for _, s := range sessions {
		if m, _ := s.(map[string]any)["meta"].(map[string]any); m["device"] == "phone" {
			metaSeen = true
		}
	}
	if !metaSeen {
		t.Fatalf("meta missing: %v", d)
	}
	// alice cannot stop bob's connection; bob can.
	a.Fail(signaling.CodeSessionNotFound, "core", "session", "stop", msg{"session_id": b2ID})
	b1.OK("core", "session", "stop", msg{"session_id": b2ID})
	err := b2.WaitClosed(2 * time.Second)
	if closeCode(err) != websocket.CloseNormalClosure {
		t.Fatalf("close = %v", err)
	}
	peers.WaitFor(t, 2*time.Second, "bob has one connection", func() bool {
		d := adm.OK("core", "user", "get", msg{"user": "bob"})
		return len(d["sessions"].([]any)) == 1
	})

}
