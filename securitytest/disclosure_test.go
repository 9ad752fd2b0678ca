package securitytest

import (
	"slices"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.3: a user sees only its own sessions, calls, rooms, connections and
// their events; an admin sees everything.
func TestCrossUserDisclosure(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, nil)
	alice, bob, root := login(t, e, "alice"), login(t, e, "bob"), login(t, e, "root")
	for _, c := range []*client{bob, root} {
		c.OK("core", "event", "subscribe", map[string]any{"class": "*"})
	}
	sid := alice.OK("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})["session_id"].(string)
	alice2 := login(t, e, "alice")
	callID := alice.OK("media", "call", "start", map[string]any{"type": "user", "user": "alice", "session_id": sid})["call_id"].(string)
	_ = alice2
	alice.OK("media", "room", "create", map[string]any{"class": "mcu", "room_id": "private", "private": true})
	alice.OK("media", "room", "create", map[string]any{"class": "mcu", "room_id": "lobby"})

	// Lists and info.
	if l := bob.List("media", "session", "list"); len(l) != 0 {
		t.Errorf("bob lists sessions %v", l)
	}
	if l := root.List("media", "session", "list"); !slices.Contains(l, any(sid)) {
		t.Errorf("root's session list %v lacks %s", l, sid)
	}
	if l := bob.List("media", "call", "list"); len(l) != 0 {
		t.Errorf("bob lists calls %v", l)
	}
	bob.Fail(signaling.CodeCallNotFound, "media", "call", "info", map[string]any{"call_id": callID})
	bob.Fail(signaling.CodeCallNotFound, "media", "call", "hangup", map[string]any{"call_id": callID})
	root.OK("media", "call", "info", map[string]any{"call_id": callID})
	for _, room := range []string{"private", "lobby"} {
		bob.Fail(signaling.CodeRoomNotFound, "media", "room", "info", map[string]any{"room_id": room})
		bob.Fail(signaling.CodeRoomNotFound, "media", "room", "destroy", map[string]any{"room_id": room})
	}
	if rooms := bob.List("media", "room", "list"); len(rooms) != 0 {
		t.Errorf("bob's room list %v", rooms)
	}
	// A room is a meeting place: bob joins the lobby by its id and then sees
	// it, but not the private room; only alice destroys the lobby.
	bob.Fail(signaling.CodeRoomNotFound, "media", "session", "start", map[string]any{"type": "mcu", "room_id": "private", "offer": rtpOffer()})
	bob.OK("media", "session", "start", map[string]any{"type": "mcu", "room_id": "lobby", "offer": rtpOffer()})
	bob.OK("media", "room", "info", map[string]any{"room_id": "lobby"})
	bob.Fail(signaling.CodeRoomNotFound, "media", "room", "destroy", map[string]any{"room_id": "lobby"})
	if rooms := bob.List("media", "room", "list"); len(rooms) != 1 {
		t.Errorf("bob's room list %v, want only the lobby", rooms)
	}
	if l := bob.List("core", "user", "list"); !slices.Equal(l, []any{"bob"}) {
		t.Errorf("bob's user list %v", l)
	}
	bob.Fail(signaling.CodeUserNotFound, "core", "user", "get", map[string]any{"user": "alice"})
	if d := root.OK("core", "user", "get", map[string]any{"user": "alice"}); len(d["sessions"].([]any)) != 2 {
		t.Errorf("root's view of alice: %v", d)
	}
	// Events aimed at alice's user, connections or objects.
	aliceLogin := alice.OK("core", "user", "get", map[string]any{"user": "alice"})["sessions"].([]any)[0].(map[string]any)["session_id"].(string)
	for _, target := range []map[string]any{
		{"class": "core", "subclass": "user_event", "type": "x", "obj_id": "alice"},
		{"class": "core", "subclass": "session_event", "type": "x", "obj_id": aliceLogin},
		{"class": "app", "subclass": "x", "type": "x", "obj_id": sid},
		{"class": "app", "subclass": "x", "type": "x", "obj_id": callID},
	} {
		bob.Fail(signaling.CodeInvalidOperation, "core", "event", "send", target)
	}
	bob.Fail(signaling.CodeSessionNotFound, "core", "session", "stop", map[string]any{"session_id": aliceLogin})

	// What alice's session and call published reached root, never bob.
	alice.OK("media", "session", "stop", map[string]any{"session_id": sid})
	peers.WaitFor(t, 5*time.Second, "root sees alice's session stop", func() bool {
		for _, ev := range root.Events() {
			if ev["class"] == "media" && ev["obj_id"] == sid && ev["type"] == "stop" {
				return true
			}
		}
		return false
	})
	root.OK("core", "core", "ping", nil)
	bob.OK("core", "core", "ping", nil)
	for _, ev := range bob.Events() {
		if ev["class"] == "media" && ev["subclass"] != "room" && ev["subclass"] != "session" || ev["class"] == "media" && ev["obj_id"] == "private" || ev["obj_id"] == sid {
			t.Errorf("bob received %s/%s/%s %s", ev["class"], ev["subclass"], ev["type"], ev["obj_id"])
		}
	}
}
