package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// Session and call commands by id work from any node, under the same ownership rules: the
// user's other connection on another node acts on the session, another user is told it does
// not exist, an admin sees it; an unknown id is not found anywhere.
func TestCommandsByIDAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	box := newInbox(t)
	alice2 := n2.login("alice", nkclient.Options{})
	n2.login("bob", box.opts("bob"))
	alice1 := n1.login("alice", nkclient.Options{})
	mallory := n1.login("mallory", nkclient.Options{})
	admin := n1.login("admin", nkclient.Options{})

	sid := alice2.OK("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0 offer"}})["session_id"].(string)
	peers.WaitFor(t, 15*time.Second, "the session reachable from n1", func() bool {
		return alice1.Req("media", "session", "info", map[string]any{"session_id": sid}, nil) == nil
	})

	info := alice1.OK("media", "session", "info", map[string]any{"session_id": sid})
	if info["session_id"] != sid || info["state"] != signaling.SessionWait {
		t.Fatalf("info from n1: %v", info)
	}
	mallory.Fail(signaling.CodeSessionNotFound, "media", "session", "info", map[string]any{"session_id": sid})
	mallory.Fail(signaling.CodeSessionNotFound, "media", "session", "stop", map[string]any{"session_id": sid})
	admin.OK("media", "session", "info", map[string]any{"session_id": sid})
	alice1.OK("media", "session", "set_candidate", map[string]any{"session_id": sid, "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"})
	alice1.OK("media", "session", "set_answer", map[string]any{"session_id": sid, "answer": map[string]any{"sdp": "v=0 answer"}})
	if st := alice1.OK("media", "session", "info", map[string]any{"session_id": sid})["state"]; st != signaling.SessionReady {
		t.Fatalf("state after a set_answer from n1: %v", st)
	}
	alice1.OK("media", "session", "stop", map[string]any{"session_id": sid, "code": 1013, "reason": "from n1"})
	if got := alice2.Event(apitest.Media("session", "stop", sid), nil); got["reason"] != "from n1" {
		t.Fatalf("stop on n2: %v", got)
	}
	alice1.Fail(signaling.CodeSessionNotFound, "media", "session", "info", map[string]any{"session_id": sid})

	// A call placed on n2, looked at and hung up from n1.
	callID, err := alice2.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	inv := box.next().inv
	peers.WaitFor(t, 15*time.Second, "the call reachable from n1", func() bool {
		return alice1.Req("media", "call", "info", map[string]any{"call_id": callID}, nil) == nil
	})

	if ci := alice1.OK("media", "call", "info", map[string]any{"call_id": callID}); ci["callee"] != "bob" {
		t.Fatalf("call info from n1: %v", ci)
	}
	mallory.Fail(signaling.CodeCallNotFound, "media", "call", "hangup", map[string]any{"call_id": callID})
	alice1.OK("media", "call", "hangup", map[string]any{"call_id": callID, "reason": "from n1"})
	if h := hangupOf(t, inv); h.Reason != "from n1" {
		t.Fatalf("bob's invite ended with %+v", h)
	}
	alice1.Fail(signaling.CodeCallNotFound, "media", "call", "info", map[string]any{"call_id": callID})
}

