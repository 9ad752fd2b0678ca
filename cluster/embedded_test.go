package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/internal/peers"
)

func embeddedDefaults() EmbeddedConfig {
	return EmbeddedConfig{Enabled: true, Listen: "127.0.0.1:0", ClusterName: "nkbridge", StartTimeout: 10 * time.Second}
}

// startEmbeddedCluster starts n embedded servers routed to each other (a full mesh of routes on
// loopback) and returns them once every server has a route to every other.
func startEmbeddedCluster(t *testing.T, n int, user, password string) []*Embedded {
	t.Helper()
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ports[i] = peers.FreeTCPPort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var out []*Embedded
	for i := range n {
		cfg := embeddedDefaults()
		cfg.ClusterListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		cfg.Routes = routes // its own route is ignored by the server
		cfg.ClusterUser, cfg.ClusterPassword = user, password
		cfg.StoreDir = t.TempDir()
		e, err := StartEmbedded(context.Background(), cfg, fmt.Sprintf("node%d", i+1), peers.TestLoggerLevel(t, slog.LevelWarn))
		if err != nil {
			t.Fatalf("node%d: %v", i+1, err)
		}
		t.Cleanup(e.Shutdown)
		out = append(out, e)
	}
	return out
}

func connect(t *testing.T, e *Embedded) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Three nodes, each with its own embedded server, form one NATS cluster by routes: a message
// published on node 1's server reaches a subscriber on node 3's; a JetStream key-value bucket
// created through node 1 is written through node 2 and read through node 3 (R1, then R3).
func TestEmbeddedClusterOfThree(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	nodes := startEmbeddedCluster(t, 3, "", "")
	peers.WaitFor(t, 20*time.Second, "a route between every pair of servers", func() bool {
		for _, e := range nodes {
			if len(e.RoutedServers()) != 2 {
				return false
			}
		}
		return true
	})
	if got := nodes[0].RoutedServers(); !slices.Equal(got, []string{"node2", "node3"}) {
		t.Fatalf("node1 routed to %v", got)
	}
	for _, e := range nodes {
		if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") {
			t.Fatalf("client URL %s: not loopback", e.ClientURL())
		}
	}
	nc1, nc2, nc3 := connect(t, nodes[0]), connect(t, nodes[1]), connect(t, nodes[2])

	// A plain message crosses the routes (interest reaches node 1 asynchronously: publish
	// until it arrives).
	var got atomic.Int32
	sub, err := nc3.Subscribe("nkbtest.hello", func(m *nats.Msg) {
		if string(m.Data) == "from node1" {
			got.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc3.Flush(); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "node 1's message at node 3's subscriber", func() bool {
		_ = nc1.Publish("nkbtest.hello", []byte("from node1"))
		_ = nc1.Flush()
		return got.Load() > 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, replicas := range []int{1, 3} {
		bucket := fmt.Sprintf("nkbtest_r%d", replicas)
		js1, _ := jetstream.New(nc1)
		var kv jetstream.KeyValue
		// The JetStream meta group elects its leader once the servers see each other.
		peers.WaitFor(t, 30*time.Second, "bucket "+bucket+" created", func() bool {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			kv, err = js1.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{Bucket: bucket, Replicas: replicas, TTL: time.Minute})
			return err == nil
		})
		js2, _ := jetstream.New(nc2)
		kv2, err := js2.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("%s from node 2: %v", bucket, err)
		}
		if _, err := kv2.Put(ctx, "alice", []byte("node2")); err != nil {
			t.Fatalf("put through node 2: %v", err)
		}
		js3, _ := jetstream.New(nc3)
		kv3, err := js3.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("%s from node 3: %v", bucket, err)
		}
		e, err := kv3.Get(ctx, "alice")
		if err != nil || string(e.Value()) != "node2" {
			t.Fatalf("get through node 3: %v %v", e, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); info.Config.Replicas != replicas {
			t.Fatalf("%s: %d replicas", bucket, info.Config.Replicas)
		}
	}
	nc1.Close()
	nc2.Close()
	nc3.Close()
	for _, e := range nodes {
		e.Shutdown()
	}
}

// Route credentials: a server whose route password is wrong is refused by a server with
// cluster_user/cluster_password (its attempt is logged as an authentication failure) and has no
// route; one with the right password gets its route.
func TestEmbeddedRouteAuth(t *testing.T) {
	logs := &logSink{}
	cfg := embeddedDefaults()
	cfg.ClusterListen = fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t))
	cfg.Routes = []string{"nats://" + cfg.ClusterListen} // only itself: no other server yet
	cfg.ClusterUser, cfg.ClusterPassword = "route", "s3cret"
	a, err := StartEmbedded(context.Background(), cfg, "a", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()

	join := func(name, password string) *Embedded {
		c := embeddedDefaults()
		c.ClusterListen = fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t))
		c.Routes = []string{"nats://" + a.ClusterAddr().String()}
		c.ClusterUser, c.ClusterPassword = "route", password
		e, err := StartEmbedded(context.Background(), c, name, peers.TestLoggerLevel(t, slog.LevelError+1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		return e
	}
	intruder := join("intruder", "wrong")
	peers.WaitFor(t, 10*time.Second, "the refused route in a's log", func() bool { return logs.contains("authentication failure") })
	if a.NumRoutes() != 0 || intruder.NumRoutes() != 0 {
		t.Fatalf("a wrong route password got through: routes %d/%d", a.NumRoutes(), intruder.NumRoutes())
	}
	intruder.Shutdown()
	b := join("b", "s3cret")
	peers.WaitFor(t, 10*time.Second, "the route with the right password", func() bool {
		return slices.Equal(a.RoutedServers(), []string{"b"}) && slices.Equal(b.RoutedServers(), []string{"a"})
	})
}

