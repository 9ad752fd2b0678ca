package securitytest

import (
	"github.com/nkbridge/nkbridge/internal/peers"
	"slices"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.3: a user sees only its own sessions, calls, rooms, connections and
// their events; an admin sees everything.
func TestCrossUserDisclosure(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, nil)
	alice, bob, root := login(t, e, "alice"), login(t, e, "bob"), login(t, e, "root")
	for _, c := range []*client{bob, root} {
		c.ok("core", "event", "subscribe", map[string]any{"class": "*"})
	}
	sid := alice.ok("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})["session_id"].(string)
	alice2 := login(t, e, "alice")
	callID := alice.ok("media", "call", "start", map[string]any{"type": "user", "user": "alice", "session_id": sid})["call_id"].(string)
	_ = alice2
	alice.ok("media", "room", "create", map[string]any{"class": "mcu", "room_id": "private", "private": true})
	alice.ok("media", "room", "create", map[string]any{"class": "mcu", "room_id": "lobby"})

	// Lists and info.
	if l := bob.list("media", "session", "list"); len(l) != 0 {
		t.Errorf("bob lists sessions %v", l)
	}
	if l := root.list("media", "session", "list"); !slices.Contains(l, any(sid)) {
		t.Errorf("root's session list %v lacks %s", l, sid)
	}
	if l := bob.list("media", "call", "list"); len(l) != 0 {
		t.Errorf("bob lists calls %v", l)
	}
	bob.fails(signaling.CodeCallNotFound, "media", "call", "info", map[string]any{"call_id": callID})
	bob.fails(signaling.CodeCallNotFound, "media", "call", "hangup", map[string]any{"call_id": callID})
	root.ok("media", "call", "info", map[string]any{"call_id": callID})
	for _, room := range []string{"private", "lobby"} {
		bob.fails(signaling.CodeRoomNotFound, "media", "room", "info", map[string]any{"room_id": room})
		bob.fails(signaling.CodeRoomNotFound, "media", "room", "destroy", map[string]any{"room_id": room})
	}
	if rooms := bob.list("media", "room", "list"); len(rooms) != 0 {
		t.Errorf("bob's room list %v", rooms)
	}
	// A room is a meeting place: bob joins the lobby by its id and then sees
	// it, but not the private room; only alice destroys the lobby.
	bob.fails(signaling.CodeRoomNotFound, "media", "session", "start", map[string]any{"type": "mcu", "room_id": "private", "offer": rtpOffer()})
	bob.ok("media", "session", "start", map[string]any{"type": "mcu", "room_id": "lobby", "offer": rtpOffer()})
	bob.ok("media", "room", "info", map[string]any{"room_id": "lobby"})
	bob.fails(signaling.CodeRoomNotFound, "media", "room", "destroy", map[string]any{"room_id": "lobby"})
	if rooms := bob.list("media", "room", "list"); len(rooms) != 1 {
		t.Errorf("bob's room list %v, want only the lobby", rooms)
	}
	if l := bob.list("core", "user", "list"); !slices.Equal(l, []any{"bob"}) {
		t.Errorf("bob's user list %v", l)
	}
	bob.fails(signaling.CodeUserNotFound, "core", "user", "get", map[string]any{"user": "alice"})
	if d := root.ok("core", "user", "get", map[string]any{"user": "alice"}); len(d["sessions"].([]any)) != 2 {
		t.Errorf("root's view of alice: %v", d)
	}
	// Events aimed at alice's user, connections or objects.
	aliceLogin := alice.ok("core", "user", "get", map[string]any{"user": "alice"})["sessions"].([]any)[0].(map[string]any)["session_id"].(string)
	for _, target := range []map[string]any{
		{"class": "core", "subclass": "user_event", "type": "x", "obj_id": "alice"},
		{"class": "core", "subclass": "session_event", "type": "x", "obj_id": aliceLogin},
		{"class": "app", "subclass": "x", "type": "x", "obj_id": sid},
		{"class": "app", "subclass": "x", "type": "x", "obj_id": callID},
	} {
		bob.fails(signaling.CodeInvalidOperation, "core", "event", "send", target)
	}
	bob.fails(signaling.CodeSessionNotFound, "core", "session", "stop", map[string]any{"session_id": aliceLogin})

	// What alice's session and call published reached root, never bob.
	alice.ok("media", "session", "stop", map[string]any{"session_id": sid})
	peers.WaitFor(t, 5*time.Second, "root sees alice's session stop", func() bool {
		for _, ev := range root.events() {
			if ev.Class == "media" && ev.ObjID == sid && ev.Type == "stop" {
				return true
			}
		}
		return false
	})
	root.ok("core", "core", "ping", nil)
	bob.ok("core", "core", "ping", nil)
	for _, ev := range bob.events() {
		if ev.Class == "media" && ev.Subclass != "room" && ev.Subclass != "session" || ev.Class == "media" && ev.ObjID == "private" || ev.ObjID == sid {
			t.Errorf("bob received %s/%s/%s %s", ev.Class, ev.Subclass, ev.Type, ev.ObjID)
		}
	}
}
