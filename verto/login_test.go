package verto

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/verto/vertotest"
)

func TestLoginFirstRunSW(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	m, err := c.LoginSW(e.ctx, "alice@example.com", "secret")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	if m.Str("message") != "logged in" {
		t.Fatalf("message %q", m.Str("message"))
	}
	if len(c.SessID) != 36 {
		t.Fatalf("server should make a UUID sessid, got %q", c.SessID)
	}
	ready := e.next(c, "verto.clientReady")
	rs, ok := ready.Params["reattached_sessions"].([]any)
	if !ok || len(rs) != 0 {
		t.Fatalf("clientReady params %+v", ready.Params)
	}
	// Every later success reply carries the bound sessid.
	p, err := c.Call(e.ctx, "verto.ping", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, p)
	if p.Str("message") != "PONG" || p.Str("sessid") != c.SessID {
		t.Fatalf("ping reply %+v", p.Result)
	}
	if !e.srv.Online("alice") || e.srv.Online("bob") {
		t.Fatal("Online wrong")
	}
	if got := e.srv.Sessions("alice"); len(got) != 1 || got[0] != c.SessID {
		t.Fatalf("Sessions %v", got)
	}
}

func TestLoginStoredSessidSW(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	const sid = "0f8fad5b-d9cb-469f-a165-70867728950e"
	// SW's first request: a sessid-only login, which must get -32000.
	m, err := c.Call(e.ctx, "login", map[string]any{"userVariables": map[string]any{}, "loginParams": map[string]any{}, "sessid": sid})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, m, CodeAuthRequired, "Authentication Required")
	c.SessID = sid
	m, err = c.Call(e.ctx, "login", map[string]any{"login": "alice", "passwd": "secret", "userVariables": map[string]any{}, "loginParams": map[string]any{}, "sessid": sid})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	if m.Str("sessid") != sid {
		t.Fatalf("sessid %q, want the client's", m.Str("sessid"))
	}
	e.next(c, "verto.clientReady")
	// A repeated login on the same socket succeeds without a second clientReady.
	m, err = c.Call(e.ctx, "login", map[string]any{"login": "alice", "passwd": "secret", "sessid": "other"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	if m.Str("sessid") != sid {
		t.Fatal("sessid must stay bound")
	}
	e.noRequest(c, "verto.clientReady", 100*time.Millisecond)
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t, Config{LoginFailDelay: time.Millisecond, MaxLoginFailures: 3})
	c := e.dial()
	c.IntIDs = true // classic client style ids
	call := func(method string, params map[string]any) *vertotest.Message {
		t.Helper()
		m, err := c.Call(e.ctx, method, params)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Classic client: empty logins first, each must get -32000.
	wantErr(t, call("login", map[string]any{"sessid": "abc"}), CodeAuthRequired, "Authentication Required")
	wantErr(t, call("login", nil), CodeAuthFailure, "Missing params")
	wantErr(t, call("login", map[string]any{"login": "alice"}), CodeAuthFailure, "Missing passwd")
	wantErr(t, call("login", map[string]any{"login": "@example.com", "passwd": "x"}), CodeAuthFailure, "Missing or improper credentials")
	// A login that is not a string counts as no login.
	wantErr(t, call("login", map[string]any{"login": 1008, "passwd": "x"}), CodeAuthRequired, "")
	// The gate: anything but login before login.
	wantErr(t, call("verto.invite", map[string]any{"sdp": offerSDP, "dialogParams": vertotest.DialogParams("c1", "echo")}), CodeAuthRequired, "Authentication Required")
	wantErr(t, call("verto.ping", map[string]any{}), CodeAuthRequired, "")
	wantErr(t, call("no.such.method", map[string]any{}), CodeAuthRequired, "")
	// Bad credentials: -32001, the socket stays open...
	wantErr(t, call("login", map[string]any{"login": "alice@x", "passwd": "wrong"}), CodeAuthFailure, "Authentication Failure")
	wantErr(t, call("login", map[string]any{"login": "mallory", "passwd": "secret"}), CodeAuthFailure, "Authentication Failure")
	if closed, _ := c.Closed(); closed {
		t.Fatal("socket closed after two failures")
	}
	// ...until MaxLoginFailures.
	wantErr(t, call("login", map[string]any{"login": "alice", "passwd": "nope"}), CodeAuthFailure, "Authentication Failure")
	err := c.WaitClosed(e.ctx)
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want policy-violation close, got %v", err)
	}
	if s, _ := e.counts(); s != 0 {
		t.Fatalf("%d sessions left", s)
	}
}

func TestLoginWithCredentialsOnAnyMethod(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	m, err := c.Call(e.ctx, "verto.ping", map[string]any{"login": "bob", "passwd": "bobpw"})
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	if m.Str("message") != "PONG" {
		t.Fatalf("%+v", m.Result)
	}
	e.next(c, "verto.clientReady")
}

func TestLoginTimeout(t *testing.T) {
	e := newEnv(t, Config{LoginTimeout: 150 * time.Millisecond})
	c := e.dial()
	err := c.WaitClosed(e.ctx)
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want close on login timeout, got %v", err)
	}
	// A logged-in socket is not closed by it.
	c2 := e.login("alice", "secret", "")
	time.Sleep(300 * time.Millisecond) // an absence (no close) has no condition: a window past the login timeout
	if closed, _ := c2.Closed(); closed {
		t.Fatal("logged-in socket closed")
	}
}