// media/session/list and media/call/list span the cluster, for the user's own objects (an
// admin: every object).
func TestListsSpanCluster(t *testing.T) {
	ns := startNATS(t)
	n1, n2, n3 := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	box := newInbox(t)
	n3.login("bob", box.opts("bob"))
	alice1, alice2 := n1.login("alice", nkclient.Options{}), n2.login("alice", nkclient.Options{})
	mallory := n3.login("mallory", nkclient.Options{})
	admin := n3.login("admin", nkclient.Options{})
	offer := map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}}
	s1 := alice1.OK("media", "session", "start", offer)["session_id"].(string)
	s2 := alice2.OK("media", "session", "start", offer)["session_id"].(string)
	sm := mallory.OK("media", "session", "start", offer)["session_id"].(string)
	waitUser(t, n2, "bob", 1)
	callID, err := alice2.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	box.next()
	list := func(c *apitest.Conn, what string) []string {
		var ids []string
		if err := c.Req("media", what, "list", nil, &ids); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	has := func(ids []string, want ...string) bool {
		for _, w := range want {
			if !slices.Contains(ids, w) {
				return false
			}
		}
		return true
	}
	if got := list(alice1, "session"); !has(got, s1, s2) || slices.Contains(got, sm) {
		t.Fatalf("alice's sessions from n1: %v (want %s %s, not %s)", got, s1, s2, sm)
	}
	if got := list(admin, "session"); !has(got, s1, s2, sm) {
		t.Fatalf("admin's sessions: %v", got)
	}
	if got := list(alice1, "call"); !slices.Equal(got, []string{callID}) {
		t.Fatalf("alice's calls from n1: %v, want [%s]", got, callID)
	}
	if got := list(mallory, "call"); len(got) != 0 {
		t.Fatalf("mallory's calls: %v", got)
	}
	if got := list(admin, "call"); !slices.Equal(got, []string{callID}) {
		t.Fatalf("admin's calls (a forwarded call is listed once): %v", got)
	}
}

// fakeRooms is a room provider without media.
type fakeRooms struct {
	mu    sync.Mutex
	rooms map[string]string
}

func (f *fakeRooms) CreateRoom(_ context.Context, class, id string, _ map[string]any) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rooms == nil {
		f.rooms = map[string]string{}
	}
	f.rooms[id] = class
	return id, nil
}

func (f *fakeRooms) DestroyRoom(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rooms, id)
	return nil
}

func (f *fakeRooms) Rooms() []signaling.RoomSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []signaling.RoomSummary
	for id, c := range f.rooms {
		out = append(out, signaling.RoomSummary{RoomID: id, Class: c})
	}
	return out
}

func (f *fakeRooms) RoomInfo(id string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.rooms[id]; ok {
		return map[string]any{"class": c}, nil
	}
	return nil, signaling.Errorf(signaling.CodeRoomNotFound, "Room not found: %s", id)
}

// media/room/list spans the cluster: a user sees the rooms it owns on other nodes, an admin
// every room, another user none.
func TestRoomListSpansCluster(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	n2.core.Backends().RegisterRooms("fake", &fakeRooms{}, signaling.RoomSFU)
	alice2 := n2.login("alice", nkclient.Options{})
	alice2.OK("media", "room", "create", map[string]any{"class": "sfu", "room_id": "r-n2"})
	alice1 := n1.login("alice", nkclient.Options{})
	mallory := n1.login("mallory", nkclient.Options{})
	admin := n1.login("admin", nkclient.Options{})
	rooms := func(c *apitest.Conn) []string {
		var rs []signaling.RoomSummary
		if err := c.Req("media", "room", "list", nil, &rs); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.RoomID)
		}
		return ids
	}
	peers.WaitFor(t, 15*time.Second, "n1 sees n2", func() bool { return len(rooms(admin)) == 1 })
	if got := rooms(alice1); !slices.Equal(got, []string{"r-n2"}) {
		t.Fatalf("alice's rooms from n1: %v", got)
	}
	if got := rooms(mallory); len(got) != 0 {
		t.Fatalf("mallory's rooms: %v", got)
	}
	// media/room/info from any node, under the room rules.
	peers.WaitFor(t, 15*time.Second, "the room reachable from n1", func() bool {
		return alice1.Req("media", "room", "info", map[string]any{"room_id": "r-n2"}, nil) == nil
	})

	if info := admin.OK("media", "room", "info", map[string]any{"room_id": "r-n2"}); info["class"] != "sfu" {
		t.Fatalf("room info from n1: %v", info)
	}
	mallory.Fail(signaling.CodeRoomNotFound, "media", "room", "info", map[string]any{"room_id": "r-n2"})
	mallory.Fail(signaling.CodeRoomNotFound, "media", "room", "info", map[string]any{"room_id": "nowhere"})
}
