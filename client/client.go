// Package nkclient is a Go client for nkbridge's control API (the NkMEDIA
// External Interface: JSON requests over a WebSocket).
//
// Dial connects (ws:// or wss://, with the Origin a browser would send),
// Login authenticates, and Request sends any command and waits for its
// reply: an {"ack": tid} from the server extends the wait from
// Options.RequestTimeout to Options.AckTimeout. Everything the server asks
// is answered for the caller, at once: pings and events with "ok" (events
// then go to the subscriptions made with Events or OnEvent), call invites
// with "ok" (then handed to Options.OnInvite as an *Invite to accept or
// reject), and any other server request with an ack, then the answer of
// Options.OnRequest.
//
// Typed helpers cover the common commands: StartSession / StopSession,
// StartCall / Hangup, Subscribe, and Invite.Accept / Ringing / Reject.
//
// A Client has no global state; its goroutines end when Close returns (or
// when the server closes the connection, after which Err says why).
// Frames the server should never send (not JSON, not an object, binary)
// close the connection with a *ProtocolError.
package nkclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Options configures a Client. Zero values take the defaults.
type Options struct {
	// Origin is sent as the Origin header (browsers always send one; the
	// server allows its own host and api.allowed_origins). Empty: none.
	Origin string
	// Header holds extra HTTP headers for the WebSocket upgrade.
	Header http.Header
	// TLSConfig is used for wss:// URLs (nil: the system roots).
	TLSConfig *tls.Config
	// Logger receives the client's debug and warning logs (nil: none).
	Logger *slog.Logger
	// RequestTimeout bounds the wait for a reply (default 10 s) when the
	// request's context has no earlier deadline.
	RequestTimeout time.Duration
	// AckTimeout bounds the wait after the server acked a request
	// (default 180 s, the server's own ack deadline).
	AckTimeout time.Duration
	// MaxFrameBytes bounds one frame from the server (default 1 MiB);
	// a bigger one closes the connection.
	MaxFrameBytes int64
	// EventBuffer is the channel size of each event subscription (default
	// 64). A subscriber that falls this far behind loses events (counted
	// by Subscription.Dropped) rather than stalling the connection.
	EventBuffer int
	// OnInvite is called, in a goroutine of its own, for every incoming
	// call (media/call/invite), after the invite was answered "ok". ctx
	// is cancelled when the client closes. Nil: invites are answered "ok"
	// and left to ring.
	OnInvite func(ctx context.Context, inv *Invite)
	// OnRequest answers server requests other than pings, events and
	// invites, in a goroutine of its own after the client acked the
	// request. A nil error answers "ok" with data; an *APIError answers
	// with its code. Nil: every such request is answered "ok".
	OnRequest func(ctx context.Context, req ServerRequest) (data any, err error)
}

func (o *Options) defaults() {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 180 * time.Second
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 1 << 20
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// APIError is an error reply of the server: Code is the API error code
// (1030 unauthorized, 2001 no_mediaserver, ...), Text its text.
type APIError struct {
	Code int
	Text string
	Data json.RawMessage // the reply's whole data object
}

func (e *APIError) Error() string { return fmt.Sprintf("nkbridge: %d %s", e.Code, e.Text) }

// Is matches another *APIError with the same code, so that
// errors.Is(err, &nkclient.APIError{Code: 1030}) works.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Code == e.Code
}

// ProtocolError is a frame from the server that breaks the API's framing;
// the client closes the connection on it.
type ProtocolError struct {
	Reason string
	Frame  string // the start of the offending frame
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("nkbridge: protocol error: %s (frame %q)", e.Reason, e.Frame)
}

// ErrClosed is returned by requests on a client that was closed by Close.
var ErrClosed = errors.New("nkbridge: client closed")

// Event is a delivered core/event.
type Event struct {
	Class    string          `json:"class"`
	Subclass string          `json:"subclass,omitempty"`
	Type     string          `json:"type,omitempty"`
	ObjID    string          `json:"obj_id,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"`
}

// Selector selects events: empty or "*" fields match anything. Body is
// sent with Subscribe (merged under delivered bodies by the server) and
// ignored when matching.
type Selector struct {
	Class    string         `json:"class"`
	Subclass string         `json:"subclass,omitempty"`
	Type     string         `json:"type,omitempty"`
	ObjID    string         `json:"obj_id,omitempty"`
	Body     map[string]any `json:"body,omitempty"`
}