// logSink is a slog.Handler keeping the messages it gets.
type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }
func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(strings.ToLower(m), s) {
			return true
		}
	}
	return false
}

func TestEmbeddedValidate(t *testing.T) {
	ok := embeddedDefaults()
	if err := ok.Validate("cluster.embedded_nats"); err != nil {
		t.Fatal(err)
	}
	off := EmbeddedConfig{Listen: "0.0.0.0:x"}
	if err := off.Validate("cluster.embedded_nats"); err != nil {
		t.Fatalf("disabled but validated: %v", err)
	}
	for _, c := range []struct {
		edit func(*EmbeddedConfig)
		want string
	}{
		{func(c *EmbeddedConfig) { c.Listen = "0.0.0.0:4222" }, "cluster.embedded_nats.listen"},
		{func(c *EmbeddedConfig) { c.Listen = "localhost:4222" }, "not an IP"},
		{func(c *EmbeddedConfig) { c.Listen = "127.0.0.1" }, "cluster.embedded_nats.listen"},
		{func(c *EmbeddedConfig) { c.ClusterName = "a.b" }, "cluster_name"},
		{func(c *EmbeddedConfig) {
			c.ClusterListen = "192.0.2.1:6222"
			c.Routes = []string{"nats://192.0.2.1:6222"}
		}, "cluster.embedded_nats.cluster_user"},
		{func(c *EmbeddedConfig) { c.ClusterListen = "127.0.0.1:6222" }, "cluster.embedded_nats.routes: empty"},
		{func(c *EmbeddedConfig) { c.ClusterUser = "u" }, "go together"},
		{func(c *EmbeddedConfig) { c.Routes = []string{"nats://127.0.0.1:6222"} }, "need cluster.embedded_nats.cluster_listen"},
		{func(c *EmbeddedConfig) {
			c.ClusterListen = "127.0.0.1:6222"
			c.Routes = []string{"http://127.0.0.1:6222"}
		}, "want nats://IP:port"},
		{func(c *EmbeddedConfig) {
			c.ClusterListen = "127.0.0.1:6222"
			c.Routes = []string{"nats://nats.example:6222"}
		}, "not an IP"},
		{func(c *EmbeddedConfig) { c.MaxStore = -1 }, "max_store"},
		{func(c *EmbeddedConfig) { c.StartTimeout = 0 }, "start_timeout"},
	} {
		cfg := embeddedDefaults()
		c.edit(&cfg)
		err := cfg.Validate("cluster.embedded_nats")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", cfg, err, c.want)
		}
	}
	// A second server on a taken client port fails with a clear error instead of hanging.
	e, err := StartEmbedded(context.Background(), embeddedDefaults(), "one", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	taken := embeddedDefaults()
	taken.Listen = strings.TrimPrefix(e.ClientURL(), "nats://")
	taken.StartTimeout = 2 * time.Second
	if e2, err := StartEmbedded(context.Background(), taken, "two", nil); err == nil {
		e2.Shutdown()
		t.Fatal("second server on a taken port started")
	} else if !strings.Contains(err.Error(), "cluster.embedded_nats") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("taken port: %v", err)
	}
}
