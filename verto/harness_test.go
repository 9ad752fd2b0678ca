package verto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/verto/vertotest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testAuth is an in-memory user store.
type testAuth map[string]string

func (a testAuth) Authenticate(_ context.Context, cr Credentials) (string, error) {
	if pw, ok := a[cr.User]; ok && pw == cr.Password {
		return cr.User, nil
	}
	return "", errors.New("bad credentials")
}

// recorder records what the server reports to a call's events, as strings, in order.
type recorder struct {
	ch chan string
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 64)} }

func (r *recorder) put(s string) {
	select {
	case r.ch <- s:
	default:
		panic("recorder full: " + s)
	}
}

func (r *recorder) DTMF(d string)    { r.put("dtmf:" + d) }
func (r *recorder) Hold(held bool)   { r.put(fmt.Sprintf("hold:%v", held)) }
func (r *recorder) Hangup(c Cause)   { r.put("hangup:" + c.Name) }
func (r *recorder) Rejected(c Cause) { r.put("rejected:" + c.Name) }
func (r *recorder) Detached()        { r.put("detached") }
func (r *recorder) Answered(call *Call, sdp string) error {
	r.put("answered:" + call.ID() + ":" + sdp)
	return nil
}
func (r *recorder) ReattachOffer(context.Context) (string, error) {
	r.put("reattach-offer")
	return "offer-2", nil
}
func (r *recorder) Reattached(_ context.Context, sdp string) error {
	r.put("reattached:" + sdp)
	return nil
}

// expect waits for the next recorded event and checks it.
func (r *recorder) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-r.ch:
		if got != want {
			t.Fatalf("event: got %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("event %q did not come", want)
	}
}

// none checks that no event arrives within d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case got := <-r.ch:
		t.Fatalf("unexpected event %q", got)
	case <-time.After(d):
	}
}

// inboundCall is what the test handler saw for one client-placed call.
type inboundCall struct {
	inv  Invite
	call *Call
	rec  *recorder
}

// testHandler routes by destination: "echo" answers at once, "early" sends early media at once,
// "busy" rejects with USER_BUSY, "norecover" gives events that cannot re-attach, anything else
// just rings. Every accepted call is published on calls.
type testHandler struct {
	calls chan *inboundCall
}

type plainEvents struct{ r *recorder }

func (p plainEvents) DTMF(d string)  { p.r.DTMF(d) }
func (p plainEvents) Hold(h bool)    { p.r.Hold(h) }
func (p plainEvents) Hangup(c Cause) { p.r.Hangup(c) }

func (h *testHandler) HandleInvite(_ context.Context, inv Invite, call *Call) (CallEvents, error) {
	rec := newRecorder()
	var ev CallEvents = rec
	switch inv.Destination {
	case "busy":
		return nil, CauseUserBusy
	case "echo":
		if err := call.Answer(answerSDP); err != nil {
			return nil, err
		}
	case "early":
		if err := call.Early(answerSDP); err != nil {
			return nil, err
		}
	case "norecover":
		ev = plainEvents{rec}
	}
	h.calls <- &inboundCall{inv: inv, call: call, rec: rec}
	return ev, nil
}

var (
	offerSDP  = mustRead("chrome_offer.sdp")
	answerSDP = mustRead("server_answer.sdp")
)

func mustRead(name string) string {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "verto", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

type env struct {
	t       *testing.T
	srv     *Server
	ts      *httptest.Server
	url     string
	handler *testHandler
	ctx     context.Context
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	h := &testHandler{calls: make(chan *inboundCall, 64)}
	log := slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, testAuth{"alice": "secret", "bob": "bobpw", "carol": "c"}, h, log)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e := &env{t: t, srv: srv, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/verto", handler: h, ctx: ctx}
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
		cancel()
	})
	return e
}

// tlogWriter sends the server log to t.Log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) dial() *vertotest.Client {
	e.t.Helper()
	c, err := vertotest.Dial(e.ctx, e.url, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// login dials and logs in like SW, checking the reply and the clientReady that follows.
func (e *env) login(user, pw, sessid string) *vertotest.Client {
	e.t.Helper()
	c := e.dial()
	c.SessID = sessid
	m, err := c.LoginSW(e.ctx, user, pw)
	if err != nil {
		e.t.Fatal(err)
	}
	if m.Code() != 0 || m.Str("message") != "logged in" || c.SessID == "" {
		e.t.Fatalf("login reply: %+v", m)
	}
	return c
}

func (e *env) next(c *vertotest.Client, method string) *vertotest.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	m, err := c.Next(ctx, method)
	if err != nil {
		e.t.Fatalf("waiting for %s: %v", method, err)
	}
	return m
}

func (e *env) inbound() *inboundCall {
	e.t.Helper()
	select {
	case ic := <-e.handler.calls:
		return ic
	case <-time.After(5 * time.Second):
		e.t.Fatal("handler saw no invite")
		return nil
	}
}

// noRequest checks that no server request of method arrives within d.
func (e *env) noRequest(c *vertotest.Client, method string, d time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	if m, err := c.Next(ctx, method); err == nil {
		e.t.Fatalf("unexpected %s: %+v", method, m.Params)
	}
}

func wantErr(t *testing.T, m *vertotest.Message, code int, msg string) {
	t.Helper()
	if m.Code() != code || (msg != "" && m.ErrMessage() != msg) {
		t.Fatalf("want error %d %q, got %+v / %+v", code, msg, m.Error, m.Result)
	}
}

func wantOK(t *testing.T, m *vertotest.Message) {
	t.Helper()
	if m.Error != nil || m.Result == nil {
		t.Fatalf("want success, got error %+v", m.Error)
	}
	if s, _ := m.Result["sessid"].(string); s == "" {
		t.Fatalf("success reply without sessid: %+v", m.Result)
	}
}

// sessionCount returns the number of server sessions and calls (for leak checks).
func (e *env) counts() (sessions, calls int) {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	return len(e.srv.sessions), len(e.srv.calls)
}
