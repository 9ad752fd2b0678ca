package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

type fakeLoad struct {
	sessions int
	draining bool
}

func (f *fakeLoad) Counts() (int, int) { return f.sessions, 0 }
func (f *fakeLoad) Draining() bool     { return f.draining }

// /health: 200 serving, 429 at max_sessions or above max_cpu, 503 draining
// (which wins over overload); only GET and HEAD.
func TestHealthHandler(t *testing.T) {
	load := &fakeLoad{}
	cpu := 10.0
	logs := &syncBuf{}
	h := healthHandler(load, HealthConfig{MaxSessions: 3, MaxCPU: 80}, func() float64 { return cpu }, slog.New(slog.NewJSONHandler(logs, nil)))
	check := func(method string, want int, wantStatus string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/health", nil))
		if rec.Code != want {
			t.Fatalf("%s = %d %s, want %d", method, rec.Code, rec.Body.String(), want)
		}
		if wantStatus != "" && !strings.Contains(rec.Body.String(), `"status":"`+wantStatus+`"`) {
			t.Fatalf("body %s, want status %s", rec.Body.String(), wantStatus)
		}
		if want != 200 && want != 405 && rec.Header().Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
	}
	check("GET", 200, "ok")
	load.sessions = 3
	check("GET", 429, "overloaded")
	load.sessions = 2
	check("GET", 200, "ok")
	cpu = 95
	check("GET", 429, "overloaded")
	load.draining = true
	check("GET", 503, "draining")
	check("HEAD", 503, "")
	check("POST", 405, "")
	// Each change of status is logged once: ok -> overloaded -> ok -> overloaded -> draining.
	if n := strings.Count(logs.String(), `"msg":"health changed"`); n != 4 || !strings.Contains(logs.String(), `"level":"WARN","msg":"health changed","status":"overloaded"`) {
		t.Fatalf("health logs (%d):\n%s", n, logs.String())
	}
	// Limits off: never 429.
	h = healthHandler(&fakeLoad{sessions: 1 << 20}, HealthConfig{}, func() float64 { return 100 }, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != 200 {
		t.Fatalf("no limits: %d", rec.Code)
	}
}

// The CPU meter measures this process: a busy loop shows up.
func TestCPUMeter(t *testing.T) {
	m := &cpuMeter{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.run(ctx, 200*time.Millisecond); close(done) }()
	var stop atomic.Bool
	go func() {
		for !stop.Load() { // burn CPU until told to stop
		}
	}()
	peers.Poll(5*time.Second, func() bool { return m.Percent() > 0 }) // checked below
	stop.Store(true)
	cancel()
	<-done
	if p := m.Percent(); p <= 0 || p > 200 { // percent of all cores; sampling jitter can pass 100 a little
		t.Fatalf("cpu = %v%%", p)
	}
}

// The real binary: /health goes 429 at health.max_sessions and back to 200;
// API errors are counted by code; sessions by type and state are gauges.
func TestBinaryHealthAndMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := startBinary(t, "NKB_HEALTH_MAX_SESSIONS=2", "NKB_MEDIA_ENABLED=false")
	if c, s := d.health(); c != 200 || s != "ok" {
		t.Fatalf("health = %d %s", c, s)
	}
	before := d.scrape()
	c := d.client("alice", nkclient.Options{})
	p2pSession(t, c) // one p2p session
	if c, _ := d.health(); c != 200 {
		t.Fatalf("health with 1 session = %d", c)
	}
	sid2 := p2pSession(t, c)
	if c, s := d.health(); c != 429 || s != "overloaded" {
		t.Fatalf("health with 2 sessions = %d %s", c, s)
	}
	mid := d.scrape()
	if mid[`nkbridge_sessions{state="wait",type="p2p"}`] != 2 || mid[`nkbridge_api_connections`] != 1 {
		t.Fatalf("gauges: sessions %v, connections %v", mid[`nkbridge_sessions{state="wait",type="p2p"}`], mid[`nkbridge_api_connections`])
	}
	// The alerts' view of /health: the same status, as a metric.
	if before[`nkbridge_health_status{status="ok"}`] != 1 || mid[`nkbridge_health_status{status="overloaded"}`] != 1 ||
		mid[`nkbridge_health_status{status="ok"}`] != 0 {
		t.Fatalf("nkbridge_health_status: before ok=%v, at 429 overloaded=%v ok=%v", before[`nkbridge_health_status{status="ok"}`],
			mid[`nkbridge_health_status{status="overloaded"}`], mid[`nkbridge_health_status{status="ok"}`])
	}
	ctx := context.Background()
	for _, typ := range []string{"echo", "echo", "nope"} {
		code := map[string]int{"echo": 2001, "nope": 2002}[typ]
		_, err := c.StartSession(ctx, nkclient.SessionStart{Type: typ, Offer: &nkclient.SDP{SDP: "v=0"}})
		if !errors.Is(err, &nkclient.APIError{Code: code}) {
			t.Fatalf("%s start = %v, want error %d", typ, err, code)
		}
	}
	if err := c.StopSession(ctx, sid2, 0, ""); err != nil {
		t.Fatal(err)
	}
	if c, s := d.health(); c != 200 || s != "ok" {
		t.Fatalf("health after stop = %d %s", c, s)
	}
	after := d.scrape()
	checkDelta(t, before, after, map[string]float64{
		`nkbridge_api_errors_total{code="2001",name="no_mediaserver"}`:       2,
		`nkbridge_api_errors_total{code="2002",name="unknown_session_type"}`: 1,
		`nkbridge_sessions_started_total{backend="",type="p2p"}`:             2,
		`nkbridge_sessions_stopped_total{code="1013",type="p2p"}`:            1,
		`nkbridge_api_connections_total`:                                     1,
	})
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	d.waitExit(10 * time.Second)
}

