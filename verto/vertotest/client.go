// Package vertotest is a small Verto client for tests. It speaks what the @signalwire/js 1.5.0
// `Verto` class sends (UUID string ids, sessid-only login before the real one when a sessid is
// stored, SW-shaped dialogParams, acks of call messages), so server tests exercise the same
// wire traffic a browser produces (verto.md §2.5, §4.1, §15, §17).
package vertotest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// Message is one JSON-RPC message received from the server.
type Message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method,omitempty"`
	Params map[string]any  `json:"params,omitempty"`
	Result map[string]any  `json:"result,omitempty"`
	Error  map[string]any  `json:"error,omitempty"`
}

// Code returns the error code, or 0 for a success reply.
func (m *Message) Code() int {
	if m.Error == nil {
		return 0
	}
	f, _ := m.Error["code"].(float64)
	return int(f)
}

// ErrMessage returns the error message ("" for a success reply).
func (m *Message) ErrMessage() string {
	s, _ := m.Error["message"].(string)
	return s
}

// Str returns a string member of params (for requests) or result (for replies).
func (m *Message) Str(key string) string {
	src := m.Params
	if m.Method == "" {
		src = m.Result
	}
	s, _ := src[key].(string)
	return s
}

// Client is a Verto client connection.
type Client struct {
	ws *websocket.Conn
	// SessID is the stored sessid (SW keeps it in localStorage); set before LoginSW to reuse one.
	SessID string
	// IntIDs makes request ids integers (classic client / vertojs) instead of UUID strings (SW).
	IntIDs bool
	// AutoAck acknowledges server requests about calls with {"method":...}, as SW does.
	AutoAck bool

	wmu    sync.Mutex
	nextID int

	mu       sync.Mutex
	waiters  map[string]chan *Message
	requests []*Message
	others   []*Message // replies that matched no waiter (e.g. id null)
	notify   chan struct{}
	closed   bool
	readErr  error
	readDone chan struct{}
}

// Dial connects to a Verto server at url (ws:// or wss://). header may carry an Origin.
func Dial(ctx context.Context, url string, d *websocket.Dialer, header http.Header) (*Client, error) {
	if d == nil {
		d = websocket.DefaultDialer
	}
	ws, _, err := d.DialContext(ctx, url, header)
	if err != nil {
		return nil, err
	}
	c := &Client{
		ws: ws, AutoAck: true,
		waiters:  make(map[string]chan *Message),
		notify:   make(chan struct{}, 1),
		readDone: make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

func (c *Client) readLoop() {
	defer close(c.readDone)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closed, c.readErr = true, err
			c.mu.Unlock()
			c.wake()
			return
		}
		var msgs []*Message
		if len(data) > 0 && data[0] == '[' {
			if json.Unmarshal(data, &msgs) != nil {
				continue
			}
		} else {
			var m Message
			if json.Unmarshal(data, &m) != nil {
				continue
			}
			msgs = []*Message{&m}
		}
		for _, m := range msgs {
			c.route(m)
		}
	}
}

func (c *Client) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *Client) route(m *Message) {
	if m.Method != "" {
		if _, hasCall := m.Params["callID"]; c.AutoAck && (hasCall || m.Method == "verto.invite") {
			_ = c.Send(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{"method": m.Method}})
		}
		c.mu.Lock()
		c.requests = append(c.requests, m)
		c.mu.Unlock()
		c.wake()
		return
	}
	c.mu.Lock()
	ch, ok := c.waiters[string(m.ID)]
	if ok {
		delete(c.waiters, string(m.ID))
	} else {
		c.others = append(c.others, m)
	}
	c.mu.Unlock()
	if ok {
		ch <- m
	} else {
		c.wake()
	}
}

// Closed reports whether the server closed the socket, with the read error (a *websocket.CloseError
// carries the close code).
func (c *Client) Closed() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.readErr
}

// WaitClosed waits until the server closes the socket.
func (c *Client) WaitClosed(ctx context.Context) error {
	select {
	case <-c.readDone:
		_, err := c.Closed()
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the socket and waits for the reader.
func (c *Client) Close() {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline())
	c.wmu.Unlock()
	_ = c.ws.Close()
	<-c.readDone
}

// Drop closes the TCP connection without a close frame (a browser tab that vanished).
func (c *Client) Drop() {
	_ = c.ws.Close()
	<-c.readDone
}

// Send writes one JSON value as a text frame.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.SendRaw(websocket.TextMessage, b)
}

// SendRaw writes a frame of the given type as is.
func (c *Client) SendRaw(typ int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(deadline())
	return c.ws.WriteMessage(typ, b)
}

func (c *Client) newID() json.RawMessage {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.IntIDs {
		c.nextID++
		return json.RawMessage(strconv.Itoa(c.nextID))
	}
	b, _ := json.Marshal(uuid.NewString())
	return b
}

// Call sends a request and waits for its reply (success or error, both returned as *Message).
func (c *Client) Call(ctx context.Context, method string, params map[string]any) (*Message, error) {
	id := c.newID()
	ch := make(chan *Message, 1)
	c.mu.Lock()
	c.waiters[string(id)] = ch
	c.mu.Unlock()
	req := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		req["params"] = params
	}
	if err := c.Send(req); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		return m, nil
	case <-c.readDone:
		select {
		case m := <-ch:
			return m, nil
		default:
		}
		_, rerr := c.Closed()
		return nil, fmt.Errorf("vertotest: %s: connection closed: %w", method, rerr)
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, string(id))
		c.mu.Unlock()
		return nil, fmt.Errorf("vertotest: %s: %w", method, ctx.Err())
	}
}

