package verto

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/verto/vertotest"
)

func (e *env) raw(c *vertotest.Client, frame string) *vertotest.Message {
	e.t.Helper()
	if err := c.SendRaw(websocket.TextMessage, []byte(frame)); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	m, err := c.NextReply(ctx)
	if err != nil {
		e.t.Fatalf("no reply to %q: %v", frame, err)
	}
	return m
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	cases := []struct {
		frame string
		code  int
		id    string
	}{
		{`{not json`, CodeParseError, "null"},
		{``, CodeParseError, "null"},
		{`#SPU 1000`, CodeParseError, "null"},
		{`"a string"`, CodeInvalidRequest, "null"},
		{`42`, CodeInvalidRequest, "null"},
		{`[]`, CodeInvalidRequest, "null"},
		{`{"jsonrpc":"1.0","id":7,"method":"verto.ping"}`, CodeInvalidRequest, "7"},
		{`{"id":8,"method":"verto.ping"}`, CodeInvalidRequest, "8"},
		{`{"jsonrpc":2.0,"id":9,"method":"verto.ping"}`, CodeInvalidRequest, "9"},
		{`{"jsonrpc":"2.0","id":{"x":1},"method":"verto.ping"}`, CodeInvalidRequest, "null"},
		{`{"jsonrpc":"2.0","id":10}`, CodeInvalidRequest, "10"},
		{`{"jsonrpc":"2.0","id":11,"method":5}`, CodeInvalidRequest, "11"},
		{`{"jsonrpc":"2.0","id":12,"method":"verto.nosuch","params":{}}`, CodeMethodNotFound, "12"},
		{`{"jsonrpc":"2.0","id":"u-1","method":"fsapi","params":{"cmd":"status"}}`, CodeMethodNotFound, `"u-1"`},
		{`{"jsonrpc":"2.0","id":13,"method":"verto.broadcast","params":{}}`, CodeMethodNotFound, "13"},
		{`{"jsonrpc":"2.0","id":14,"method":"verto.ping","params":[1,2]}`, CodeInvalidParams, "14"},
		{`{"jsonrpc":"2.0","id":15,"method":"verto.subscribe","params":{"eventChannel":"presence"}}`, CodeCallError, "15"},
		// A notification (no id) still gets a reply, with id null, like mod_verto.
		{`{"jsonrpc":"2.0","method":"verto.nosuch"}`, CodeMethodNotFound, "null"},
	}
	for _, tc := range cases {
		m := e.raw(c, tc.frame)
		if m.Code() != tc.code || string(m.ID) != tc.id {
			t.Fatalf("%q: got code %d id %s (%+v), want %d id %s", tc.frame, m.Code(), m.ID, m.Error, tc.code, tc.id)
		}
		if m.ErrMessage() == "" {
			t.Fatalf("%q: error without message", tc.frame)
		}
	}
	// Keys match without regard to case (cJSON), ids keep their JSON type.
	m := e.raw(c, `{"JSONRPC":"2.0","ID":1.5e3,"Method":"verto.ping","Params":{}}`)
	if m.Code() != 0 || string(m.ID) != "1.5e3" || m.Str("message") != "PONG" {
		t.Fatalf("case-insensitive request: %s %+v %+v", m.ID, m.Result, m.Error)
	}
	// Binary frames are refused with an error.
	if err := c.SendRaw(websocket.BinaryMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"verto.ping"}`)); err != nil {
		t.Fatal(err)
	}
	m, err := c.NextReply(e.ctx)
	if err != nil || m.Code() != CodeInvalidRequest {
		t.Fatalf("binary frame: %v %+v", err, m)
	}
	// subscribe reports the channels it refused.
	m = e.raw(c, `{"jsonrpc":"2.0","id":16,"method":"verto.subscribe","params":{"eventChannel":["a","b"]}}`)
	if ch, _ := m.Error["unauthorizedChannels"].([]any); len(ch) != 2 {
		t.Fatalf("subscribe %+v", m.Error)
	}
	// Still alive.
	p, err := c.Call(e.ctx, "verto.ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, p)
}

func TestBatch(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login("alice", "secret", "")
	frame := `[{"jsonrpc":"2.0","id":1,"method":"verto.ping"},` +
		`{"jsonrpc":"2.0","id":2,"method":"verto.nosuch"},` +
		`{"jsonrpc":"2.0","id":999999,"result":{"method":"verto.invite"}},` +
		`7]`
	if err := c.SendRaw(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	var got []*vertotest.Message
	for len(got) < 3 {
		m, err := c.NextReply(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if string(got[0].ID) != "1" || got[0].Str("message") != "PONG" ||
		string(got[1].ID) != "2" || got[1].Code() != CodeMethodNotFound ||
		string(got[2].ID) != "null" || got[2].Code() != CodeInvalidRequest {
		t.Fatalf("batch replies %+v %+v %+v", got[0], got[1], got[2])
	}
	big := "[" + strings.Repeat(`{"jsonrpc":"2.0","id":1,"method":"verto.ping"},`, maxBatch) + `{"jsonrpc":"2.0","id":1,"method":"verto.ping"}]`
	if m := e.raw(c, big); m.Code() != CodeInvalidRequest {
		t.Fatalf("oversized batch: %+v", m)
	}
}

func TestRepliesToOurRequests(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond})
	c := e.login("alice", "secret", "")
	ping := e.next(c, "verto.ping")
	// A reply to a real request, an error reply, replies to ids we never used: all dropped silently.
	for _, f := range []string{
		fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"method":"verto.ping"}}`, ping.ID),
		`{"jsonrpc":"2.0","id":123456789,"result":{}}`,
		`{"jsonrpc":"2.0","id":"not-ours","result":{}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"x"}}`,
		`{"jsonrpc":"2.0","id":5,"error":"weird"}`,
	} {
		if err := c.SendRaw(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := c.Call(e.ctx, "verto.ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, p)
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	defer cancel()
	if m, err := c.NextReply(ctx); err == nil {
		t.Fatalf("a client reply was answered: %+v", m)
	}
	// The reply to the real ping removed it from the pending table.
	e.srv.mu.Lock()
	var conn *conn
	for cc := range e.srv.conns {
		conn = cc
	}
	e.srv.mu.Unlock()
	conn.pmu.Lock()
	_, still := conn.pending[mustInt(t, ping.ID)]
	conn.pmu.Unlock()
	if still {
		t.Fatal("answered request still pending")
	}
}

func mustInt(t *testing.T, raw json.RawMessage) int64 {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFrameTooLarge(t *testing.T) {
	e := newEnv(t, Config{MaxFrameBytes: 4096})
	c := e.login("alice", "secret", "")
	huge := `{"jsonrpc":"2.0","id":1,"method":"verto.ping","params":{"x":"` + strings.Repeat("a", 8192) + `"}}`
	_ = c.SendRaw(websocket.TextMessage, []byte(huge))
	err := c.WaitClosed(e.ctx)
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("want 1009 close, got %v", err)
	}
	peers.WaitFor(t, 5*time.Second, "session gone", func() bool { s, _ := e.counts(); return s == 0 })
}

func TestInviteFloodRateLimited(t *testing.T) {
	e := newEnv(t, Config{InviteRate: 0.5, InviteBurst: 3})
	c := e.login("alice", "secret", "")
	created, limited := 0, 0
	for i := 0; i < 20; i++ {
		m, err := c.Invite(e.ctx, uuid.NewString(), "ring", offerSDP)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Code() {
		case 0:
			created++
			e.inbound()
		case CodeRateLimited:
			limited++
			if m.Error["cause"] != "NORMAL_CIRCUIT_CONGESTION" || m.Error["callID"] == nil {
				t.Fatalf("rate-limit error %+v", m.Error)
			}
		default:
			t.Fatalf("unexpected %+v", m.Error)
		}
	}
	if created != 3 || limited != 17 {
		t.Fatalf("created %d limited %d, want 3/17", created, limited)
	}
	// Other requests still work, and another socket is not affected.
	p, _ := c.Call(e.ctx, "verto.ping", nil)
	wantOK(t, p)
	c2 := e.login("bob", "bobpw", "")
	m, _ := c2.Invite(e.ctx, uuid.NewString(), "ring", offerSDP)
	wantOK(t, m)
	e.inbound()
	// Disconnecting ends every call the flood created; nothing is left behind.
	c.Close()
	c2.Close()
	peers.WaitFor(t, 5*time.Second, "all gone", func() bool { s, calls := e.counts(); return s == 0 && calls == 0 })
}

func TestMaxCallsPerSession(t *testing.T) {
	e := newEnv(t, Config{InviteRate: 100, InviteBurst: 100, MaxCallsPerSession: 2})
	c := e.login("alice", "secret", "")
	for i := 0; i < 2; i++ {
		m, _ := c.Invite(e.ctx, uuid.NewString(), "ring", offerSDP)
		wantOK(t, m)
		e.inbound()
	}
	m, _ := c.Invite(e.ctx, uuid.NewString(), "ring", offerSDP)
	wantErr(t, m, CodeCallError, "Too many calls")
}

func TestRequestFloodRateLimited(t *testing.T) {
	e := newEnv(t, Config{RequestRate: 1, RequestBurst: 5})
	c := e.login("alice", "secret", "") // the login spends one token
	ok, limited := 0, 0
	for i := 0; i < 30; i++ {
		m, err := c.Call(e.ctx, "verto.ping", nil)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Code() {
		case 0:
			ok++
		case CodeRateLimited:
			limited++
		default:
			t.Fatalf("%+v", m.Error)
		}
	}
	if ok < 4 || ok > 6 || limited != 30-ok {
		t.Fatalf("ok %d limited %d", ok, limited)
	}
	if closed, _ := c.Closed(); closed {
		t.Fatal("a short flood must not close the socket")
	}
}

func TestRequestFloodClosesAfterManyStrikes(t *testing.T) {
	e := newEnv(t, Config{RequestRate: 0.01, RequestBurst: 2})
	c := e.login("alice", "secret", "")
	frame := []byte(`{"jsonrpc":"2.0","id":1,"method":"verto.ping"}`)
	for i := 0; i < maxRateStrikes+20; i++ {
		if err := c.SendRaw(websocket.TextMessage, frame); err != nil {
			break
		}
	}
	if err := c.WaitClosed(e.ctx); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want policy close, got %v", err)
	}
}

func TestListenAndServeTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	h := &testHandler{calls: make(chan *inboundCall, 4)}
	srv, err := New(Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}},
		testAuth{"alice": "secret"}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	c, err := vertotest.Dial(context.Background(), "wss://"+ln.Addr().String()+"/", d, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.LoginSW(context.Background(), "alice", "secret")
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, m)
	// Plain ws on the TLS port fails.
	if _, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/", nil); err == nil {
		t.Fatal("plain ws accepted on a wss listener")
	}
	cancel() // ctx end shuts the server down
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.WaitClosed(context.Background()); err == nil {
		t.Fatal("client should be closed")
	}
	c.Close()
	srv.Close()
}

