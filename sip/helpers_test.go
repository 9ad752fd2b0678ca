package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/internal/peers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger logs to t.Log until the test is over: warnings, or everything with NKB_SIP_DEBUG set.
func testLogger(t testing.TB) *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("NKB_SIP_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return peers.TestLoggerLevel(t, lvl)
}

const testSDP = "v=0\r\no=- 1000 1 IN IP4 127.0.0.1\r\ns=nkbridge\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"

// freePort returns a port free for both UDP and TCP on 127.0.0.1, chosen below the kernel's
// ephemeral range (32768+) so that no other process's outgoing socket takes it before use.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l.Close()
		if err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// waitBound waits until something (SIPp) has bound UDP port p on 127.0.0.1.
func waitBound(t testing.TB, p int) {
	t.Helper()
	waitBoundNet(t, "udp", p)
}

// waitBoundNet waits until something is bound to port p of 127.0.0.1 on network (udp or tcp).
func waitBoundNet(t testing.TB, network string, p int) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", p)
	peers.WaitFor(t, 5*time.Second, fmt.Sprintf("something listening on %s port %d", network, p), func() bool {
		var c io.Closer
		var err error
		if network == "tcp" {
			c, err = net.Listen("tcp", addr)
		} else {
			c, err = net.ListenPacket(network, addr)
		}
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

func testConfig() Config {
	return Config{
		Listen:       []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}},
		Users:        []User{{Name: "alice", Password: "secret", CanCallSIP: true}, {Name: "bob", Password: "hunter2"}},
		Limits:       Limits{RequestsPerSecond: 1000, Burst: 2000, AuthMaxFailures: 3},
		MinExpires:   30 * time.Second,
		SessionTimer: SessionTimer{MinSE: time.Second},
		AckTimeout:   5 * time.Second,
	}
}

func startServer(t *testing.T, cfg Config, h CallHandler) *Server {
	t.Helper()
	return startServerWith(t, cfg, Options{Logger: testLogger(t), Handler: h})
}

// startServerWith is startServer with every option given.
func startServerWith(t *testing.T, cfg Config, opts Options) *Server {
	t.Helper()
	// Listen on one port for both UDP and TCP so SIPp's [remote_port] works for either.
	if cfg.Listen[0].Addr == "127.0.0.1:0" {
		p := freePort(t)
		for i := range cfg.Listen {
			cfg.Listen[i].Addr = fmt.Sprintf("127.0.0.1:%d", p)
		}
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sippPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("NKB_REQUIRE_PEERS") == "1" {
			t.Fatal("sipp not installed and NKB_REQUIRE_PEERS=1")
		}
		t.Skip("sipp not installed")
	}
	return p
}

func scenario(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	p, _ := filepath.Abs(filepath.Join("..", "testdata", "sipp", name))
	return p
}

// sippRun is a running SIPp instance.
type sippRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
	port int
	dir  string
}

// startSIPp starts SIPp on 127.0.0.1 with a fresh local port and control port. remote may be
// empty (UAS mode).
func startSIPp(t *testing.T, scen, remote string, args ...string) *sippRun {
	t.Helper()
	return startSIPpOn(t, scen, freePort(t), remote, args...)
}

// startSIPpPort starts a UAS SIPp on a given port.
func startSIPpPort(t *testing.T, scen string, port int, args ...string) *sippRun {
	t.Helper()
	return startSIPpOn(t, scen, port, "", args...)
}

func startSIPpOn(t *testing.T, scen string, port int, remote string, args ...string) *sippRun {
	t.Helper()
	bin := sippPath(t)
	r := &sippRun{port: port, done: make(chan error, 1), dir: t.TempDir()}
	a := []string{"-sf", scenario(scen), "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", fmt.Sprint(r.port),
		"-cp", fmt.Sprint(freePort(t)), "-mp", fmt.Sprint(freePort(t)), "-m", "1", "-nostdin",
		"-timeout", "30", "-timeout_error", "-trace_msg", "-message_file", filepath.Join(r.dir, "msg.log"),
		"-trace_err", "-error_file", filepath.Join(r.dir, "err.log")}
	a = append(a, args...)
	if remote != "" {
		a = append(a, remote)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	r.cmd = exec.CommandContext(ctx, bin, a...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	r.cmd.Dir = r.dir
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait(); cancel() }()
	if remote == "" {
		waitBound(t, r.port)
	}
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for SIPp to exit and fails the test (with SIPp's message log) unless it passed.
func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	err := <-r.done
	r.done <- err
	if err != nil || os.Getenv("NKB_SIPP_TRACE") != "" {
		msgs, _ := os.ReadFile(filepath.Join(r.dir, "msg.log"))
		errs, _ := os.ReadFile(filepath.Join(r.dir, "err.log"))
		var ee *exec.ExitError
		code := -1
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if err == nil {
			t.Logf("sipp trace:\n%s", msgs)
			return
		}
		t.Fatalf("sipp failed (exit %d): %v\n--- errors ---\n%s\n--- messages ---\n%s", code, err, errs, msgs)
	}
}

func (s *Server) target(tp string) string {
	return s.Addr(tp).String()
}

// recorder is an in-test CallHandler and CallEvents.
type recorder struct {
	mu       sync.Mutex
	calls    chan *Call
	onInvite func(c *Call)
	reoffers []Reoffer
	dtmf     []DTMF
	ended    chan End
	onDTMF   func(c *Call, d DTMF)
}

func newRecorder(onInvite func(c *Call)) *recorder {
	return &recorder{calls: make(chan *Call, 16), onInvite: onInvite, ended: make(chan End, 16)}
}

func (r *recorder) HandleInvite(c *Call) {
	c.SetEvents(r)
	r.calls <- c
	if r.onInvite != nil {
		r.onInvite(c)
	}
}

func (r *recorder) Reoffer(c *Call, ro Reoffer) ([]byte, error) {
	r.mu.Lock()
	r.reoffers = append(r.reoffers, ro)
	r.mu.Unlock()
	return nil, nil
}

func (r *recorder) DTMF(c *Call, d DTMF) {
	r.mu.Lock()
	r.dtmf = append(r.dtmf, d)
	f := r.onDTMF
	r.mu.Unlock()
	if f != nil {
		f(c, d)
	}
}

func (r *recorder) Ended(c *Call, e End) { r.ended <- e }

func (r *recorder) waitEnd(t *testing.T) End {
	t.Helper()
	select {
	case e := <-r.ended:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("call did not end")
	}
	return End{}
}

func (r *recorder) waitCall(t *testing.T, sp *sippRun) *Call {
	t.Helper()
	select {
	case c := <-r.calls:
		return c
	case err := <-sp.done:
		sp.done <- err
		sp.wait(t)
		t.Fatal("SIPp finished without an inbound call")
	case <-time.After(20 * time.Second):
		t.Fatal("no inbound call")
	}
	return nil
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
