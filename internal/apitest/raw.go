package apitest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	nkclient "github.com/nkbridge/nkbridge/client"
)

// Msg is one frame of the control API, decoded.
type Msg = map[string]any

// Raw is the wire-level API client of the tests that look at the frames
// themselves (acks, tids, malformed input, pipelined requests, the server's
// own requests): a WebSocket speaking JSON maps. Server requests are answered
// "ok" unless SetAutoReply(false); every frame received stays until a
// Next, Has, Req or Event takes it. Its methods may be called from several
// goroutines; the failing ones (Req, OK, Fail, Login, Event, Next,
// WaitClosed) only from the test's.
type Raw struct {
	t  testing.TB
	WS *websocket.Conn // for what the methods do not cover (e.g. binary frames, a close)

	wmu sync.Mutex // writes

	mu        sync.Mutex
	tid       int
	msgs      []Msg         // received, not taken
	arrived   chan struct{} // closed (and replaced) when a frame arrives
	events    []Msg         // the data of every event received
	reqs      map[string]int
	autoReply bool
	closed    chan struct{} // the reader has ended
	closeErr  error         // why
}

// RawOptions are DialRawWith's: what a test varies about the connection.
type RawOptions struct {
	Header    http.Header // extra headers of the upgrade (Origin, Host, ...)
	Source    string      // the local IP address to dial from ("": any)
	TLSConfig *tls.Config // for wss:// URLs
}

// DialRaw connects to url or fails the test; the connection is closed when
// the test ends.
func DialRaw(t testing.TB, url string) *Raw {
	t.Helper()
	c, err := DialRawWith(t, url, RawOptions{})
	if err != nil {
		t.Fatalf("apitest: dial %s: %v", url, err)
	}
	return c
}

// DialRawWith connects to url with opts and returns the error of a refused
// connection (the tests of refusals look at it).
func DialRawWith(t testing.TB, url string, opts RawOptions) (*Raw, error) {
	d := *websocket.DefaultDialer
	d.TLSClientConfig = opts.TLSConfig
	if opts.Source != "" {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(opts.Source)}}
		d.NetDialContext = nd.DialContext
	}
	ws, _, err := d.Dial(url, opts.Header)
	if err != nil {
		return nil, err
	}
	c := &Raw{t: t, WS: ws, arrived: make(chan struct{}), reqs: map[string]int{}, autoReply: true, closed: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		_ = ws.Close()
		<-c.closed
	})
	return c, nil
}

func (c *Raw) read() {
	defer close(c.closed)
	for {
		_, b, err := c.WS.ReadMessage()
		var m Msg
		if err == nil && json.Unmarshal(b, &m) != nil {
			err = fmt.Errorf("bad json from server: %s", b)
		}
		c.mu.Lock()
		if err != nil {
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		cmd, isReq := m["cmd"].(string)
		if isReq {
			c.reqs[cmd]++
			if cmd == "event" && m["class"] == "core" {
				d, _ := m["data"].(map[string]any)
				c.events = append(c.events, d)
			}
		}
		reply := c.autoReply && isReq && m["tid"] != nil
		c.msgs = append(c.msgs, m)
		close(c.arrived)
		c.arrived = make(chan struct{})
		c.mu.Unlock()
		if reply {
			c.Send(Msg{"result": "ok", "tid": m["tid"]})
		}
	}
}

// SetAutoReply sets whether server requests are answered "ok" (the default).
func (c *Raw) SetAutoReply(v bool) {
	c.mu.Lock()
	c.autoReply = v
	c.mu.Unlock()
}

// Send writes v: []byte as it is, anything else as JSON. A write error is
// dropped (the server may have closed; the test checks what it expects).
func (c *Raw) Send(v any) {
	_ = c.Write(v)
}

// Write is Send returning the write error.
func (c *Raw) Write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if b, ok := v.([]byte); ok {
		return c.WS.WriteMessage(websocket.TextMessage, b)
	}
	return c.WS.WriteJSON(v)
}