func TestListenAndServeDefaultAddr(t *testing.T) {
	if (Config{}).withDefaults().Addr != "127.0.0.1:8081" {
		t.Fatal("default listen address must be loopback 8081")
	}
	srv, _ := New(Config{Addr: "127.0.0.1:0", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, testAuth{}, &testHandler{}, nil)
	if err := srv.ListenAndServe(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("want certificate error, got %v", err)
	}
	srv.Close()
	if _, err := New(Config{}, nil, nil, nil); err == nil {
		t.Fatal("New without auth/handler must fail")
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nkbridge test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 2})
	a, b := e.dial(), e.dial()
	_, resp, err := websocket.DefaultDialer.DialContext(e.ctx, e.url, nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("third socket accepted: %v", err)
	}
	resp.Body.Close()
	a.Close()
	peers.WaitFor(t, 5*time.Second, "slot freed", func() bool {
		c, _, err := websocket.DefaultDialer.DialContext(e.ctx, e.url, nil)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	_ = b
}

func TestGarbageFloodRateLimited(t *testing.T) {
	e := newEnv(t, Config{RequestRate: 0.01, RequestBurst: 3})
	c := e.dial()
	codes := map[int]int{}
	for i := 0; i < 6; i++ {
		m := e.raw(c, `{garbage`)
		codes[m.Code()]++
	}
	if codes[CodeParseError] != 3 || codes[CodeRateLimited] != 3 {
		t.Fatalf("codes %v", codes)
	}
	// Replies to our requests cost tokens too (and are dropped silently when over the limit).
	frame := []byte(`{"jsonrpc":"2.0","id":77,"result":{}}`)
	for i := 0; i < maxRateStrikes+10; i++ {
		if err := c.SendRaw(websocket.TextMessage, frame); err != nil {
			break
		}
	}
	if err := c.WaitClosed(e.ctx); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("want policy close, got %v", err)
	}
}
