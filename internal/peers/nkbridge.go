package peers

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NkbridgeBuild builds the nkbridge binary (cmd/nkbridge) once per test binary. Keep one in
// a package variable of the test package and call Remove from its TestMain:
//
//	var nkb peers.NkbridgeBuild
//	func TestMain(m *testing.M) { code := m.Run(); nkb.Remove(); os.Exit(code) }
//	nodes := peers.NewNodes(t, nkb.Path(t))
//	n1 := nodes.Start(peers.NodeOptions{NodeID: "n1", NATSURL: nats.URL()})
type NkbridgeBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Path returns the binary, building it on the first call (go build, from the repository root).
func (b *NkbridgeBuild) Path(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "nkb-build-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "nkbridge")
		cmd := exec.Command("go", "build", "-o", b.bin, "./cmd/nkbridge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/nkbridge: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("peers.NkbridgeBuild: %v", b.err)
	}
	return b.bin
}

// Remove deletes the built binary.
func (b *NkbridgeBuild) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// NodeOptions describes one nkbridge node (a real binary) of a test.
type NodeOptions struct {
	// NodeID is cluster.node_id (required when NATSURL is set).
	NodeID string
	// NATSURL is cluster.nats_url; "" = a single node.
	NATSURL string
	// SIP turns the SIP listener on, UDP and TCP on one free port (SIPAddr).
	SIP bool
	// Config is the node's YAML config file (sections the test needs, e.g. sip.users). The
	// listeners, ports and cluster keys are set by NKB_* variables, which override the file.
	Config string
	// Env are extra NKB_*=value variables (after the harness's: they win).
	Env []string
	// Logger receives the node's log at debug level; default: t.Log.
	Logger *slog.Logger
}

// Nodes starts the nkbridge nodes of one test, giving each its own ports (RTP ranges that do
// not overlap).
type Nodes struct {
	t     testing.TB
	bin   string
	mu    sync.Mutex
	taken [][2]int
}

// NewNodes returns a starter of nodes running the binary bin (NkbridgeBuild.Path).
func NewNodes(t testing.TB, bin string) *Nodes { return &Nodes{t: t, bin: bin} }

// Node is a running nkbridge binary bound to a test's lifetime: its listeners on 127.0.0.1,
// its own WebRTC port, RTP port range and (with SIP) SIP port.
type Node struct {
	t          testing.TB
	bin        string
	opts       NodeOptions
	configFile string
	env        []string
	proc       *Process

	ID          string
	APIAddr     string // control API, host:port (ws://APIAddr/)
	MetricsAddr string // metrics and /health
	VertoAddr   string // Verto WebSocket
	SIPAddr     string // SIP (UDP and TCP), "" without SIP
	SIPPort     int
	RTPMin      int
	RTPMax      int
}

func (ns *Nodes) rtpRange(n int) (int, int) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for range 50 {
		lo := FreeUDPRange(ns.t, n)
		hi := lo + n - 1
		clash := false
		for _, r := range ns.taken {
			if lo <= r[1] && r[0] <= hi {
				clash = true
			}
		}
		if !clash {
			ns.taken = append(ns.taken, [2]int{lo, hi})
			return lo, hi
		}
	}
	ns.t.Fatalf("peers: no free RTP range")
	return 0, 0
}

// Start runs a node with o and returns once its API, metrics and Verto listeners are up (and
// SIP, with o.SIP). t.Cleanup stops it.
func (ns *Nodes) Start(o NodeOptions) *Node {
	ns.t.Helper()
	return ns.StartAll(o)[0]
}

// StartAll launches one node per option at once, then waits for each (nodes whose embedded
// NATS servers wait for each other's JetStream quorum must start together).
func (ns *Nodes) StartAll(opts ...NodeOptions) []*Node {
	t := ns.t
	t.Helper()
	var out []*Node
	for _, o := range opts {
		out = append(out, ns.prepare(o))
	}
	for _, n := range out {
		n.launch()
	}
	for _, n := range out {
		n.waitReady()
	}
	return out
}

