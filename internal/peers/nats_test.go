package peers_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// Two Debian nats-servers started as a cluster on loopback carry a message from one to the
// other; a JetStream bucket written before a restart of its server is there after it (same
// port, same store directory), and a client reconnects by itself.
func TestNATSServerHarness(t *testing.T) {
	servers := peers.StartNATSCluster(t, 2)
	nc1, err := nats.Connect(servers[0].URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc1.Close()
	nc2, err := nats.Connect(servers[1].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	var got atomic.Int32
	if _, err := nc2.Subscribe("nkbtest.x", func(*nats.Msg) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	_ = nc2.Flush()
	peers.WaitFor(t, 10*time.Second, "a message across the route", func() bool {
		_ = nc1.Publish("nkbtest.x", []byte("x"))
		_ = nc1.Flush()
		return got.Load() > 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc1)
	var kv jetstream.KeyValue
	peers.WaitFor(t, 30*time.Second, "a bucket", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		kv, err = js.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{Bucket: "nkbtest", Replicas: 2})
		return err == nil
	})
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	servers[0].Restart()
	peers.WaitFor(t, 10*time.Second, "the client reconnected", func() bool { return nc1.IsConnected() })
	peers.WaitFor(t, 20*time.Second, "the value after the restart", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		e, err := kv.Get(c, "k")
		return err == nil && string(e.Value()) == "v"
	})
}

var nkb peers.NkbridgeBuild

// Two real nkbridge nodes start side by side, each on its own ports, and answer /health.
func TestNodesHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	defer nkb.Remove()
	nodes := peers.NewNodes(t, nkb.Path(t))
	a := nodes.Start(peers.NodeOptions{NodeID: "a", SIP: true})
	b := nodes.Start(peers.NodeOptions{NodeID: "b", SIP: true, Config: "calls:\n  ring_time: 20s\n"})
	if a.APIAddr == b.APIAddr || a.SIPAddr == b.SIPAddr || a.RTPMin == b.RTPMin || (a.RTPMin <= b.RTPMax && b.RTPMin <= a.RTPMax) {
		t.Fatalf("nodes share ports: %+v %+v", a, b)
	}
	for _, n := range []*peers.Node{a, b} {
		resp, err := http.Get("http://" + n.MetricsAddr + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s /health: %d", n.ID, resp.StatusCode)
		}
	}
	a.Kill()
	if a.Process().ExitCode() != -1 {
		t.Fatalf("killed node exit code %d", a.Process().ExitCode())
	}
}
