package wsapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// testLogger logs at debug level to t.Log until the test is over.
func testLogger(t testing.TB) *slog.Logger { return peers.TestLogger(t) }

type testEnv struct {
	t    testing.TB
	core *signaling.Core
	srv  *wsapi.Server
	url  string
	stop func()
}

// startServer runs a real API server on 127.0.0.1:0.
func startServer(t testing.TB, cfg wsapi.Config, opts signaling.Options) *testEnv {
	t.Helper()
	log := testLogger(t)
	if _, ok := t.(*testing.B); ok {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Logger = log
	core := signaling.New(opts)
	srv := wsapi.New(cfg, core, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			core.Close()
		})
	}
	t.Cleanup(stop)
	return &testEnv{t: t, core: core, srv: srv, url: "ws://" + ln.Addr().String() + "/", stop: stop}
}

type msg = map[string]any

// client is a test API client over a real WebSocket connection.
type client struct {
	t       testing.TB
	ws      *websocket.Conn
	wmu     sync.Mutex
	tid     int
	in      chan msg
	closed  chan struct{}
	closeEr error
	buf     []msg
	// autoReply answers server requests ok (default true).
	mu        sync.Mutex
	autoReply bool
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &client{t: t, ws: ws, in: make(chan msg, 1000), closed: make(chan struct{}), autoReply: true}
	go c.readLoop()
	t.Cleanup(func() { c.ws.Close() })
	return c
}

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.closeEr = err
			return
		}
		var m msg
		if err := json.Unmarshal(b, &m); err != nil {
			c.closeEr = fmt.Errorf("bad json from server: %s", b)
			return
		}
		c.mu.Lock()
		auto := c.autoReply
		c.mu.Unlock()
		if auto && m["cmd"] != nil && m["tid"] != nil {
			c.sendRaw(msg{"result": "ok", "tid": m["tid"]})
		}
		select {
		case c.in <- m:
		default:
			c.t.Errorf("client buffer full")
		}
	}
}

func (c *client) setAutoReply(v bool) {
	c.mu.Lock()
	c.autoReply = v
	c.mu.Unlock()
}

func (c *client) sendRaw(v any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	if b, ok := v.([]byte); ok {
		err = c.ws.WriteMessage(websocket.TextMessage, b)
	} else {
		err = c.ws.WriteJSON(v)
	}
	_ = err // the server may have closed; the test checks what it expects
}

// next returns the first buffered or incoming message matching pred.
func (c *client) next(pred func(msg) bool, timeout time.Duration, what string) msg {
	c.t.Helper()
	for i, m := range c.buf {
		if pred(m) {
			c.buf = append(c.buf[:i], c.buf[i+1:]...)
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m := <-c.in:
			if pred(m) {
				return m
			}
			c.buf = append(c.buf, m)
		case <-deadline:
			c.t.Fatalf("timeout waiting for %s; got meanwhile: %v", what, c.buf)
			return nil
		case <-c.closed:
			// drain what is left
			for {
				select {
				case m := <-c.in:
					if pred(m) {
						return m
					}
					c.buf = append(c.buf, m)
				default:
					c.t.Fatalf("connection closed (%v) while waiting for %s; got: %v", c.closeEr, what, c.buf)
					return nil
				}
			}
		}
	}
}

// has reports whether a matching message arrives within d (without failing).
func (c *client) has(pred func(msg) bool, d time.Duration) bool {
	for i, m := range c.buf {
		if pred(m) {
			c.buf = append(c.buf[:i], c.buf[i+1:]...)
			return true
		}
	}
	deadline := time.After(d)
	for {
		select {
		case m := <-c.in:
			if pred(m) {
				return true
			}
			c.buf = append(c.buf, m)
		case <-deadline:
			return false
		case <-c.closed:
			return false
		}
	}
}

func tidIs(tid any) func(msg) bool {
	want, _ := json.Marshal(tid)
	return func(m msg) bool {
		got, _ := json.Marshal(m["tid"])
		return m["result"] != nil && string(got) == string(want)
	}
}

// req sends a request and returns the final response (acks skipped).
func (c *client) req(class, subclass, cmd string, data any) msg {
	c.t.Helper()
	c.tid++
	tid := c.tid
	m := msg{"class": class, "cmd": cmd, "tid": tid}
	if subclass != "" {
		m["subclass"] = subclass
	}
	if data != nil {
		m["data"] = data
	}
	c.sendRaw(m)
	return c.next(tidIs(tid), 10*time.Second, fmt.Sprintf("response to %s/%s/%s", class, subclass, cmd))
}

func (c *client) ok(class, subclass, cmd string, data any) msg {
	c.t.Helper()
	r := c.req(class, subclass, cmd, data)
	if r["result"] != "ok" {
		c.t.Fatalf("%s/%s/%s %v: want ok, got %v", class, subclass, cmd, data, r)
	}
	d, _ := r["data"].(map[string]any)
	return d
}

func (c *client) fail(code int, class, subclass, cmd string, data any) string {
	c.t.Helper()
	r := c.req(class, subclass, cmd, data)
	return expectErr(c.t, r, code)
}

func expectErr(t testing.TB, r msg, code int) string {
	t.Helper()
	if r["result"] != "error" {
		t.Fatalf("want error %d, got %v", code, r)
	}
	d, _ := r["data"].(map[string]any)
	if got, _ := d["code"].(float64); int(got) != code {
		t.Fatalf("want error code %d, got %v", code, r)
	}
	text, _ := d["error"].(string)
	if text == "" {
		t.Fatalf("error without text: %v", r)
	}
	return text
}

func (c *client) login(user, pass string) string {
	c.t.Helper()
	d := c.ok("core", "user", "login", msg{"user": user, "password": pass})
	sid, _ := d["session_id"].(string)
	if sid == "" {
		c.t.Fatalf("login reply without session_id: %v", d)
	}
	return sid
}

func isEvent(class, subclass, typ, objID string) func(msg) bool {
	return func(m msg) bool {
		if m["class"] != "core" || m["cmd"] != "event" {
			return false
		}
		d, _ := m["data"].(map[string]any)
		return d["class"] == class && d["subclass"] == subclass && d["type"] == typ && (objID == "" || d["obj_id"] == objID)
	}
}

// event waits for an event and returns its data.
func (c *client) event(class, subclass, typ, objID string) msg {
	c.t.Helper()
	m := c.next(isEvent(class, subclass, typ, objID), 10*time.Second, fmt.Sprintf("event %s/%s/%s/%s", class, subclass, typ, objID))
	d, _ := m["data"].(map[string]any)
	return d
}

func isRequest(class, subclass, cmd string) func(msg) bool {
	return func(m msg) bool {
		sc, _ := m["subclass"].(string)
		return m["class"] == class && sc == subclass && m["cmd"] == cmd && m["result"] == nil
	}
}

// waitClosed waits until the server closes the connection and returns the
// close error.
func (c *client) waitClosed(d time.Duration) error {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.closeEr
	case <-time.After(d):
		c.t.Fatalf("connection still open after %v", d)
		return nil
	}
}

func body(d msg) msg {
	b, _ := d["body"].(map[string]any)
	return b
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}
