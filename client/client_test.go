package nkclient_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func dial(t *testing.T, url string, o nkclient.Options) *nkclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o.Logger == nil {
		o.Logger = peers.TestLogger(t)
	}
	c, err := nkclient.Dial(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, c *nkclient.Client, user string) {
	t.Helper()
	if _, err := c.Login(context.Background(), user, "pw"); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
}

// The server acks a login and answers it only after its failed-login
// back-off (400 ms here): with a 100 ms request timeout the client still
// gets the 1030 reply because the ack extended the wait. Without the ack
// handling it times out (1005).
func TestAckExtendsDeadline(t *testing.T) {
	h, err := auth.HashPassword("right", 1000)
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NewUsers(map[string]string{"alice": h})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, wsapi.Config{Users: users, LoginBackoff: 400 * time.Millisecond}, false, peers.TestLogger(t))
	c := dial(t, srv.URL, nkclient.Options{RequestTimeout: 100 * time.Millisecond, AckTimeout: 5 * time.Second})
	ctx := context.Background()
	_, err = c.Login(ctx, "alice", "wrong")
	if !errors.Is(err, &nkclient.APIError{Code: 1030}) {
		t.Fatalf("wrong password: %v", err)
	}
	// The second failure waits twice as long (800 ms); still acked.
	start := time.Now()
	if _, err := c.Login(ctx, "alice", "wrong"); !errors.Is(err, &nkclient.APIError{Code: 1030}) {
		t.Fatalf("second wrong password: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("reply after %v: the back-off did not apply, the test proves nothing", el)
	}
	if sid, err := c.Login(ctx, "alice", "right"); err != nil || sid == "" {
		t.Fatalf("login = %q %v", sid, err)
	}
	if n := c.Counters().Acks; n < 3 {
		t.Fatalf("acks = %d", n)
	}
}

