package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// A node_id alive in the cluster is refused, with a message naming the setting.
func TestNodeIDAliveRefused(t *testing.T) {
	ns := startNATS(t)
	newNode(t, ns, "n1")
	core := signaling.New(signaling.Options{})
	defer core.Close()
	_, err := Start(t.Context(), Options{Core: core, Config: Config{NATSURL: ns.url(), NodeID: "n1", PresenceTTL: testTTL}})
	if err == nil || !strings.Contains(err.Error(), "cluster.node_id") || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("second n1: %v", err)
	}
}

// Users logged in on one node are listed and described on every node; a node killed
// abruptly loses its users within presence_ttl; one that stops cleanly loses them at once.
func TestPresenceAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	n1, n2, n3 := newNode(t, ns, "n1"), newNode(t, ns, "n2"), newNode(t, ns, "n3")
	n1.login("alice", nkclient.Options{})
	n2.login("bob", nkclient.Options{})
	admin := n3.login("admin", nkclient.Options{})
	users := func() []string {
		var got []string
		if err := admin.Req("core", "user", "list", nil, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	peers.WaitFor(t, 15*time.Second, "alice and bob listed on n3", func() bool {
		u := users()
		return slices.Contains(u, "alice") && slices.Contains(u, "bob") && slices.Contains(u, "admin")
	})

	got := admin.OK("core", "user", "get", map[string]any{"user": "bob"})
	ss, _ := got["sessions"].([]any)
	if len(ss) != 1 || ss[0].(map[string]any)["node"] != "n2" {
		t.Fatalf("bob on n3: %v", got)
	}
	// A user sees only itself, wherever it is.
	var mine []string
	if err := n1.login("carol", nkclient.Options{}).Req("core", "user", "list", nil, &mine); err != nil || !slices.Equal(mine, []string{"carol"}) {
		t.Fatalf("carol's list: %v %v", mine, err)
	}

	n2.stop() // SIGKILL, as far as the cluster sees it
	peers.WaitFor(t, 15*time.Second, "bob gone from n3's list", func() bool { return !slices.Contains(users(), "bob") })
	admin.Fail(signaling.CodeUserNotFound, "core", "user", "get", map[string]any{"user": "bob"})

	n1.node.Close()
	if u := users(); slices.Contains(u, "alice") {
		t.Fatalf("alice still listed after n1 left: %v", u)
	}
}
