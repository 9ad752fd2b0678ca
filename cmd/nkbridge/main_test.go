package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"go.uber.org/goleak"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigDefaultsFileEnv(t *testing.T) {
	cfg, err := loadConfig("", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "127.0.0.1:9010" || cfg.API.PingInterval != time.Minute || cfg.API.MaxFrameBytes != 256<<10 ||
		cfg.Sessions.WaitTimeout != time.Minute || cfg.Sessions.ReadyTimeout != 86400*time.Second || cfg.Calls.RingTime != 30*time.Second {
		t.Fatalf("defaults = %+v", cfg)
	}
	h, _ := auth.HashPassword("pw", 1000)
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
api:
  listen: 127.0.0.1:9999
  idle_timeout: 10s
  allowed_origins: [https://a.example]
users:
  - user: alice
    password_hash: "%s"
sessions:
  backends: {park: freeswitch}
`, h)), 0o600)
	cfg, err = loadConfig(file, envMap(map[string]string{
		"NKB_API_IDLE_TIMEOUT": "20s", "NKB_LOG_LEVEL": "debug", "NKB_API_ALLOWED_ORIGINS": "https://b.example, https://c.example",
		"NKB_SESSIONS_BACKENDS": "mcu=media", "NKB_API_MAX_CONNECTIONS": "7",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "127.0.0.1:9999" || cfg.API.IdleTimeout != 20*time.Second || cfg.Log.Level != "debug" ||
		len(cfg.API.AllowedOrigins) != 2 || cfg.API.AllowedOrigins[1] != "https://c.example" || cfg.API.MaxConnections != 7 ||
		cfg.Sessions.Backends["mcu"] != "media" || len(cfg.Users) != 1 || cfg.API.PingInterval != time.Minute {
		t.Fatalf("merged = %+v", cfg)
	}
	for name, content := range map[string]string{
		"unknown key": "api:\n  lisen: x\n",
		"bad level":   "log:\n  level: loud\n",
		"bad user":    "users:\n  - user: bob\n",
		"bad dur":     "api:\n  idle_timeout: soon\n",
	} {
		os.WriteFile(file, []byte(content), 0o600)
		if _, err := loadConfig(file, envMap(nil)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := loadConfig("", envMap(map[string]string{"NKB_API_PING_INTERVAL": "often"})); err == nil {
		t.Error("bad env duration accepted")
	}
}

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), nil, []string{"-version"}, nil, &out, &errb, envMap(nil)); err != nil || !strings.HasPrefix(out.String(), "nkbridge ") {
		t.Fatalf("-version: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), nil, []string{"-hash-password"}, strings.NewReader("secret\n"), &out, &errb, envMap(nil)); err != nil {
		t.Fatal(err)
	}
	u, err := auth.NewUsers(map[string]string{"a": strings.TrimSpace(out.String())})
	if err != nil || !u.Check("a", "secret") {
		t.Fatalf("hash-password output unusable: %q %v", out.String(), err)
	}
	out.Reset()
	if err := run(context.Background(), nil, []string{"-check-config", "-api-listen", "127.0.0.1:1234", "-log-format", "json"}, nil, &out, &errb, envMap(map[string]string{"NKB_CALLS_RING_TIME": "5s"})); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "listen: 127.0.0.1:1234") || !strings.Contains(s, "format: json") || !strings.Contains(s, "ring_time: 5s") {
		t.Fatalf("check-config = %s", s)
	}
	// Anonymous logins off loopback are refused at start.
	err = run(context.Background(), nil, []string{"-api-listen", "0.0.0.0:0"}, nil, &out, &errb, envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "no users") {
		t.Fatalf("0.0.0.0 without users: %v", err)
	}
	if err := run(context.Background(), nil, []string{"-nope"}, nil, &out, &errb, envMap(nil)); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *syncBuf
	addr string // control API
	ops  string // metrics and health
	done chan error
}

// startBinary builds and runs the real binary with JSON logs on a free port.
func startBinary(t *testing.T, env ...string) *daemon {
	t.Helper()
	bin := buildBinary(t)
	cmd := exec.Command(bin, "-api-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0", "-log-format", "json")
	// Any free WebRTC port, no SIP or Verto listeners on fixed ports: other
	// tests may run a daemon at the same time (env can turn them back on).
	cmd.Env = append(append(os.Environ(), testPortsEnv...), env...)
	return startCommand(t, cmd)
}

// startCommand runs a daemon command that logs JSON to stderr and waits for
// its API and metrics listeners; it is killed when the test ends.
func startCommand(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, logs: &syncBuf{}, done: make(chan error, 1)}
	t.Cleanup(func() { cmd.Process.Kill(); <-d.done })
	addrc, opsc := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`"msg":"api listening","addr":"([0-9.:]+)"`)
		reOps := regexp.MustCompile(`"msg":"metrics listening","addr":"([0-9.:]+)"`)
		for sc.Scan() {
			line := sc.Text()
			d.logs.Write([]byte(line + "\n"))
			if m := re.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
			if m := reOps.FindStringSubmatch(line); m != nil {
				opsc <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		d.done <- cmd.Wait()
	}()
	for d.addr == "" || d.ops == "" {
		select {
		case d.addr = <-addrc:
		case d.ops = <-opsc:
		case <-time.After(20 * time.Second):
			t.Fatalf("no listening line; logs:\n%s", d.logs.String())
		}
	}
	return d
}

func (d *daemon) dial() *apitest.Raw {
	d.t.Helper()
	return apitest.DialRaw(d.t, "ws://"+d.addr+"/")
}

func loginStart(t *testing.T, ws *apitest.Raw) string {
	t.Helper()
	if r := ws.Req("core", "user", "login", map[string]any{"user": "u", "password": "p"}); r["result"] != "ok" {
		t.Fatalf("login = %v", r)
	}
	r := ws.Req("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})
	sid, _ := r["data"].(map[string]any)["session_id"].(string)
	if sid == "" {
		t.Fatalf("start = %v", r)
	}
	return sid
}

func (d *daemon) waitExit(timeout time.Duration) {
	d.t.Helper()
	select {
	case err := <-d.done:
		d.done <- err // for Cleanup
		if err != nil {
			d.t.Fatalf("exit: %v\n%s", err, d.logs.String())
		}
	case <-time.After(timeout):
		d.t.Fatalf("still running; logs:\n%s", d.logs.String())
	}
}

// logged reports whether a JSON log line has all the given fields.
func (d *daemon) logged(fields map[string]any) bool {
	for _, line := range strings.Split(d.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		all := true
		for k, v := range fields {
			if m[k] != v {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

// The real binary: login and a p2p session over a WebSocket; SIGINT stops
// at once (the session stops with 1061) and the process exits 0. The logs
// are JSON and carry the session id.
func TestBinarySIGINT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := startBinary(t)
	ws := d.dial()
	sid := loginStart(t, ws)
	if r := ws.Req("media", "session", "start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": "v=0"}}); r["result"] != "error" {
		t.Fatalf("echo without backend = %v", r)
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	d.waitExit(10 * time.Second)
	if !d.logged(map[string]any{"msg": "session stopped", "session_id": sid, "code": float64(1061)}) ||
		!strings.Contains(d.logs.String(), "NO USERS CONFIGURED") || !d.logged(map[string]any{"msg": "nkbridge stopped"}) {
		t.Fatalf("logs:\n%s", d.logs.String())
	}
}

// SIGTERM drains: no new connections or sessions, the running session goes
// on; when it ends the process exits 0.
func TestBinarySIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := startBinary(t, "NKB_DRAIN_TIMEOUT=30s")
	ws := d.dial()
	sid := loginStart(t, ws)
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if !peers.Poll(5*time.Second, func() bool { return d.logged(map[string]any{"msg": "nkbridge draining"}) }) {
		t.Fatalf("not draining; logs:\n%s", d.logs.String())
	}
	r := ws.Req("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})
	if e, _ := r["data"].(map[string]any); r["result"] != "error" || e["code"] != float64(1061) || e["error"] != "Server draining" {
		t.Fatalf("start while draining = %v", r)
	}
	if _, err := apitest.DialRawWith(t, "ws://"+d.addr+"/", apitest.RawOptions{}); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	time.Sleep(300 * time.Millisecond) // an absence (no exit) has no condition to wait on: a window
	select {
	case err := <-d.done:
		d.done <- err
		t.Fatalf("exited while a session was running: %v", err)
	default:
	}
	if r := ws.Req("media", "session", "stop", map[string]any{"session_id": sid}); r["result"] != "ok" {
		t.Fatalf("stop = %v", r)
	}
	d.waitExit(10 * time.Second)
	if !d.logged(map[string]any{"msg": "nkbridge drained"}) {
		t.Fatalf("logs:\n%s", d.logs.String())
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig("../../testdata/config/example.yaml", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Format != "json" || cfg.API.PingInterval != 30*time.Second || len(cfg.API.AllowedOrigins) != 1 {
		t.Fatalf("example = %+v", cfg)
	}
}

// run in-process: serves until its context is cancelled, then returns nil
// having stopped everything (TestMain checks for leaked goroutines).
func TestRunServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, []string{"-api-listen", addr, "-metrics-listen", "127.0.0.1:0"}, nil, io.Discard, logs, testEnv(nil))
	}()
	var ws *apitest.Raw
	peers.WaitFor(t, 5*time.Second, "the API listening", func() bool {
		ws, err = apitest.DialRawWith(t, "ws://"+addr+"/api", apitest.RawOptions{})
		return err == nil
	})
	ws.Login("u", "p")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
	var ce *websocket.CloseError
	if err := ws.WaitClosed(5 * time.Second); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("after stop: %v", err)
	}
	if !strings.Contains(logs.String(), "nkbridge stopped") {
		t.Fatalf("logs: %s", logs.String())
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHooksOrder(t *testing.T) {
	var got []string
	h := hooks{
		Drain: []func(){func() { got = append(got, "d1") }, func() { got = append(got, "d2") }},
		Stop:  []func(){func() { got = append(got, "s1") }, func() { got = append(got, "s2") }},
	}
	h.drain()
	h.stop()
	hooks{}.stop()
	if strings.Join(got, ",") != "d1,d2,s2,s1" {
		t.Fatalf("order = %v", got)
	}
}
