package peers

import (
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NATSOptions describes one nats-server (Debian's nats-server 2.9). Every server binds
// 127.0.0.1 only, runs JetStream with its state in a directory of the test, and has no
// monitoring port.
type NATSOptions struct {
	// Name is the server name (-n); default "nats-<client port>".
	Name string
	// Port is the client port; 0 picks a free one.
	Port int
	// ClusterName, ClusterPort and Routes make the server a member of a NATS cluster
	// (--cluster_name, --cluster nats://127.0.0.1:ClusterPort, --routes). ClusterPort 0 with a
	// ClusterName picks a free port.
	ClusterName string
	ClusterPort int
	Routes      []string
	// StoreDir is JetStream's directory (-sd); default a directory of the test.
	StoreDir string
	// Logger receives the server's output at debug level; default: t.Log.
	Logger *slog.Logger
}

// NATSServer is a running nats-server bound to a test's lifetime. Restart runs it again with
// the same ports and store, as an operator's restart would.
type NATSServer struct {
	t    testing.TB
	bin  string
	opts NATSOptions
	proc *Process
}

// StartNATS starts nats-server with o and returns once it is ready for clients (JetStream
// included). It skips or fails (NKB_REQUIRE_PEERS=1) the test when nats-server is missing.
func StartNATS(t testing.TB, o NATSOptions) *NATSServer {
	t.Helper()
	bin := Need(t, "nats-server")
	if o.Logger == nil {
		o.Logger = TestLogger(t)
	}
	if o.Port == 0 {
		o.Port = FreeTCPPort(t)
	}
	if o.ClusterName != "" && o.ClusterPort == 0 {
		o.ClusterPort = FreeTCPPort(t)
	}
	if o.Name == "" {
		o.Name = "nats-" + strconv.Itoa(o.Port)
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	s := &NATSServer{t: t, bin: bin, opts: o}
	s.start()
	return s
}

// StartNATSCluster starts n nats-servers routed to each other (cluster name "nkbtest") and
// returns them once each is ready.
func StartNATSCluster(t testing.TB, n int) []*NATSServer {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = FreeTCPPort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	out := make([]*NATSServer, n)
	for i := range out {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		out[i] = StartNATS(t, NATSOptions{Name: fmt.Sprintf("nats%d", i+1), ClusterName: "nkbtest", ClusterPort: ports[i], Routes: others})
	}
	return out
}

func (s *NATSServer) args() []string {
	o := s.opts
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(o.Port), "-n", o.Name, "-js", "-sd", o.StoreDir}
	if o.ClusterName != "" {
		args = append(args, "--cluster_name", o.ClusterName, "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", o.ClusterPort))
		if len(o.Routes) > 0 {
			args = append(args, "--routes", strings.Join(o.Routes, ","))
		}
	}
	return args
}

func (s *NATSServer) start() {
	s.t.Helper()
	p, err := StartProcess(s.t, s.opts.Name, exec.Command(s.bin, s.args()...), s.opts.Logger)
	if err != nil {
		s.t.Fatalf("peers.StartNATS: %v", err)
	}
	s.proc = p
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.Output(), "Server is ready") || !Listening("tcp", s.opts.Port) {
		select {
		case <-p.Done():
			s.t.Fatalf("peers.StartNATS: nats-server exited (%d):\n%s", p.ExitCode(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("peers.StartNATS: not ready after 20 s:\n%s", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URL is the client URL, nats://127.0.0.1:port.
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port) }

// Port is the client port.
func (s *NATSServer) Port() int { return s.opts.Port }

// ClusterURL is the route URL (empty without a cluster).
func (s *NATSServer) ClusterURL() string {
	if s.opts.ClusterName == "" {
		return ""
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.ClusterPort)
}

// Process is the running server process.
func (s *NATSServer) Process() *Process { return s.proc }

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *NATSServer) Stop() { s.proc.Stop(5 * time.Second) }

// Kill SIGKILLs the server and waits for it.
func (s *NATSServer) Kill() {
	_ = syscall.Kill(s.proc.Pid(), syscall.SIGKILL)
	<-s.proc.Done()
}

// Restart stops the server and starts it again on the same ports and store directory.
func (s *NATSServer) Restart() {
	s.t.Helper()
	s.Stop()
	WaitFor(s.t, 10*time.Second, "nats-server's port released", func() bool { return !Listening("tcp", s.opts.Port) })
	s.start()
}

// StoreDir is the JetStream directory.
func (s *NATSServer) StoreDir() string { return filepath.Clean(s.opts.StoreDir) }