// Next waits for the next server request with the given method ("" = any), leaving others queued.
func (c *Client) Next(ctx context.Context, method string) (*Message, error) {
	return c.take(ctx, func() *Message {
		for i, m := range c.requests {
			if method == "" || m.Method == method {
				c.requests = append(c.requests[:i], c.requests[i+1:]...)
				return m
			}
		}
		return nil
	})
}

// NextReply waits for a reply that matched no request of Call (e.g. an error with id null).
func (c *Client) NextReply(ctx context.Context) (*Message, error) {
	return c.take(ctx, func() *Message {
		if len(c.others) == 0 {
			return nil
		}
		m := c.others[0]
		c.others = c.others[1:]
		return m
	})
}

// Pending returns the server requests received but not yet taken by Next.
func (c *Client) Pending() []*Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Message(nil), c.requests...)
}

func (c *Client) take(ctx context.Context, pick func() *Message) (*Message, error) {
	for {
		c.mu.Lock()
		m := pick()
		closed := c.closed
		c.mu.Unlock()
		if m != nil {
			return m, nil
		}
		if closed {
			return nil, errors.New("vertotest: connection closed")
		}
		select {
		case <-c.notify:
		case <-c.readDone:
			c.wake()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// LoginSW logs in the way @signalwire/js 1.5.0 does: with a stored sessid it first sends a
// sessid-only login (answered -32000 and ignored), then the full login. It stores the returned
// sessid and returns the full login's reply.
func (c *Client) LoginSW(ctx context.Context, login, passwd string) (*Message, error) {
	if c.SessID != "" {
		if _, err := c.Call(ctx, "login", map[string]any{
			"userVariables": map[string]any{}, "loginParams": map[string]any{}, "sessid": c.SessID,
		}); err != nil {
			return nil, err
		}
	}
	p := map[string]any{"login": login, "passwd": passwd, "userVariables": map[string]any{}, "loginParams": map[string]any{}}
	if c.SessID != "" {
		p["sessid"] = c.SessID
	}
	m, err := c.Call(ctx, "login", p)
	if err != nil {
		return nil, err
	}
	if s, ok := m.Result["sessid"].(string); ok && s != "" {
		c.SessID = s
	}
	return m, nil
}

// DialogParams builds the dialogParams SW sends for a call (after its key mapping,
// verto.md §3): callID, destination_number, caller and remote ids, and its option flags.
func DialogParams(callID, dest string) map[string]any {
	return map[string]any{
		"callID":                  callID,
		"destination_number":      dest,
		"remote_caller_id_name":   "Outbound Call",
		"remote_caller_id_number": dest,
		"caller_id_name":          "Verto Test",
		"caller_id_number":        "1008",
		"audio":                   true,
		"video":                   false,
		"useStereo":               false,
		"attach":                  false,
		"screenShare":             false,
		"userVariables":           map[string]any{},
		"iceServers":              []any{},
	}
}

func (c *Client) callRequest(ctx context.Context, method string, dp map[string]any, extra map[string]any) (*Message, error) {
	p := map[string]any{"dialogParams": dp}
	if c.SessID != "" {
		p["sessid"] = c.SessID
	}
	for k, v := range extra {
		p[k] = v
	}
	return c.Call(ctx, method, p)
}

// Invite places a call: verto.invite {sessid, sdp, dialogParams}.
func (c *Client) Invite(ctx context.Context, callID, dest, sdp string) (*Message, error) {
	return c.callRequest(ctx, "verto.invite", DialogParams(callID, dest), map[string]any{"sdp": sdp})
}

// Answer accepts a server-placed call: verto.answer {sessid, sdp, dialogParams}.
func (c *Client) Answer(ctx context.Context, callID, sdp string) (*Message, error) {
	dp := DialogParams(callID, "")
	return c.callRequest(ctx, "verto.answer", dp, map[string]any{"sdp": sdp})
}

// Bye hangs up (cause may be "" as SW sends none).
func (c *Client) Bye(ctx context.Context, callID, cause string) (*Message, error) {
	var extra map[string]any
	if cause != "" {
		extra = map[string]any{"cause": cause}
	}
	return c.callRequest(ctx, "verto.bye", DialogParams(callID, ""), extra)
}

// DTMF sends verto.info {sessid, dtmf, dialogParams}.
func (c *Client) DTMF(ctx context.Context, callID, digits string) (*Message, error) {
	return c.callRequest(ctx, "verto.info", DialogParams(callID, ""), map[string]any{"dtmf": digits})
}

// Modify sends verto.modify {sessid, action, dialogParams} (hold, unhold, toggleHold).
func (c *Client) Modify(ctx context.Context, callID, action string) (*Message, error) {
	return c.callRequest(ctx, "verto.modify", DialogParams(callID, ""), map[string]any{"action": action})
}

// Attach answers a server verto.attach: verto.attach {sessid, sdp, dialogParams}.
func (c *Client) Attach(ctx context.Context, callID, sdp string) (*Message, error) {
	dp := DialogParams(callID, "")
	dp["attach"] = true
	return c.callRequest(ctx, "verto.attach", dp, map[string]any{"sdp": sdp})
}