// WriteFrame writes b as one frame of kind (websocket.BinaryMessage, ...).
func (c *Raw) WriteFrame(kind int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.WS.WriteMessage(kind, b)
}

// NewTID returns the next transaction id of this client (requests a test
// writes itself with Send take theirs from here).
func (c *Raw) NewTID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tid++
	return c.tid
}

// Forget drops the frames received and not taken so far.
func (c *Raw) Forget() {
	c.mu.Lock()
	c.msgs = nil
	c.mu.Unlock()
}

// take removes and returns the first kept frame matching pred; ok is false
// when there is none, with the channel that is closed when the next frame
// arrives and whether the connection has ended.
func (c *Raw) take(pred func(Msg) bool) (m Msg, ok bool, arrived <-chan struct{}, ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.msgs {
		if pred(m) {
			c.msgs = append(c.msgs[:i], c.msgs[i+1:]...)
			return m, true, nil, false
		}
	}
	select {
	case <-c.closed:
		ended = true
	default:
	}
	return nil, false, c.arrived, ended
}

func (c *Raw) wait(pred func(Msg) bool, d time.Duration) (Msg, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		m, ok, arrived, ended := c.take(pred)
		if ok {
			return m, nil
		}
		if ended {
			return nil, fmt.Errorf("connection closed (%v)", c.closeErr)
		}
		select {
		case <-arrived:
		case <-c.closed:
		case <-deadline.C:
			return nil, errors.New("timeout")
		}
	}
}

// Next takes the first frame received so far or within timeout that
// matches pred, or fails the test saying it waited for what.
func (c *Raw) Next(pred func(Msg) bool, timeout time.Duration, what string) Msg {
	c.t.Helper()
	m, err := c.wait(pred, timeout)
	if err != nil {
		c.mu.Lock()
		got := fmt.Sprint(c.msgs)
		c.mu.Unlock()
		c.t.Fatalf("%v waiting for %s; got meanwhile: %s", err, what, got)
	}
	return m
}

// Has reports whether a frame matching pred was received so far or arrives
// within d, and takes it.
func (c *Raw) Has(pred func(Msg) bool, d time.Duration) bool {
	_, err := c.wait(pred, d)
	return err == nil
}

// TIDIs matches the final reply (not the ack) to the request tid.
func TIDIs(tid any) func(Msg) bool {
	want, _ := json.Marshal(tid)
	return func(m Msg) bool {
		got, _ := json.Marshal(m["tid"])
		return m["result"] != nil && string(got) == string(want)
	}
}

func request(tid int, class, subclass, cmd string, data any) Msg {
	m := Msg{"class": class, "cmd": cmd, "tid": tid}
	if subclass != "" {
		m["subclass"] = subclass
	}
	if data != nil {
		m["data"] = data
	}
	return m
}

// Req sends a request and returns its final reply (acks skipped).
func (c *Raw) Req(class, subclass, cmd string, data any) Msg {
	c.t.Helper()
	tid := c.NewTID()
	c.Send(request(tid, class, subclass, cmd, data))
	return c.Next(TIDIs(tid), 10*time.Second, fmt.Sprintf("response to %s/%s/%s", class, subclass, cmd))
}

// Call sends a request and returns its reply's data (a reply whose data is
// not an object comes as {"list": data}) or its refusal as an
// *nkclient.APIError. It may be called from any goroutine.
func (c *Raw) Call(class, subclass, cmd string, data any) (Msg, error) {
	tid := c.NewTID()
	if err := c.Write(request(tid, class, subclass, cmd, data)); err != nil {
		return nil, err
	}
	r, err := c.wait(TIDIs(tid), 20*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s/%s/%s: %w", class, subclass, cmd, err)
	}
	d, _ := r["data"].(map[string]any)
	if r["result"] != "ok" {
		code, _ := d["code"].(float64)
		text, _ := d["error"].(string)
		return nil, &nkclient.APIError{Code: int(code), Text: text}
	}
	if d == nil && r["data"] != nil {
		d = Msg{"list": r["data"]}
	}
	return d, nil
}

