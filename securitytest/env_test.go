package securitytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/auth"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// apiEnv is an in-process nkbridge: the signalling core, the real control
// API on 127.0.0.1:0 and the embedded backend (with rooms) on a real media
// engine.
type apiEnv struct {
	t    testing.TB
	eng  *media.Engine
	be   *embedded.Backend
	core *signaling.Core
	srv  *wsapi.Server
	addr string // 127.0.0.1:port
}

// testPassword is every test user's password; the hashes use few
// iterations unless a test wants the real cost.
const testPassword = "s3cret"

// testUsers returns users alice, bob and root (admin) with cheap hashes.
func testUsers(t testing.TB, iterations int, names ...string) *auth.Users {
	t.Helper()
	hashes := map[string]string{}
	for _, n := range append([]string{"alice", "bob", "root"}, names...) {
		h, err := auth.HashPassword(testPassword, iterations)
		if err != nil {
			t.Fatal(err)
		}
		hashes[n] = h
	}
	u, err := auth.NewUsers(hashes, "root")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newAPIEnv starts the environment; mod may adjust the API configuration
// and register more backends.
func newAPIEnv(t testing.TB, cfg wsapi.Config, mod func(*signaling.Backends)) *apiEnv {
	t.Helper()
	log := peers.TestLoggerLevel(t, slog.LevelInfo)
	base := 30000 + 2*rand.IntN(15000)
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 200,
		Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	be := embedded.New(eng, log)
	backends := signaling.NewBackends()
	backends.Register(embedded.Name, be, append(embedded.Types(), embedded.RoomTypes()...)...)
	bus := signaling.NewBus()
	rs, err := be.EnableRooms(embedded.RoomsConfig{EmptyGrace: time.Minute, CreateMissing: true, OnEvent: bus.Publish})
	if err != nil {
		t.Fatal(err)
	}
	backends.RegisterRooms(embedded.Name, rs, signaling.RoomSFU, signaling.RoomMCU)
	if mod != nil {
		mod(backends)
	}
	core := signaling.New(signaling.Options{Logger: log, Bus: bus, Backends: backends})
	srv := wsapi.New(cfg, core, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		core.Close()
		be.Close()
		_ = eng.Close()
	})
	return &apiEnv{t: t, eng: eng, be: be, core: core, srv: srv, addr: ln.Addr().String()}
}

// rtpOffer is a plain-RTP offer (nobody sends to it: these tests are about
// signalling).
func rtpOffer() map[string]any {
	return map[string]any{"sdp_type": "rtp", "sdp": "v=0\r\no=phone 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"}
}

// ---- a control-API client ----

type apiError struct {
	Code int    `json:"code"`
	Text string `json:"error"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Text) }

func codeOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

type event struct {
	Class    string         `json:"class"`
	Subclass string         `json:"subclass"`
	Type     string         `json:"type"`
	ObjID    string         `json:"obj_id"`
	Body     map[string]any `json:"body"`
}

type client struct {
	t    testing.TB
	ws   *websocket.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	tid  int
	pend map[int]chan map[string]any
	evs  []event
	reqs map[string]int // server requests received, by cmd
	done chan struct{}
	err  error // why the reader ended
}

// dialFrom connects to the API from the local address src ("" = any).
func dialFrom(t testing.TB, addr, src string, hdr http.Header) (*client, error) {
	d := *websocket.DefaultDialer
	if src != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		d.NetDialContext = nd.DialContext
	}
	ws, _, err := d.Dial("ws://"+addr+"/", hdr)
	if err != nil {
		return nil, err
	}
	c := &client{t: t, ws: ws, pend: map[int]chan map[string]any{}, done: make(chan struct{})}
	go c.read()
	t.Cleanup(c.close)
	return c, nil
}

// login dials and logs user in with the test password.
func login(t testing.TB, e *apiEnv, user string) *client {
	t.Helper()
	c, err := dialFrom(t, e.addr, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.send("core", "user", "login", map[string]any{"user": user, "password": testPassword}); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func (c *client) close() {
	_ = c.ws.Close()
	<-c.done
}

func (c *client) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteJSON(v)
}

func (c *client) read() {
	defer close(c.done)
	for {
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			c.mu.Lock()
			c.err = err
			for _, ch := range c.pend {
				close(ch)
			}
			c.pend = map[int]chan map[string]any{}
			c.mu.Unlock()
			return
		}
		tid, _ := m["tid"].(float64)
		if cmd, isReq := m["cmd"].(string); isReq {
			c.mu.Lock()
			if c.reqs == nil {
				c.reqs = map[string]int{}
			}
			c.reqs[cmd]++
			c.mu.Unlock()
			if cmd == "event" {
				b, _ := json.Marshal(m["data"])
				var ev event
				_ = json.Unmarshal(b, &ev)
				c.mu.Lock()
				c.evs = append(c.evs, ev)
				c.mu.Unlock()
			}
			_ = c.write(map[string]any{"result": "ok", "tid": tid})
			continue
		}
		if _, isAck := m["ack"]; isAck {
			continue
		}
		c.mu.Lock()
		ch := c.pend[int(tid)]
		delete(c.pend, int(tid))
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// send makes a request and returns its data, or an *apiError.
func (c *client) send(class, subclass, cmd string, data map[string]any) (map[string]any, error) {
	c.mu.Lock()
	c.tid++
	tid := c.tid
	ch := make(chan map[string]any, 1)
	c.pend[tid] = ch
	c.mu.Unlock()
	if err := c.write(map[string]any{"class": class, "subclass": subclass, "cmd": cmd, "data": data, "tid": tid}); err != nil {
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, errors.New("connection closed")
		}
		if m["result"] != "ok" {
			b, _ := json.Marshal(m["data"])
			var e apiError
			_ = json.Unmarshal(b, &e)
			return nil, &e
		}
		d, _ := m["data"].(map[string]any)
		if d == nil && m["data"] != nil {
			d = map[string]any{"list": m["data"]}
		}
		return d, nil
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("no reply to %s/%s/%s", class, subclass, cmd)
	}
}

func (c *client) ok(class, subclass, cmd string, data map[string]any) map[string]any {
	c.t.Helper()
	d, err := c.send(class, subclass, cmd, data)
	if err != nil {
		c.t.Fatalf("%s/%s/%s %v: %v", class, subclass, cmd, data, err)
	}
	return d
}

// fails checks that a request is refused with code.
func (c *client) fails(code int, class, subclass, cmd string, data map[string]any) string {
	c.t.Helper()
	_, err := c.send(class, subclass, cmd, data)
	if codeOf(err) != code {
		c.t.Errorf("%s/%s/%s %v: %v, want error %d", class, subclass, cmd, data, err, code)
		return ""
	}
	return err.Error()
}

// list returns a list reply.
func (c *client) list(class, subclass, cmd string) []any {
	c.t.Helper()
	l, _ := c.ok(class, subclass, cmd, nil)["list"].([]any)
	return l
}

// requests returns how many server requests of cmd were received.
func (c *client) requests(cmd string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[cmd]
}

// events returns the events received so far.
func (c *client) events() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.evs...)
}
