package clustertest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// BenchmarkCluster measures a two-node cluster of real binaries on the Debian nats-server and
// prints a table (docs/PERFORMANCE.md, "Cluster"):
//
//	go test -run XXX -bench Cluster -benchtime 1x -v ./cluster/clustertest/
//
// call setup: call/start (signalling only, offer "v=0") to the caller's accepted event, the
// callee accepting as soon as its invite arrives, same node vs. across nodes, sequential;
// API pairs/s: 8 workers placing cross-node calls (start, accept, hangup) for a fixed count;
// NATS messages per cross-node call, by subject class, the idle rate subtracted; bytes per
// presence entry in the nkb_presence bucket and the nodes' RSS growth per API login.
func BenchmarkCluster(b *testing.B) {
	for range b.N {
		benchCluster(b)
	}
}

func benchCluster(b *testing.B) {
	nats1 := peers.StartNATS(b, peers.NATSOptions{Logger: peers.TestLoggerLevel(b, 100)})
	ns := peers.NewNodes(b, nkb.Path(b))
	var nodes []*peers.Node
	for i := range 2 {
		nodes = append(nodes, ns.Start(peers.NodeOptions{
			NodeID: fmt.Sprintf("n%d", i+1), NATSURL: nats1.URL(), Config: usersYAML(),
			Env:    append(slices.Clone(nodeEnv), "NKB_API_MAX_USER_CALLS=100000", "NKB_API_REQUEST_RATE=100000"),
			Logger: peers.TestLoggerLevel(b, 100),
		}))
	}
	dial := func(n *peers.Node, user string, opts nkclient.Options) *apitest.Conn {
		c := apitest.Dial(b, n.APIURL(), opts)
		c.Login(user, password)
		return c
	}
	accepting := nkclient.Options{OnInvite: func(ctx context.Context, inv *nkclient.Invite) {
		_ = inv.Accept(ctx, nkclient.SDP{SDP: "v=0 answer"}, "")
	}}
	dial(nodes[1], "bob", accepting)   // bob: node 2
	dial(nodes[0], "carol", accepting) // carol: node 1
	alice := dial(nodes[0], "alice", nkclient.Options{})
	admin := dial(nodes[0], "admin", nkclient.Options{})
	peers.WaitFor(b, 15*time.Second, "bob seen from n1", func() bool {
		var raw map[string]any
		return admin.Req("core", "user", "get", map[string]any{"user": "bob"}, &raw) == nil && strings.Contains(fmt.Sprint(raw), "n2")
	})

	// acceptedCh is closed when the call's accepted event arrives (which may be before
	// call/start's reply).
	accepted := map[string]chan struct{}{}
	var amu sync.Mutex
	acceptedCh := func(id string) chan struct{} {
		amu.Lock()
		defer amu.Unlock()
		ch, ok := accepted[id]
		if !ok {
			ch = make(chan struct{})
			accepted[id] = ch
		}
		return ch
	}
	sub := alice.C.Events(nkclient.Selector{Class: "media", Subclass: "call", Type: "accepted"})
	defer sub.Close()
	go func() {
		for ev := range sub.C {
			close(acceptedCh(ev.ObjID))
		}
	}()
	setup := func(callee string) time.Duration {
		start := time.Now()
		id, err := alice.C.StartCall(context.Background(), nkclient.CallStart{Type: "user", Callee: callee, Offer: &nkclient.SDP{SDP: "v=0"}})
		if err != nil {
			b.Fatal(err)
		}
		ch := acceptedCh(id)
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			b.Fatalf("call %s to %s not accepted", id, callee)
		}
		d := time.Since(start)
		_ = alice.C.Hangup(context.Background(), id, 0, "")
		return d
	}
	const n = 60
	var same, cross []time.Duration
	for i := range 2 * n {
		if i%2 == 0 {
			same = append(same, setup("carol"))
		} else {
			cross = append(cross, setup("bob"))
		}
	}

	// NATS messages per cross-node call.
	mon, err := nats.Connect(nats1.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer mon.Close()
	var mu sync.Mutex
	bySubject := map[string]int{}
	msub, err := mon.Subscribe(">", func(m *nats.Msg) {
		cls := m.Subject
		switch {
		case strings.HasPrefix(cls, "nkb.v1.node."):
			cls = "nkb.v1.node.* (call messages)"
		case strings.HasPrefix(cls, "nkb.v1.ev."):
			cls = "nkb.v1.ev.* (events)"
		case strings.HasPrefix(cls, "nkb.v1.obj."), strings.HasPrefix(cls, "nkb.v1.list"):
			cls = "nkb.v1.obj/list"
		case strings.HasPrefix(cls, "$JS.API.DIRECT.GET."):
			cls = "$JS.API.DIRECT.GET (KV reads)"
		case strings.HasPrefix(cls, "$JS."):
			cls = "$JS.* (other JetStream)"
		case strings.HasPrefix(cls, "$KV."):
			cls = "$KV.* (KV writes)"
		case strings.HasPrefix(cls, "_INBOX."):
			cls = "_INBOX.* (replies)"
		default:
			cls = "other"
		}
		mu.Lock()
		bySubject[cls]++
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer msub.Unsubscribe()
	_ = mon.Flush()
	snapshot := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range bySubject {
			out[k] = v
			bySubject[k] = 0
		}
		return out
	}
	const idle = 3 * time.Second
	snapshot()
	time.Sleep(idle) // the idle rate (heartbeats) over the same time as the calls below
	idleCounts := snapshot()
	const m = 30
	t0 := time.Now()
	for range m {
		setup("bob")
	}
	callTime := time.Since(t0)
	callCounts := snapshot()

	// API pairs/s across nodes: 8 workers.
	const pairs, workers = 400, 8
	var left atomic.Int64
	left.Store(pairs)
	callers := make([]*apitest.Conn, workers)
	for i := range callers {
		callers[i] = dial(nodes[0], "dave", nkclient.Options{})
	}
	var wg sync.WaitGroup
	start := time.Now()
	var failed atomic.Int64
	for _, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := c.C.Events(nkclient.Selector{Class: "media", Subclass: "call", Type: "accepted"})
			defer acc.Close()
			for left.Add(-1) >= 0 {
				id, err := c.C.StartCall(context.Background(), nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
				if err != nil {
					failed.Add(1)
					continue
				}
				deadline := time.After(10 * time.Second)
			wait:
				for {
					select {
					case ev := <-acc.C:
						if ev.ObjID == id {
							break wait
						}
					case <-deadline:
						failed.Add(1)
						break wait
					}
				}
				_ = c.C.Hangup(context.Background(), id, 0, "")
			}
		}()
	}
	wg.Wait()
	pairsPerSec := float64(pairs) / time.Since(start).Seconds()

	// Presence: 200 API logins of distinct users on n2 (anonymous users are not configured:
	// log in as bob 200 times, each a contact), bytes per entry in the bucket, RSS growth.
	js, _ := jetstream.New(mon)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "nkb_presence")
	if err != nil {
		b.Fatal(err)
	}
	st0, _ := kv.Status(ctx)
	rss0 := rssKiB(nodes[1].Process().Pid())
	const logins = 200
	for range logins {
		dial(nodes[1], "bob", nkclient.Options{})
	}
	var st1 jetstream.KeyValueStatus
	peers.WaitFor(b, 20*time.Second, "the logins in the bucket", func() bool {
		st1, _ = kv.Status(ctx)
		return st1.Values() >= st0.Values()+logins
	})
	rss1 := rssKiB(nodes[1].Process().Pid())
	info0 := st0.(*jetstream.KeyValueBucketStatus).StreamInfo()
	info1 := st1.(*jetstream.KeyValueBucketStatus).StreamInfo()
	bytesPerEntry := float64(info1.State.Bytes-info0.State.Bytes) / float64(info1.State.Msgs-info0.State.Msgs)

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nCluster of 2 real nodes on Debian nats-server 2.9.10, loopback; load average %s\n", strings.TrimSpace(string(load)))
	fmt.Printf("| call setup (start → accepted) | n | p50 | p95 |\n|---|---|---|---|\n")
	fmt.Printf("| same node | %d | %v | %v |\n", len(same), pct(same, 50), pct(same, 95))
	fmt.Printf("| across nodes | %d | %v | %v |\n", len(cross), pct(cross, 50), pct(cross, 95))
	fmt.Printf("\nAPI call pairs across nodes (start, accept, hangup), %d workers: %d pairs in %.0f/s (%d failed)\n",
		workers, pairs, pairsPerSec, failed.Load())
	fmt.Printf("\nNATS messages per cross-node call (%d calls in %v; idle rate over %v subtracted, scaled):\n", m, callTime.Round(time.Millisecond), idle)
	fmt.Printf("| subjects | per call |\n|---|---|\n")
	total := 0.0
	var keys []string
	for k := range callCounts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		per := (float64(callCounts[k]) - float64(idleCounts[k])*callTime.Seconds()/idle.Seconds()) / m
		total += per
		fmt.Printf("| %s | %.1f |\n", k, per)
	}
	fmt.Printf("| all | %.1f |\n", total)
	fmt.Printf("\nPresence: %d API logins → %.0f bytes per entry in nkb_presence (stream bytes / messages); node RSS +%d KiB (%.1f KiB per login, the connection included)\n",
		logins, bytesPerEntry, rss1-rss0, float64(rss1-rss0)/logins)
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Round(10 * time.Microsecond)
}

// rssKiB is VmRSS of pid.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var v int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &v)
			return v
		}
	}
	return 0
}