func (ns *Nodes) prepare(o NodeOptions) *Node {
	t := ns.t
	t.Helper()
	if o.Logger == nil {
		o.Logger = TestLogger(t)
	}
	n := &Node{t: t, bin: ns.bin, opts: o, ID: o.NodeID}
	n.RTPMin, n.RTPMax = ns.rtpRange(64)
	n.env = []string{
		"NKB_LOG_FORMAT=json", "NKB_LOG_LEVEL=info",
		"NKB_API_LISTEN=127.0.0.1:0", "NKB_METRICS_LISTEN=127.0.0.1:0", "NKB_VERTO_LISTEN=127.0.0.1:0",
		"NKB_MEDIA_UDP_PORT=0", fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", n.RTPMin), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", n.RTPMax),
		"NKB_SIP_ENABLED=false", "NKB_SIP_LISTEN=127.0.0.1:0",
	}
	if o.SIP {
		n.SIPPort = FreePort(t)
		n.SIPAddr = fmt.Sprintf("127.0.0.1:%d", n.SIPPort)
		n.env = append(n.env, "NKB_SIP_ENABLED=true", "NKB_SIP_LISTEN="+n.SIPAddr)
	}
	if o.NATSURL != "" {
		n.env = append(n.env, "NKB_CLUSTER_NATS_URL="+o.NATSURL)
	}
	if o.NodeID != "" {
		n.env = append(n.env, "NKB_CLUSTER_NODE_ID="+o.NodeID)
	}
	n.env = append(n.env, o.Env...)
	n.configFile = filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(n.configFile, []byte(o.Config), 0o600); err != nil {
		t.Fatalf("peers.Nodes.Start: %v", err)
	}
	return n
}

var (
	reAPI     = regexp.MustCompile(`"msg":"api listening","addr":"([0-9.:]+)"`)
	reMetrics = regexp.MustCompile(`"msg":"metrics listening","addr":"([0-9.:]+)"`)
	reVerto   = regexp.MustCompile(`"msg":"verto: listening"[^}]*"addr":"([0-9.:]+)"`)
)

func (n *Node) start() {
	n.t.Helper()
	n.launch()
	n.waitReady()
}

func (n *Node) launch() {
	n.t.Helper()
	cmd := exec.Command(n.bin, "-config", n.configFile)
	cmd.Env = append(os.Environ(), n.env...)
	name := "nkbridge"
	if n.ID != "" {
		name += "-" + n.ID
	}
	p, err := StartProcess(n.t, name, cmd, n.opts.Logger)
	if err != nil {
		n.t.Fatalf("peers.Nodes.Start: %v", err)
	}
	n.proc = p
	n.APIAddr, n.MetricsAddr, n.VertoAddr = "", "", ""
}

func (n *Node) waitReady() {
	n.t.Helper()
	p := n.proc
	deadline := time.Now().Add(45 * time.Second)
	for {
		out := p.Output()
		if m := reAPI.FindStringSubmatch(out); m != nil {
			n.APIAddr = m[1]
		}
		if m := reMetrics.FindStringSubmatch(out); m != nil {
			n.MetricsAddr = m[1]
		}
		if m := reVerto.FindStringSubmatch(out); m != nil {
			n.VertoAddr = m[1]
		}
		if n.APIAddr != "" && n.MetricsAddr != "" && n.VertoAddr != "" && (n.SIPPort == 0 || Listening("udp", n.SIPPort)) {
			return
		}
		select {
		case <-p.Done():
			n.t.Fatalf("peers.Nodes.Start %s: exited (%d):\n%s", n.ID, p.ExitCode(), out)
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("peers.Nodes.Start %s: not listening after 45 s:\n%s", n.ID, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// APIURL is the control API's WebSocket URL.
func (n *Node) APIURL() string { return "ws://" + n.APIAddr + "/" }

// Process is the node's process.
func (n *Node) Process() *Process { return n.proc }

// Output is the tail of the node's log (JSON lines).
func (n *Node) Output() string { return n.proc.Output() }

// ConfigFile is the path of the node's config file.
func (n *Node) ConfigFile() string { return n.configFile }

// Kill SIGKILLs the node (no drain, no goodbye to the cluster) and waits for it.
func (n *Node) Kill() {
	_ = syscall.Kill(n.proc.Pid(), syscall.SIGKILL)
	<-n.proc.Done()
}

// Terminate sends SIGTERM (drain) without waiting.
func (n *Node) Terminate() { _ = syscall.Kill(n.proc.Pid(), syscall.SIGTERM) }

// Stop stops the node (SIGTERM, SIGKILL after grace) and waits for it.
func (n *Node) Stop(grace time.Duration) { n.proc.Stop(grace) }

// Restart starts the node again with the same config once it has exited.
func (n *Node) Restart() {
	n.t.Helper()
	<-n.proc.Done()
	n.start()
}