// SIGTERM with a call answered: health says 503 at once, new connections,
// sessions and calls are refused (1061), the answered call goes on (both
// sides can still use it, events still flow) until it is hung up; then the
// process exits 0.
func TestBinarySIGTERMDrainsCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := startBinary(t, "NKB_DRAIN_TIMEOUT=60s")
	alice, bob := d.dial(), d.dial()
	login := func(ws *apitest.Raw, user string) {
		if r := ws.Req("core", "user", "login", map[string]any{"user": user, "password": "x"}); r["result"] != "ok" {
			t.Fatalf("login = %v", r)
		}
	}
	login(alice, "alice")
	login(bob, "bob")
	r := alice.Req("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0 alice"}})
	sid, _ := r["data"].(map[string]any)["session_id"].(string)
	if err := alice.Write(map[string]any{"class": "media", "subclass": "call", "cmd": "start", "tid": alice.NewTID(), "data": map[string]any{"type": "user", "user": "bob", "session_id": sid, "offer": map[string]any{"sdp": "v=0 alice"}}}); err != nil {
		t.Fatal(err)
	}
	inv := bob.Next(func(m map[string]any) bool { return m["cmd"] == "invite" }, 10*time.Second, "a frame")
	callID, _ := inv["data"].(map[string]any)["call_id"].(string)
	if r := bob.Req("media", "call", "answered", map[string]any{"call_id": callID, "answer": map[string]any{"sdp": "v=0 bob"}}); r["result"] != "ok" {
		t.Fatalf("answered = %v", r)
	}
	alice.Next(apitest.IsEvent("media", "session", "answer", sid), 10*time.Second, "a frame")
	// Carol's session keeps the daemon up after the call, for the last scrape.
	carol := d.dial()
	carolSession := loginStart(t, carol)
	before := d.scrape()

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if !peers.Poll(5*time.Second, func() bool { c, s := d.health(); return c == 503 && s == "draining" }) {
		t.Fatalf("health not 503 after SIGTERM; logs:\n%s", d.logs.String())
	}
	if m := d.scrape(); m[`nkbridge_health_status{status="draining"}`] != 1 || m[`nkbridge_health_status{status="ok"}`] != 0 {
		t.Fatalf("nkbridge_health_status while draining: draining=%v ok=%v", m[`nkbridge_health_status{status="draining"}`], m[`nkbridge_health_status{status="ok"}`])
	}
	if !peers.Poll(5*time.Second, func() bool { return d.logged(map[string]any{"msg": "nkbridge draining"}) }) {
		t.Fatalf("not draining; logs:\n%s", d.logs.String())
	}
	// Refused: new sessions and calls (1061), new connections.
	r = bob.Req("media", "session", "start", map[string]any{"type": "p2p", "offer": map[string]any{"sdp": "v=0"}})
	if e, _ := r["data"].(map[string]any); r["result"] != "error" || e["code"] != float64(1061) {
		t.Fatalf("session start while draining = %v", r)
	}
	r = bob.Req("media", "call", "start", map[string]any{"type": "user", "user": "alice", "offer": map[string]any{"sdp": "v=0"}})
	if e, _ := r["data"].(map[string]any); r["result"] != "error" || e["code"] != float64(1061) {
		t.Fatalf("call start while draining = %v", r)
	}
	if _, err := apitest.DialRawWith(t, "ws://"+d.addr+"/", apitest.RawOptions{}); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	// The answered call is intact: info works, and it is still there after a while.
	time.Sleep(500 * time.Millisecond) // "still there after a while": a window, no condition
	r = alice.Req("media", "call", "info", map[string]any{"call_id": callID})
	if data, _ := r["data"].(map[string]any); r["result"] != "ok" || data["state"] != "answered" {
		t.Fatalf("call info while draining = %v", r)
	}
	select {
	case err := <-d.done:
		d.done <- err
		t.Fatalf("exited with a call up: %v", err)
	default:
	}
	// Bob hangs up; alice gets the hangup with bob's code (not a server stop).
	if r := bob.Req("media", "call", "hangup", map[string]any{"call_id": callID, "code": 0, "reason": "Bye from bob"}); r["result"] != "ok" {
		t.Fatalf("hangup = %v", r)
	}
	ev := alice.Next(apitest.IsEvent("media", "call", "hangup", callID), 10*time.Second, "a frame")
	if b, _ := ev["data"].(map[string]any)["body"].(map[string]any); b["reason"] != "Bye from bob" {
		t.Fatalf("hangup event = %v", ev)
	}
	alice.Next(apitest.IsEvent("media", "session", "stop", sid), 10*time.Second, "a frame")
	after := d.scrape() // still answering while draining
	checkDelta(t, before, after, map[string]float64{
		`nkbridge_calls_ended_total{outcome="answered",target="user"}`: 1,
		`nkbridge_api_errors_total{code="1061",name="session_stop"}`:   2,
		`nkbridge_draining`: 1,
	})
	if r := carol.Req("media", "session", "stop", map[string]any{"session_id": carolSession}); r["result"] != "ok" {
		t.Fatalf("stop = %v", r)
	}
	d.waitExit(10 * time.Second)
	if !d.logged(map[string]any{"msg": "nkbridge drained"}) || !d.logged(map[string]any{"msg": "call hangup", "call_id": callID, "session_id": sid, "reason": "Bye from bob"}) ||
		!d.logged(map[string]any{"msg": "call answered", "call_id": callID, "session_id": sid}) {
		t.Fatalf("logs:\n%s", d.logs.String())
	}
	if _, err := http.Get("http://" + d.ops + "/health"); err == nil {
		t.Fatal("health still answering after exit")
	}
}

