package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTTL is the presence_ttl of the test clusters.
const testTTL = 1500 * time.Millisecond

// natsServer is an in-process NATS server with JetStream on 127.0.0.1.
type natsServer struct {
	t    testing.TB
	s    *server.Server
	port int
	dir  string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: -1, dir: t.TempDir()}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: ns.port, JetStream: true, StoreDir: ns.dir,
		NoLog: true, NoSigs: true, ServerName: "test"})
	if err != nil {
		ns.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		ns.t.Fatal("nats-server not ready")
	}
	ns.s = s
	ns.port = s.Addr().(*net.TCPAddr).Port
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

func (ns *natsServer) stop() {
	if ns.s != nil {
		ns.s.Shutdown()
		ns.s.WaitForShutdown()
		ns.s = nil
	}
}

// testNode is an in-process nkbridge node: a core, the WebSocket API on 127.0.0.1 and the
// cluster node.
type testNode struct {
	t    testing.TB
	id   string
	core *signaling.Core
	node *Node
	ws   string
	stop func() // abrupt: the node vanishes without leaving (a SIGKILL for the others)
}

func newNode(t testing.TB, ns *natsServer, id string) *testNode {
	t.Helper()
	log := peers.TestLoggerLevel(t, slog.LevelInfo).With("test_node", id)
	core := signaling.New(signaling.Options{Logger: log, RingTime: 20 * time.Second})
	n, err := Start(context.Background(), Options{Core: core, Logger: log,
		Config: Config{NATSURL: ns.url(), NodeID: id, PresenceTTL: testTTL, RequestTimeout: time.Second}})
	if err != nil {
		core.Close()
		t.Fatalf("node %s: %v", id, err)
	}
	tn := &testNode{t: t, id: id, core: core, node: n}
	killed := false
	tn.stop = func() {
		if !killed {
			killed = true
			n.kill()
		}
	}
	t.Cleanup(func() {
		core.Close()
		if !killed {
			n.Close()
		}
	})
	tn.ws = apitest.Serve(t, core, wsapi.Config{Admins: []string{"admin"}}, log)
	return tn
}

// kill stops the node as a SIGKILL would, for the others: no goodbye, its keys stay until
// they expire.
func (n *Node) kill() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.pq.close()
	n.wg.Wait()
	n.nc.Close()
}

// login dials the node's API and logs in as user.
func (tn *testNode) login(user string, opts nkclient.Options) *apitest.Conn {
	tn.t.Helper()
	c := apitest.Dial(tn.t, tn.ws, opts)
	c.Login(user, "")
	return c
}
