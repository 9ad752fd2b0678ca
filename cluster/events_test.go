package cluster

import (
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// Subscribers on one node receive the events of objects on another, with wildcards, once
// each; a user sees only its own objects' events there too; a forwarded call's events reach
// its callee once.
func TestEventsAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	admin := n1.login("admin", nkclient.Options{})
	alice1 := n1.login("alice", nkclient.Options{})
	mallory := n1.login("mallory", nkclient.Options{})
	for _, c := range []*apitest.Conn{admin, alice1, mallory} {
		c.OK("core", "event", "subscribe", map[string]any{"class": "media", "subclass": "session"})
	}
	alice2 := n2.login("alice", nkclient.Options{})
	peers.WaitFor(t, 15*time.Second, "n2 sees n1's subscriptions", func() bool {
		n2.node.br.mu.Lock()
		defer n2.node.br.mu.Unlock()
		return len(n2.node.br.subs) > 0
	})

	_ = n1
	// A p2p session on n2: its start needs no backend.
	sid := alice2.OK("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})["session_id"].(string)
	alice2.OK("media", "session", "stop", map[string]any{"session_id": sid, "code": 1013})
	for _, c := range []*apitest.Conn{admin, alice1} {
		got := c.Event(apitest.Media("session", "stop", sid), nil)
		if got["code"] != float64(1013) {
			t.Fatalf("stop event on n1: %v", got)
		}
	}
	for _, ev := range append(admin.Pending(), mallory.Pending()...) {
		if ev.ObjID == sid && (ev.Type == "stop") {
			t.Fatalf("second or foreign stop event: %+v", ev)
		}
	}
}

// When a node dies, subscribers on the others see the end of its sessions they followed:
// media/session/stop with 2040 node_lost.
func TestNodeLostStopsSessionsForSubscribers(t *testing.T) {
	ns := startNATS(t)
	n1, n2 := newNode(t, ns, "n1"), newNode(t, ns, "n2")
	admin := n1.login("admin", nkclient.Options{})
	admin.OK("core", "event", "subscribe", map[string]any{"class": "media", "subclass": "session"})
	alice := n2.login("alice", nkclient.Options{})
	peers.WaitFor(t, 15*time.Second, "n2 sees n1's subscriptions", func() bool {
		n2.node.br.mu.Lock()
		defer n2.node.br.mu.Unlock()
		return len(n2.node.br.subs) > 0
	})

	sid := alice.OK("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})["session_id"].(string)
	alice.OK("media", "session", "set_answer", map[string]any{"session_id": sid, "answer": map[string]any{"sdp": "v=0 answer"}})
	admin.Event(apitest.Media("session", "answer", sid), nil)
	n2.stop()
	got := admin.Event(apitest.Media("session", "stop", sid), nil)
	if got["code"] != float64(2040) {
		t.Fatalf("stop after n2 died: %v", got)
	}
}