func TestServerPingWhenIdle(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 100 * time.Millisecond})
	c := e.login("alice", "secret", "")
	m := e.next(c, "verto.ping")
	if serno, ok := m.Params["serno"].(float64); !ok || int64(serno) < time.Now().Add(-time.Minute).Unix() {
		t.Fatalf("ping params %+v", m.Params)
	}
	// Clients never answer pings; the socket stays up anyway.
	time.Sleep(250 * time.Millisecond) // the subject: unanswered pings over a while
	p, err := c.Call(e.ctx, "verto.ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, p)
}

func TestSeveralLoginsOfOneUser(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.login("alice", "secret", "")
	b := e.login("alice", "secret", "")
	c := e.login("alice@other.domain", "secret", "")
	if a.SessID == b.SessID || b.SessID == c.SessID {
		t.Fatal("each login needs its own sessid")
	}
	if got := e.srv.Sessions("alice"); len(got) != 3 {
		t.Fatalf("Sessions %v", got)
	}
	b.Close()
	peers.WaitFor(t, 5*time.Second, "session removed", func() bool { return len(e.srv.Sessions("alice")) == 2 })
}

func TestSessidTakeoverPunt(t *testing.T) {
	e := newEnv(t, Config{})
	old := e.login("alice", "secret", "")
	e.next(old, "verto.clientReady")
	n := e.dial()
	n.SessID = old.SessID
	m, err := n.LoginSW(e.ctx, "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	e.next(old, "verto.punt")
	if err := old.WaitClosed(e.ctx); err == nil {
		t.Fatal("old socket not closed")
	}
	e.next(n, "verto.clientReady")
	if got := e.srv.Sessions("alice"); len(got) != 1 || got[0] != n.SessID {
		t.Fatalf("Sessions %v", got)
	}
}

func TestSessidOfAnotherUser(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.login("alice", "secret", "")
	b := e.dial()
	b.SessID = a.SessID
	m, err := b.LoginSW(e.ctx, "bob", "bobpw")
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, m, CodeAuthFailure, "Session in use")
	if err := b.WaitClosed(e.ctx); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want close, got %v", err)
	}
	// alice is untouched.
	p, err := a.Call(e.ctx, "verto.ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, p)
}

func TestOriginCheck(t *testing.T) {
	e := newEnv(t, Config{})
	// A foreign origin: closed at once (1008) with a reason naming the setting, which the page
	// can show; nothing it sends is read.
	ws, _, err := websocket.DefaultDialer.DialContext(e.ctx, e.url, http.Header{"Origin": {"http://evil.example"}})
	if err != nil {
		t.Fatalf("foreign origin: %v", err)
	}
	_ = ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "login", "params": map[string]any{}})
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "verto.allowed_origins") {
		t.Fatalf("foreign origin: %v, want close 1008 naming verto.allowed_origins", err)
	}
	ws.Close()
	host := e.ts.Listener.Addr().String()
	c, err := vertotest.Dial(e.ctx, e.url, nil, http.Header{"Origin": {"http://" + host}})
	if err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
	c.Close()

	e2 := newEnv(t, Config{AllowedOrigins: []string{"http://app.example"}})
	c, err = vertotest.Dial(e2.ctx, e2.url, nil, http.Header{"Origin": {"http://app.example"}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	c.Close()
}

func TestSubprotocolEchoed(t *testing.T) {
	e := newEnv(t, Config{})
	d := websocket.Dialer{Subprotocols: []string{"verto-protocol"}}
	ws, resp, err := d.DialContext(context.Background(), e.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "verto-protocol" || ws.Subprotocol() != "verto-protocol" {
		t.Fatalf("subprotocol not echoed: %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
}

func TestLoginFailuresPerAddress(t *testing.T) {
	e := newEnv(t, Config{LoginFailDelay: time.Millisecond, MaxLoginFailures: 100, MaxLoginFailuresPerIP: 4})
	bad := map[string]any{"login": "alice", "passwd": "wrong"}
	good := map[string]any{"login": "alice", "passwd": "secret"}
	// Failures spread over several sockets from one address add up.
	for i := 0; i < 2; i++ {
		c := e.dial()
		for j := 0; j < 2; j++ {
			m, err := c.Call(e.ctx, "login", bad)
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, m, CodeAuthFailure, "Authentication Failure")
		}
		c.Close()
	}
	// Now even the right password is refused, without asking the user store.
	c := e.dial()
	m, err := c.Call(e.ctx, "login", good)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, m, CodeAuthFailure, "Too many failed logins, try later")
	if err := c.WaitClosed(e.ctx); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want close, got %v", err)
	}
	// The lockout ends with its window.
	e.srv.mu.Lock()
	e.srv.fails["127.0.0.1"].first = time.Now().Add(-time.Hour)
	e.srv.mu.Unlock()
	c = e.dial()
	m, err = c.Call(e.ctx, "login", good)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
}
