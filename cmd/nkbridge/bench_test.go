package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// BenchmarkIdleConnMemory runs the real binary and measures its resident
// memory per idle logged-in API connection, at NKB_BENCH_CONNS (default
// 10000) connections. Run it with -benchtime=1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 10000
	if s := os.Getenv("NKB_BENCH_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < uint64(n)+200 {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
	bin := filepath.Join(b.TempDir(), "nkbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	// A free loopback port (logs stay quiet at level error).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-api-listen", addr, "-metrics-listen", "", "-log-level", "error")
	// No pings during the measurement; the child inherits the raised limit.
	cmd.Env = append(append(os.Environ(), testPortsEnv...), "NKB_LOG_LEVEL=error", "NKB_API_PING_INTERVAL=1h", "NKB_API_IDLE_TIMEOUT=1h")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	}()
	peers.WaitFor(b, 30*time.Second, "the server listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	url := "ws://" + addr + "/"
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	login := func(i int) *websocket.Conn {
		ws, _, err := dialer.Dial(url, nil)
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"class":"core","subclass":"user","cmd":"login","data":{"user":"u%d","password":"p"},"tid":1}`, i)); err != nil {
			b.Fatal(err)
		}
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				b.Fatalf("login %d: %v", i, err)
			}
			if strings.Contains(string(msg), `"result":"ok"`) {
				return ws
			}
			if strings.Contains(string(msg), `"result"`) {
				b.Fatalf("login %d: %s", i, msg)
			}
		}
	}
	// Warm up the runtime with a few connections before the baseline.
	warm := make([]*websocket.Conn, 0, 10)
	for i := range 10 {
		warm = append(warm, login(i))
	}
	time.Sleep(500 * time.Millisecond) // the measurement: let the heap settle before the baseline
	before, err := rssBytes(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	conns := make([]*websocket.Conn, 0, n)
	for i := range n {
		conns = append(conns, login(10+i))
	}
	b.StopTimer()
	time.Sleep(2 * time.Second) // the measurement: let the heap settle before reading RSS
	after, err := rssBytes(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(after-before)/float64(n), "bytes/conn")
	b.ReportMetric(float64(after)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(n), "conns")
	for _, ws := range append(conns, warm...) {
		ws.Close()
	}
}
