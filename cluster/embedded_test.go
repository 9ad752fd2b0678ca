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
	// With routes, a server waits for the JetStream quorum: start them together.
	out := make([]*Embedded, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := embeddedDefaults()
		cfg.ClusterListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		cfg.Routes = routes // its own route is ignored by the server
		cfg.ClusterUser, cfg.ClusterPassword = user, password
		cfg.StoreDir = t.TempDir()
		log := peers.TestLoggerLevel(t, slog.LevelWarn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = StartEmbedded(context.Background(), cfg, fmt.Sprintf("node%d", i+1), log)
		}()
	}
	wg.Wait()
	for i, e := range out {
		if e != nil {
			t.Cleanup(e.Shutdown)
		}
		if errs[i] != nil {
			t.Fatalf("node%d: %v", i+1, errs[i])
		}
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

// Route credentials: servers a and b with the same cluster_user/cluster_password form their
// routes; a server whose route password is wrong is refused (a logs an authentication
// failure), gets no route, and so no JetStream quorum: its start fails.
func TestEmbeddedRouteAuth(t *testing.T) {
	logs := &logSink{}
	ports := []int{peers.FreeTCPPort(t), peers.FreeTCPPort(t)}
	routes := []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats://127.0.0.1:%d", ports[1])}
	cfgOf := func(port int, password string) EmbeddedConfig {
		c := embeddedDefaults()
		c.ClusterListen = fmt.Sprintf("127.0.0.1:%d", port)
		c.Routes = routes
		c.ClusterUser, c.ClusterPassword = "route", password
		c.StoreDir = t.TempDir()
		return c
	}
	var a, b *Embedded
	var errA, errB error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a, errA = StartEmbedded(context.Background(), cfgOf(ports[0], "s3cret"), "a", slog.New(logs))
	}()
	go func() {
		defer wg.Done()
		b, errB = StartEmbedded(context.Background(), cfgOf(ports[1], "s3cret"), "b", peers.TestLoggerLevel(t, slog.LevelWarn))
	}()
	wg.Wait()
	for _, e := range []*Embedded{a, b} {
		if e != nil {
			defer e.Shutdown()
		}
	}
	if errA != nil || errB != nil {
		t.Fatalf("a: %v, b: %v", errA, errB)
	}
	if !slices.Equal(a.RoutedServers(), []string{"b"}) || !slices.Equal(b.RoutedServers(), []string{"a"}) {
		t.Fatalf("routes: a %v, b %v", a.RoutedServers(), b.RoutedServers())
	}

	bad := cfgOf(peers.FreeTCPPort(t), "wrong")
	bad.StartTimeout = 3 * time.Second
	if e, err := StartEmbedded(context.Background(), bad, "intruder", peers.TestLoggerLevel(t, slog.LevelError+1)); err == nil {
		e.Shutdown()
		t.Fatal("a server with a wrong route password joined")
	}
	if !logs.contains("authentication failure") {
		t.Fatal("a did not log the refused route")
	}
	if !slices.Equal(a.RoutedServers(), []string{"b"}) {
		t.Fatalf("a routed to %v", a.RoutedServers())
	}
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

// With routes to two other servers, a server alone has no JetStream quorum: StartEmbedded
// fails after start_timeout with an error saying so (TestEmbeddedClusterOfThree starts the
// three together).
func TestEmbeddedWaitsForQuorum(t *testing.T) {
	ports := []int{peers.FreeTCPPort(t), peers.FreeTCPPort(t), peers.FreeTCPPort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	cfgOf := func(i int) EmbeddedConfig {
		c := embeddedDefaults()
		c.ClusterListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		c.Routes = routes
		c.StoreDir = t.TempDir()
		return c
	}
	alone := cfgOf(0)
	alone.StartTimeout = time.Second
	if e, err := StartEmbedded(context.Background(), alone, "node1", nil); err == nil {
		e.Shutdown()
		t.Fatal("a server without quorum started")
	} else if !strings.Contains(err.Error(), "no JetStream quorum") || !strings.Contains(err.Error(), "start_timeout") {
		t.Fatalf("alone: %v", err)
	}
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