// OK sends a request that must succeed and returns its reply's data.
func (c *Raw) OK(class, subclass, cmd string, data any) Msg {
	c.t.Helper()
	r := c.Req(class, subclass, cmd, data)
	if r["result"] != "ok" {
		c.t.Fatalf("%s/%s/%s %v: want ok, got %v", class, subclass, cmd, data, r)
	}
	d, _ := r["data"].(map[string]any)
	return d
}

// List sends a request that must succeed with a list and returns it.
func (c *Raw) List(class, subclass, cmd string) []any {
	c.t.Helper()
	r := c.Req(class, subclass, cmd, nil)
	l, ok := r["data"].([]any)
	if r["result"] != "ok" || (!ok && r["data"] != nil) {
		c.t.Fatalf("%s/%s/%s: want a list, got %v", class, subclass, cmd, r)
	}
	return l
}

// Fail sends a request that must be refused with code and returns the
// error's text.
func (c *Raw) Fail(code int, class, subclass, cmd string, data any) string {
	c.t.Helper()
	return ExpectErr(c.t, c.Req(class, subclass, cmd, data), code)
}

// ExpectErr checks that r is a refusal with code and a text, and returns
// the text.
func ExpectErr(t testing.TB, r Msg, code int) string {
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

// Login logs in and returns the session id.
func (c *Raw) Login(user, pass string) string {
	c.t.Helper()
	d := c.OK("core", "user", "login", Msg{"user": user, "password": pass})
	sid, _ := d["session_id"].(string)
	if sid == "" {
		c.t.Fatalf("login reply without session_id: %v", d)
	}
	return sid
}

// IsEvent matches an event frame of class/subclass/type and, unless
// objID is "", that object.
func IsEvent(class, subclass, typ, objID string) func(Msg) bool {
	return func(m Msg) bool {
		if m["class"] != "core" || m["cmd"] != "event" {
			return false
		}
		d, _ := m["data"].(map[string]any)
		return d["class"] == class && d["subclass"] == subclass && d["type"] == typ && (objID == "" || d["obj_id"] == objID)
	}
}

// IsRequest matches a server request class/subclass/cmd.
func IsRequest(class, subclass, cmd string) func(Msg) bool {
	return func(m Msg) bool {
		sc, _ := m["subclass"].(string)
		return m["class"] == class && sc == subclass && m["cmd"] == cmd && m["result"] == nil
	}
}

// Event waits (10 s) for an event and returns its data.
func (c *Raw) Event(class, subclass, typ, objID string) Msg {
	c.t.Helper()
	m := c.Next(IsEvent(class, subclass, typ, objID), 10*time.Second, fmt.Sprintf("event %s/%s/%s/%s", class, subclass, typ, objID))
	d, _ := m["data"].(map[string]any)
	return d
}

// Events returns the data of every event received so far, taken or not.
func (c *Raw) Events() []Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Msg(nil), c.events...)
}

// Requests returns how many server requests cmd were received.
func (c *Raw) Requests(cmd string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[cmd]
}

// WaitClosed waits until the server closes the connection and returns why
// the reading ended.
func (c *Raw) WaitClosed(d time.Duration) error {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.closeErr
	case <-time.After(d):
		c.t.Fatalf("connection still open after %v", d)
		return nil
	}
}

// Closed is closed when the connection has ended.
func (c *Raw) Closed() <-chan struct{} { return c.closed }

// UpgradeStatus tries a WebSocket upgrade of url with hdr (Host and Origin
// included) and returns the HTTP status of its refusal, or 101 when it was
// accepted (the connection is closed again).
func UpgradeStatus(t testing.TB, url string, hdr http.Header) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, hdr)
	if err == nil {
		_ = ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("apitest: dial %s: %v", url, err)
	}
	return resp.StatusCode
}
