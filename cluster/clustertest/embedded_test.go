package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// Two real nodes with cluster.embedded_nats and no nats_url: each runs a NATS server in its
// process, the two servers form one NATS cluster by routes (on loopback), and the nodes act as
// one: a user logged in on node 1 is found from node 2, and a call from node 2 rings it.
func TestEmbeddedNATSBinaries(t *testing.T) {
	needCluster(t)
	rp := []int{peers.FreeTCPPort(t), peers.FreeTCPPort(t)}
	routes := fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", rp[0], rp[1])
	ns := peers.NewNodes(t, nkb.Path(t))
	var opts []peers.NodeOptions
	for i := range 2 {
		opts = append(opts, peers.NodeOptions{
			NodeID: fmt.Sprintf("n%d", i+1), Config: usersYAML(),
			Env: append(append([]string{}, nodeEnv...),
				"NKB_CLUSTER_EMBEDDED_NATS_ENABLED=true",
				fmt.Sprintf("NKB_CLUSTER_EMBEDDED_NATS_LISTEN=127.0.0.1:%d", peers.FreeTCPPort(t)),
				fmt.Sprintf("NKB_CLUSTER_EMBEDDED_NATS_CLUSTER_LISTEN=127.0.0.1:%d", rp[i]),
				"NKB_CLUSTER_EMBEDDED_NATS_ROUTES="+routes),
			Logger: peers.TestLogger(t).With("node", fmt.Sprintf("n%d", i+1)),
		})
	}
	// The two servers need each other for their JetStream quorum: start them together.
	nodes := ns.StartAll(opts...)
	for _, n := range nodes {
		if !strings.Contains(n.Output(), "embedded nats server running") {
			t.Fatalf("%s: no embedded server in the log", n.ID)
		}
	}
	invites := make(chan *nkclient.Invite, 1)
	login(t, nodes[0], "bob", nkclient.Options{OnInvite: func(_ context.Context, inv *nkclient.Invite) { invites <- inv }})
	admin := login(t, nodes[1], "admin", nkclient.Options{})
	waitUserOn(t, admin, "n2", "bob", "n1")
	alice := login(t, nodes[1], "alice", nkclient.Options{})
	callID, err := alice.C.StartCall(t.Context(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0 offer"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case inv := <-invites:
		if inv.CallID != callID {
			t.Fatalf("invite for %s, want %s", inv.CallID, callID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no invite at bob on n1")
	}
}