// Server pings (every 30 ms, answer deadline 200 ms) are answered: after
// many of them the connection is still up and requests still work.
func TestPingsAnswered(t *testing.T) {
	srv := newServer(t, wsapi.Config{PingInterval: 30 * time.Millisecond, RequestTimeout: 200 * time.Millisecond}, false, nil)
	c := dial(t, srv.URL, nkclient.Options{})
	login(t, c, "alice")
	peers.WaitFor(t, 5*time.Second, "10 pings", func() bool { return c.Counters().Pings >= 10 })
	if _, err := c.StartSession(context.Background(), nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

// An invite that the caller cancels before it is accepted ends with the
// hangup's code; a rejected invite gives the caller a rejected event; two
// callees: the first acceptance wins, the late one gets 2024.
func TestInvites(t *testing.T) {
	srv := newServer(t, wsapi.Config{}, false, peers.TestLogger(t))
	ctx := context.Background()
	invites := make(chan *nkclient.Invite, 4)
	onInvite := func(_ context.Context, inv *nkclient.Invite) { invites <- inv }
	bob1 := dial(t, srv.URL, nkclient.Options{OnInvite: onInvite})
	bob2 := dial(t, srv.URL, nkclient.Options{OnInvite: onInvite})
	login(t, bob1, "bob")
	login(t, bob2, "bob")
	alice := dial(t, srv.URL, nkclient.Options{})
	login(t, alice, "alice")
	next := func() *nkclient.Invite {
		t.Helper()
		select {
		case inv := <-invites:
			return inv
		case <-time.After(5 * time.Second):
			t.Fatal("no invite")
			return nil
		}
	}

	// 1. cancelled by the caller
	call, err := alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := next(), next()
	if a.CallID != call || b.CallID != call {
		t.Fatalf("invites for %s, %s; call %s", a.CallID, b.CallID, call)
	}
	if err := alice.Hangup(ctx, call, 0, ""); err != nil {
		t.Fatal(err)
	}
	for _, inv := range []*nkclient.Invite{a, b} {
		select {
		case <-inv.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("invite not ended by the caller's hangup")
		}
	}

	// 2. rejected by both: the caller sees the call end
	hang := alice.Events(nkclient.Selector{Class: "media", Subclass: "call", Type: "hangup"})
	defer hang.Close()
	call, err = alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		inv := next()
		if err := inv.Reject(ctx, 0, "busy"); err != nil {
			t.Fatal(err)
		}
		if h := inv.HangupReason(); h.Code != 2021 || h.Reason != "busy" {
			t.Fatalf("rejected invite ended with %+v", h)
		}
	}
	select {
	case ev := <-hang.C:
		var h nkclient.Hangup
		if json.Unmarshal(ev.Body, &h); ev.ObjID != call || h.Code == 0 {
			t.Fatalf("hangup event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no hangup after both callees rejected")
	}

	// 3. both accept: one wins
	_, err = alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b = next(), next()
	if err := a.Accept(ctx, nkclient.SDP{SDP: "v=0 a"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := b.Accept(ctx, nkclient.SDP{SDP: "v=0 b"}, ""); !errors.Is(err, &nkclient.APIError{Code: 2024}) {
		// the loser may also have been hung up before it answered
		if !errors.Is(err, &nkclient.APIError{Code: 2020}) {
			t.Fatalf("late accept: %v", err)
		}
	}
	<-b.Done()
	if err := a.Hangup(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	<-a.Done()
}

// A subscriber that does not read loses events (counted) instead of
// stalling the connection: requests and other subscribers go on.
func TestSlowSubscriberDoesNotStall(t *testing.T) {
	srv := newServer(t, wsapi.Config{}, false, nil)
	ctx := context.Background()
	c := dial(t, srv.URL, nkclient.Options{EventBuffer: 2})
	login(t, c, "alice")
	slow := c.Events(nkclient.Selector{Class: "myapp"})
	var mu sync.Mutex
	n := 0
	stop := c.OnEvent(nkclient.Selector{Class: "myapp"}, func(nkclient.Event) { mu.Lock(); n++; mu.Unlock() })
	if err := c.Subscribe(ctx, nkclient.Selector{Class: "myapp"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := c.SendEvent(ctx, nkclient.Event{Class: "myapp", Type: "x", ObjID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	peers.WaitFor(t, 5*time.Second, "18 events dropped", func() bool { return slow.Dropped() == 18 })
	peers.WaitFor(t, 5*time.Second, "20 events to the callback", func() bool { mu.Lock(); defer mu.Unlock(); return n == 20 })
	stop()
	slow.Close()
	if _, ok := <-slow.C; !ok {
		t.Fatal("buffered events lost on Close")
	}
}

// The embedded backend's echo session through the client: a pion peer's
// 1 kHz tone comes back.
func TestEchoSessionAudio(t *testing.T) {
	srv := newServer(t, wsapi.Config{}, true, peers.TestLoggerLevel(t, 0))
	c := dial(t, srv.URL, nkclient.Options{})
	login(t, c, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := peers.NewPCMUPeer(t, "echo")
	s, err := c.StartSession(ctx, nkclient.SessionStart{Type: "echo", Offer: &nkclient.SDP{SDP: p.Offer()}})
	if err != nil || s.Answer == nil {
		t.Fatalf("echo = %+v %v", s, err)
	}
	p.SetAnswer(s.Answer.SDP)
	go p.SendToneFor(ctx, 1000, 10*time.Second)
	peers.WaitFor(t, 15*time.Second, "1 s of echoed audio", func() bool { pcm, _ := p.Heard(); return len(pcm) >= 8000 })
	pcm, _ := p.Heard()
	if f, ratio := audiotest.Dominant(pcm[len(pcm)-4000:], 8000, 400, 1000, 2000); f != 1000 || ratio < 5 {
		t.Fatalf("heard %v Hz (ratio %.1f), want 1000", f, ratio)
	}
	cancel()
	if err := c.StopSession(context.Background(), s.SessionID, 0, ""); err != nil {
		t.Fatal(err)
	}
}

// A browser Origin other than the API's own host is refused unless allowed
// (the connection is closed at once with a reason naming api.allowed_origins,
// which the client reports); the API's own origin is accepted.
func TestOrigin(t *testing.T) {
	srv := newServer(t, wsapi.Config{AllowedOrigins: []string{"https://app.example"}}, false, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nkclient.Dial(ctx, srv.URL, nkclient.Options{Origin: "https://evil.example", Logger: peers.TestLogger(t)})
	if err == nil {
		_, err = c.Login(ctx, "alice", "pw")
		select {
		case <-c.Done():
		case <-ctx.Done():
		}
		if c.Err() != nil {
			err = c.Err()
		}
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "api.allowed_origins") {
		t.Fatalf("foreign origin: %v, want a refusal naming api.allowed_origins", err)
	}
	for _, o := range []string{"https://app.example", originOf(srv.URL)} {
		c := dial(t, srv.URL, nkclient.Options{Origin: o})
		login(t, c, "alice")
	}
}

// wss with the server's certificate.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := peers.SelfSignedCert(t)
	srv := newServer(t, wsapi.Config{TLSCert: certFile, TLSKey: keyFile}, false, nil)
	wss := "wss" + strings.TrimPrefix(srv.URL, "ws")
	if _, err := nkclient.Dial(context.Background(), wss, nkclient.Options{}); err == nil {
		t.Fatal("unknown certificate accepted")
	}
	c := dial(t, wss, nkclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	login(t, c, "alice")
}

// The server going away ends pending requests with the close error; Close
// afterwards is fine and requests then fail at once.
func TestServerGoesAway(t *testing.T) {
	srv, err := startAPIServer(wsapi.Config{}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.URL, nkclient.Options{})
	login(t, c, "alice")
	sessions := c.Events(nkclient.Selector{Class: "media"})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, ok := <-sessions.C; ok {
		t.Fatal("subscription not closed")
	}
	if _, err := c.StartSession(context.Background(), nkclient.SessionStart{Type: "p2p"}); !errors.As(err, &ce) {
		t.Fatalf("request after the end: %v", err)
	}
}

// scripted is a WebSocket server that is not nkbridge: it plays script
// against each connection (bad server input, requests nkbridge never sends).
func scripted(t *testing.T, script func(ws *websocket.Conn)) string {
	t.Helper()
	up := websocket.Upgrader{}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		conns  []*websocket.Conn
		closed bool
	)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			ws.Close()
			return
		}
		conns = append(conns, ws)
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		defer ws.Close()
		script(ws)
	}))
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for _, ws := range conns {
			ws.Close()
		}
		mu.Unlock()
		wg.Wait()
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// readRequest reads the client's next request and returns its tid.
func readRequest(ws *websocket.Conn) (json.RawMessage, error) {
	var m struct {
		TID json.RawMessage `json:"tid"`
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	err := ws.ReadJSON(&m)
	return m.TID, err
}

// Frames that break the framing close the connection with a clear
// *ProtocolError, which a pending request returns too; the client sends a
// 1002 close. Unknown or stale reply tids are ignored.
func TestBadServerInput(t *testing.T) {
	for _, tc := range []struct {
		name, frame, reason string
		binary              bool
	}{
		{"not json", `hello`, "not a JSON object", false},
		{"truncated", `{"result":"ok","tid":`, "malformed JSON", false},
		{"array", `[1,2]`, "not a JSON object", false},
		{"empty", ``, "not a JSON object", false},
		{"nothing", `{"foo":1}`, "neither a request, a reply nor an ack", false},
		{"string tid", `{"result":"ok","tid":"x"}`, "never sends", false},
		{"request without tid", `{"class":"core","cmd":"ping"}`, "without tid", false},
		{"binary", `{"result":"ok","tid":1}`, "binary frame", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closeCode := make(chan int, 1)
			url := scripted(t, func(ws *websocket.Conn) {
				if _, err := readRequest(ws); err != nil {
					return
				}
				// A stale reply and an ack of an unknown tid are ignored.
				_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"result":"ok","tid":999}`))
				_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"ack":998}`))
				typ := websocket.TextMessage
				if tc.binary {
					typ = websocket.BinaryMessage
				}
				_ = ws.WriteMessage(typ, []byte(tc.frame))
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						var ce *websocket.CloseError
						if errors.As(err, &ce) {
							closeCode <- ce.Code
						}
						close(closeCode)
						return
					}
				}
			})
			c := dial(t, url, nkclient.Options{})
			err := c.Request(context.Background(), "core", "user", "list", nil, nil)
			var pe *nkclient.ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, tc.reason) {
				t.Fatalf("request: %v, want a protocol error %q", err, tc.reason)
			}
			if !errors.As(c.Err(), &pe) {
				t.Fatalf("Err = %v", c.Err())
			}
			if code := <-closeCode; code != websocket.CloseProtocolError {
				t.Fatalf("close code %d", code)
			}
		})
	}
}

// A frame bigger than MaxFrameBytes ends the connection.
func TestOversizedFrame(t *testing.T) {
	url := scripted(t, func(ws *websocket.Conn) {
		if _, err := readRequest(ws); err != nil {
			return
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"result":"ok","tid":1,"data":{"x":"`+strings.Repeat("a", 2000)+`"}}`))
		_, _, _ = ws.ReadMessage()
	})
	c := dial(t, url, nkclient.Options{MaxFrameBytes: 1000})
	err := c.Request(context.Background(), "core", "user", "list", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "read limit") {
		t.Fatalf("oversized reply: %v", err)
	}
}

// A server request the client has no special handling for is acked, then
// answered with OnRequest's result (an *APIError keeps its code); without
// OnRequest it is answered ok. An ack from the server extends a request's
// deadline from RequestTimeout to AckTimeout.
func TestServerRequestsAndAck(t *testing.T) {
	got := make(chan []map[string]any, 1)
	url := scripted(t, func(ws *websocket.Conn) {
		var seen []map[string]any
		defer func() { got <- seen }()
		_ = ws.WriteJSON(map[string]any{"class": "myapp", "cmd": "ask", "data": map[string]any{"q": 1}, "tid": 7})
		_ = ws.WriteJSON(map[string]any{"class": "myapp", "cmd": "fail", "tid": 8})
		_ = ws.WriteJSON(map[string]any{"class": "media", "subclass": "call", "cmd": "invite", "data": map[string]any{}, "tid": 9})
		for len(seen) < 6 {
			var m map[string]any
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			seen = append(seen, m)
			if m["cmd"] == "list" { // ack now, answer after three request timeouts
				_ = ws.WriteJSON(map[string]any{"ack": m["tid"]})
				time.Sleep(300 * time.Millisecond) // the subject: a server that answers late
				_ = ws.WriteJSON(map[string]any{"result": "ok", "tid": m["tid"], "data": map[string]any{"users": []string{"a"}}})
			}
		}
	})
	c := dial(t, url, nkclient.Options{RequestTimeout: 100 * time.Millisecond,
		OnRequest: func(ctx context.Context, r nkclient.ServerRequest) (any, error) {
			if r.Cmd == "fail" {
				return nil, &nkclient.APIError{Code: 1045, Text: "Invalid operation"}
			}
			return map[string]any{"a": string(r.Data)}, nil
		}})
	var out struct{ Users []string }
	if err := c.Request(context.Background(), "core", "user", "list", nil, &out); err != nil || len(out.Users) != 1 {
		t.Fatalf("acked request = %v %v", out, err)
	}
	seen := <-got
	find := func(pred func(m map[string]any) bool) bool {
		for _, m := range seen {
			if pred(m) {
				return true
			}
		}
		return false
	}
	for what, pred := range map[string]func(map[string]any) bool{
		"ack 7": func(m map[string]any) bool { return m["ack"] == 7.0 },
		"ok 7": func(m map[string]any) bool {
			d, _ := m["data"].(map[string]any)
			return m["tid"] == 7.0 && d["a"] == `{"q":1}`
		},
		"ack 8": func(m map[string]any) bool { return m["ack"] == 8.0 },
		"error 8": func(m map[string]any) bool {
			d, _ := m["data"].(map[string]any)
			return m["tid"] == 8.0 && d["code"] == 1045.0
		},
		"invite 9": func(m map[string]any) bool {
			d, _ := m["data"].(map[string]any)
			return m["tid"] == 9.0 && m["result"] == "error" && d["code"] == 1048.0
		},
		"request 1": func(m map[string]any) bool { return m["cmd"] == "list" },
	} {
		if !find(pred) {
			t.Errorf("client sent no %s: %v", what, seen)
		}
	}
	if n := c.Counters().Requests; n != 2 {
		t.Errorf("requests counted %d", n)
	}
}

// Without an ack, the request times out after RequestTimeout with 1005. A
// request whose context is already cancelled returns context.Canceled and is
// not sent: the next frame the server reads is the request after it.
func TestRequestTimeout(t *testing.T) {
	next := make(chan string, 1)
	url := scripted(t, func(ws *websocket.Conn) {
		_, _ = readRequest(ws)
		var m struct {
			Cmd string `json:"cmd"`
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		err := ws.ReadJSON(&m)
		next <- fmt.Sprintf("%q %v", m.Cmd, err)
		_, _, _ = ws.ReadMessage() // until the client closes
	})
	c := dial(t, url, nkclient.Options{RequestTimeout: 50 * time.Millisecond})
	if err := c.Request(context.Background(), "core", "user", "list", nil, nil); !errors.Is(err, &nkclient.APIError{Code: 1005}) {
		t.Fatalf("unanswered request: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Request(ctx, "core", "user", "cancelled", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	if err := c.Request(context.Background(), "core", "user", "after", nil, nil); !errors.Is(err, &nkclient.APIError{Code: 1005}) {
		t.Fatalf("request after the cancelled one: %v", err)
	}
	if got := <-next; got != `"after" <nil>` {
		t.Fatalf("server read %s after the first request, want the one after the cancelled request", got)
	}
}