// Match reports whether ev matches s.
func (s Selector) Match(ev Event) bool {
	m := func(want, got string) bool { return want == "" || want == "*" || want == got }
	return m(s.Class, ev.Class) && m(s.Subclass, ev.Subclass) && m(s.Type, ev.Type) && m(s.ObjID, ev.ObjID)
}

// ServerRequest is a request the server sent (other than ping, event and
// invite, which the client handles itself).
type ServerRequest struct {
	Class    string
	Subclass string
	Cmd      string
	Data     json.RawMessage
}

// Counters counts what the server sent.
type Counters struct {
	Pings, Acks, Events, Invites, Requests uint64
}

// frame is any message on the wire; which fields are set tells its kind.
type frame struct {
	Class    *string         `json:"class,omitempty"`
	Subclass string          `json:"subclass,omitempty"`
	Cmd      *string         `json:"cmd,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	TID      json.RawMessage `json:"tid,omitempty"`
	Result   *string         `json:"result,omitempty"`
	Ack      json.RawMessage `json:"ack,omitempty"`
}

type reply struct {
	ok   bool
	data json.RawMessage
}

type pending struct {
	reply chan reply    // one reply
	ack   chan struct{} // acks (buffered 1)
}

// Client is one control API connection. Its methods are safe for
// concurrent use.
type Client struct {
	opts   Options
	ws     *websocket.Conn
	log    *slog.Logger
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // reader, handlers, subscription callbacks
	done   chan struct{}  // closed when the reader has ended

	wmu sync.Mutex // one writer at a time

	mu       sync.Mutex
	nextTID  int64
	pending  map[int64]*pending
	subs     map[*Subscription]struct{}
	invites  map[string]*Invite
	counters Counters
	err      error // why the connection ended
	closing  bool
}

// Dial connects to the API at url (ws://host:port/ or wss://...). ctx
// bounds the dial only; the connection lives until Close or until the
// server closes it.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts.defaults()
	d := websocket.Dialer{HandshakeTimeout: opts.RequestTimeout, TLSClientConfig: opts.TLSConfig}
	h := http.Header{}
	for k, v := range opts.Header {
		h[k] = append([]string(nil), v...)
	}
	if opts.Origin != "" {
		h.Set("Origin", opts.Origin)
	}
	ws, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("nkbridge: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("nkbridge: dial %s: %w", url, err)
	}
	ws.SetReadLimit(opts.MaxFrameBytes)
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{opts: opts, ws: ws, log: opts.Logger.With("component", "nkclient"), ctx: cctx, cancel: cancel,
		done: make(chan struct{}), pending: map[int64]*pending{}, subs: map[*Subscription]struct{}{},
		invites: map[string]*Invite{}}
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

// Close closes the connection (everything it owns on the server stops)
// and waits for the client's goroutines, handlers included: an OnInvite or
// OnRequest handler must return once its ctx is done.
func (c *Client) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.mu.Unlock()
	if !already {
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
		c.wmu.Unlock()
		_ = c.ws.Close()
	}
	c.wg.Wait()
	return nil
}

// Done is closed when the connection has ended (Close, or the server).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended: nil while it is open, ErrClosed after
// Close, a *ProtocolError for bad server input, or the read error (a
// *websocket.CloseError when the server closed it).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Counters returns what the server sent so far.
func (c *Client) Counters() Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counters
}

func (c *Client) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.opts.RequestTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// Request sends class/subclass/cmd with data (nil: none) and waits for the
// reply; out (if not nil) receives the reply's data. An error reply is an
// *APIError. ctx cancels the wait (the server may still act on the request);
// a request whose ctx is already done is not sent and returns ctx.Err().
func (c *Client) Request(ctx context.Context, class, subclass, cmd string, data, out any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.nextTID++
	tid := c.nextTID
	p := &pending{reply: make(chan reply, 1), ack: make(chan struct{}, 1)}
	c.pending[tid] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, tid)
		c.mu.Unlock()
	}()
	msg := map[string]any{"class": class, "cmd": cmd, "tid": tid}
	if subclass != "" {
		msg["subclass"] = subclass
	}
	if data != nil {
		msg["data"] = data
	}
	if err := c.write(msg); err != nil {
		return fmt.Errorf("nkbridge: send %s/%s/%s: %w", class, subclass, cmd, err)
	}
	wait := c.opts.RequestTimeout
	t := time.NewTimer(wait)
	defer t.Stop()
	finish := func(r reply) error {
		if !r.ok {
			return apiError(r.data)
		}
		if out != nil && len(r.data) > 0 {
			if err := json.Unmarshal(r.data, out); err != nil {
				return fmt.Errorf("nkbridge: reply to %s/%s/%s: %w", class, subclass, cmd, err)
			}
		}
		return nil
	}
	for {
		select {
		case r := <-p.reply:
			return finish(r)
		case <-p.ack:
			wait = c.opts.AckTimeout
			t.Reset(wait)
		case <-t.C:
			return &APIError{Code: 1005, Text: fmt.Sprintf("Timeout: no reply to %s/%s/%s in %s", class, subclass, cmd, wait)}
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			select { // a reply may have raced the end of the connection
			case r := <-p.reply:
				return finish(r)
			default:
			}
			return c.Err()
		}
	}
}

func apiError(data json.RawMessage) error {
	var d struct {
		Code   int    `json:"code"`
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(data, &d)
	text := d.Error
	if text == "" {
		text = d.Reason
	}
	if text == "" {
		text = "error"
	}
	return &APIError{Code: d.Code, Text: text, Data: data}
}

// readLoop reads frames until the connection ends, answers server requests
// and routes replies and acks to their requests.
func (c *Client) readLoop() {
	defer c.wg.Done()
	var err error
	for {
		var typ int
		var b []byte
		typ, b, err = c.ws.ReadMessage()
		if err != nil {
			break
		}
		if typ != websocket.TextMessage {
			err = &ProtocolError{Reason: "binary frame", Frame: excerpt(b)}
			break
		}
		if err = c.handle(b); err != nil {
			break
		}
	}
	c.mu.Lock()
	if c.closing {
		err = ErrClosed
	}
	if c.err == nil {
		c.err = err
	}
	subs := c.subs
	c.subs = map[*Subscription]struct{}{}
	invites := c.invites
	c.invites = map[string]*Invite{}
	closing := c.closing
	c.mu.Unlock()
	var pe *ProtocolError
	if errors.As(err, &pe) {
		c.log.Warn("closing the connection on bad server input", "err", err)
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError, truncate(pe.Reason, 100)),
			time.Now().Add(time.Second))
		c.wmu.Unlock()
	} else if !closing {
		c.log.Debug("connection ended", "err", err)
	}
	_ = c.ws.Close()
	c.cancel()
	close(c.done)
	for s := range subs {
		s.end()
	}
	for _, inv := range invites {
		inv.end(Hangup{Code: 1012, Reason: "Connection closed"})
	}
}

// Kinds of frames from the server.
const (
	kindRequest = iota + 1 // a server request: answer it
	kindReply              // the reply to one of our requests
	kindAck                // an ack of one of our requests
)

// parseFrame classifies one text frame of the server. tid is the client
// tid a reply or an ack refers to. A frame that breaks the API's framing is
// a *ProtocolError.
func parseFrame(b []byte) (f frame, kind int, tid int64, err error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return f, 0, 0, &ProtocolError{Reason: "not a JSON object", Frame: excerpt(b)}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, 0, 0, &ProtocolError{Reason: "malformed JSON: " + err.Error(), Frame: excerpt(b)}
	}
	ok := false
	switch {
	case f.Cmd != nil && f.Class != nil:
		if len(f.TID) == 0 || string(f.TID) == "null" {
			return f, 0, 0, &ProtocolError{Reason: "server request without tid", Frame: excerpt(b)}
		}
		return f, kindRequest, 0, nil
	case f.Result != nil:
		if tid, ok = intTID(f.TID); !ok {
			return f, 0, 0, &ProtocolError{Reason: "reply with a tid this client never sends", Frame: excerpt(b)}
		}
		return f, kindReply, tid, nil
	case len(f.Ack) > 0:
		if tid, ok = intTID(f.Ack); !ok {
			return f, 0, 0, &ProtocolError{Reason: "ack of a tid this client never sends", Frame: excerpt(b)}
		}
		return f, kindAck, tid, nil
	}
	return f, 0, 0, &ProtocolError{Reason: "neither a request, a reply nor an ack", Frame: excerpt(b)}
}

// handle processes one text frame; an error ends the connection.
func (c *Client) handle(b []byte) error {
	f, kind, tid, err := parseFrame(b)
	if err != nil {
		return err
	}
	switch kind {
	case kindRequest:
		c.serverRequest(f)
	case kindReply:
		c.mu.Lock()
		p := c.pending[tid]
		c.mu.Unlock()
		if p == nil {
			c.log.Debug("reply to no pending request (timed out or cancelled)", "tid", tid)
			return nil
		}
		select {
		case p.reply <- reply{ok: *f.Result == "ok", data: f.Data}:
		default: // a second reply to one tid: ignore
		}
	case kindAck:
		c.mu.Lock()
		c.counters.Acks++
		p := c.pending[tid]
		c.mu.Unlock()
		if p != nil {
			select {
			case p.ack <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

func intTID(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// serverRequest answers a request of the server.
func (c *Client) serverRequest(f frame) {
	sub := f.Subclass
	if sub == "" {
		sub = "core"
	}
	key := *f.Class + "/" + sub + "/" + *f.Cmd
	answer := func(result string, data any) {
		m := map[string]any{"result": result, "tid": f.TID}
		if data != nil {
			m["data"] = data
		}
		if err := c.write(m); err != nil {
			c.log.Debug("answer to a server request not sent", "request", key, "err", err)
		}
	}
	switch key {
	case "core/core/ping":
		c.count(func(n *Counters) { n.Pings++ })
		answer("ok", nil)
	case "core/core/event":
		c.count(func(n *Counters) { n.Events++ })
		answer("ok", nil)
		var ev Event
		if err := json.Unmarshal(f.Data, &ev); err != nil {
			c.log.Warn("event with a malformed body ignored", "err", err)
			return
		}
		c.deliver(ev)
	case "media/call/invite":
		c.count(func(n *Counters) { n.Invites++ })
		inv, err := newInvite(c, f.Data)
		if err != nil {
			answer("error", map[string]any{"code": 1048, "error": "Invalid parameters: " + err.Error()})
			return
		}
		answer("ok", nil)
		c.mu.Lock()
		if c.err == nil && !c.closing {
			c.invites[inv.CallID] = inv
		}
		c.mu.Unlock()
		if c.opts.OnInvite != nil {
			c.goHandler(func() { c.opts.OnInvite(c.ctx, inv) })
		}
	default:
		c.count(func(n *Counters) { n.Requests++ })
		if c.opts.OnRequest == nil {
			answer("ok", nil)
			return
		}
		if err := c.write(map[string]any{"ack": f.TID}); err != nil {
			return
		}
		req := ServerRequest{Class: *f.Class, Subclass: sub, Cmd: *f.Cmd, Data: f.Data}
		c.goHandler(func() {
			data, err := c.opts.OnRequest(c.ctx, req)
			var ae *APIError
			switch {
			case err == nil:
				answer("ok", data)
			case errors.As(err, &ae):
				answer("error", map[string]any{"code": ae.Code, "error": ae.Text})
			default:
				answer("error", map[string]any{"code": 9999, "error": err.Error()})
			}
		})
	}
}

// goHandler runs f in a goroutine that Close waits for.
func (c *Client) goHandler(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Client) count(f func(*Counters)) {
	c.mu.Lock()
	f(&c.counters)
	c.mu.Unlock()
}

// deliver hands ev to the matching subscriptions and ends an invite on
// its call's hangup.
func (c *Client) deliver(ev Event) {
	c.mu.Lock()
	var subs []*Subscription
	for s := range c.subs {
		if s.sel.Match(ev) {
			subs = append(subs, s)
		}
	}
	var inv *Invite
	if ev.Class == "media" && ev.Subclass == "call" && ev.Type == "hangup" {
		inv = c.invites[ev.ObjID]
		delete(c.invites, ev.ObjID)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.send(ev)
	}
	if inv != nil {
		var h Hangup
		_ = json.Unmarshal(ev.Body, &h)
		inv.end(h)
	}
}

func excerpt(b []byte) string { return truncate(string(b), 80) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