// SIGTERM with a session that never ends: after drain_timeout what is left
// is stopped (1061) and the process still exits 0; SIGTERM twice stops at once.
func TestBinaryDrainDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := startBinary(t, "NKB_DRAIN_TIMEOUT=1s")
	ws := d.dial()
	sid := loginStart(t, ws)
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitExit(10 * time.Second)
	if el := time.Since(start); el < time.Second {
		t.Fatalf("exited after %v, before drain_timeout", el)
	}
	if !d.logged(map[string]any{"msg": "nkbridge drain timeout, stopping what is left"}) ||
		!d.logged(map[string]any{"msg": "session stopped", "session_id": sid, "code": float64(1061)}) {
		t.Fatalf("logs:\n%s", d.logs.String())
	}

	d = startBinary(t, "NKB_DRAIN_TIMEOUT=60s")
	loginStart(t, d.dial())
	start = time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if !peers.Poll(5*time.Second, func() bool { return d.logged(map[string]any{"msg": "nkbridge draining"}) }) {
		t.Fatalf("not draining:\n%s", d.logs.String())
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitExit(10 * time.Second)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("second SIGTERM took %v", el)
	}
}

// With a FreeSWITCH backend configured (the fake Event Socket server), the
// ESL connection state is a metric: up while connected, down when
// FreeSWITCH goes away.
func TestBinaryESLMetric(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	fs, err := fakefs.Start(fakefs.Options{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	d := startBinary(t, "NKB_FREESWITCH_ESL_ADDR="+fs.Addr(), "NKB_FREESWITCH_ESL_PASSWORD=pw")
	up := func() float64 { return d.scrape()[`nkbridge_esl_up{backend="freeswitch"}`] }
	if !peers.PollEvery(10*time.Second, 50*time.Millisecond, func() bool { return up() == 1 }) {
		t.Fatalf("esl_up never 1; logs:\n%s", d.logs.String())
	}
	if v, ok := d.scrape()[`nkbridge_media_sessions{backend="freeswitch"}`]; !ok || v != 0 {
		t.Fatalf("freeswitch sessions gauge = %v %v", v, ok)
	}
	fs.StopListening()
	fs.DropConnections()
	if !peers.PollEvery(20*time.Second, 50*time.Millisecond, func() bool { return up() == 0 }) {
		t.Fatal("esl_up still 1 after FreeSWITCH went away")
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	d.waitExit(10 * time.Second)
}

// metrics.pprof: off by default (/debug/pprof/ is 404 on the metrics
// listener); on, the goroutine profile answers there, and never on the API
// port.
func TestBinaryPprof(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	get := func(url string) (int, string) {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	off := startBinary(t, "NKB_MEDIA_ENABLED=false")
	if code, body := get("http://" + off.ops + "/debug/pprof/goroutine?debug=1"); code != 404 {
		t.Fatalf("pprof off: %d %.200s", code, body)
	}
	on := startBinary(t, "NKB_MEDIA_ENABLED=false", "NKB_METRICS_PPROF=true")
	code, body := get("http://" + on.ops + "/debug/pprof/goroutine?debug=1")
	if code != 200 || !strings.HasPrefix(body, "goroutine profile: total ") || !strings.Contains(body, "main.run") {
		t.Fatalf("pprof on: %d %.300s", code, body)
	}
	if code, _ := get("http://" + on.ops + "/metrics"); code != 200 {
		t.Fatalf("/metrics beside pprof: %d", code)
	}
	if code, _ := get("http://" + on.addr + "/debug/pprof/goroutine?debug=1"); code == 200 {
		t.Fatal("pprof served on the API port")
	}
	if !strings.Contains(on.logs.String(), `"pprof":true`) || !strings.Contains(off.logs.String(), `"pprof":false`) {
		t.Fatalf("listening line does not say pprof; logs:\n%s", on.logs.String())
	}
}
