package wsapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/internal/ratelimit"
	"github.com/nkbridge/nkbridge/signaling"
)

// conn is one API connection: a reader goroutine (which runs the handlers of
// quick commands), a writer goroutine, and timers.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	id     string // owner key in the core
	remote string
	log    *slog.Logger
	source string // the remote address without port (quotas, login guard)
	ctx    context.Context
	cancel context.CancelFunc
	out    sendQueue
	slots  chan struct{} // requests in progress (api.max_in_flight)

	// set once at login, in the reader goroutine, under srv.mu
	user          string
	loginID       string
	unauthCounted bool // counted in srv.unauth (guarded by srv.mu)

	mu         sync.Mutex
	closing    bool
	closeCode  int
	closeText  string
	nextTid    int64
	pending    map[int64]*pending
	clientTids map[string]struct{}               // client requests still being processed
	invites    map[string]*invitee               // calls this connection is invited to
	autoSubs   map[string]signaling.Subscription // "session:<id>"/"call:<id>" automatic subscriptions
	pingTimer  *time.Timer
	loginTimer *time.Timer
	meta       map[string]any
	loggedIn   bool
	admin      bool      // the user has the admin role (set at login)
	recent     [8]string // calls this connection was recently invited to
	recentN    int

	// limit is the request rate limit (api.request_rate, burst 2x), reader goroutine only.
	limit ratelimit.Bucket
}

type pending struct {
	timer *time.Timer
	cb    func(ok bool, data json.RawMessage)
}

func newConn(s *Server, ws *websocket.Conn, remote, id string) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		srv: s, ws: ws, id: id, remote: remote, source: sourceOf(remote), ctx: ctx, cancel: cancel,
		out:   newSendQueue(s.cfg.SendQueueBytes),
		slots: make(chan struct{}, s.cfg.MaxInFlight),
		log:   s.log.With("conn", id, "remote", remote),
		limit: ratelimit.New(s.cfg.RequestRate, 2*s.cfg.RequestRate),
	}
	ws.SetReadLimit(s.cfg.MaxFrameBytes)
	c.loginTimer = time.AfterFunc(s.cfg.LoginTimeout, func() {
		defer c.recovered("login timer", nil)
		c.mu.Lock()
		in := c.loggedIn
		c.mu.Unlock()
		if !in {
			c.closeWith(websocket.ClosePolicyViolation, "Login timeout")
		}
	})
	return c
}

// recovered, deferred, turns a panic of what into an error log with the
// stack (and, with a tid, an internal error reply): only that request,
// timer or goroutine fails, not the process.
func (c *conn) recovered(what string, tid json.RawMessage) {
	v := recover()
	if v == nil {
		return
	}
	c.log.Error("api panic recovered", "in", what, "panic", v, "stack", string(debug.Stack()))
	if tid != nil {
		c.replyErr(tid, signaling.Errorf(signaling.CodeInternalError, "Internal error"))
	}
}

// closeWith starts closing the connection: the writer sends a close frame
// with code and text and closes the socket; the reader then cleans up.
func (c *conn) closeWith(code int, text string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeCode, c.closeText = code, text
	c.mu.Unlock()
	c.cancel()
}

func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	for {
		select {
		case <-c.out.ready:
			for _, b := range c.out.take() {
				if !c.write(b) {
					c.closeWith(websocket.CloseAbnormalClosure, "write failed")
					c.ws.NetConn().Close()
					return
				}
				c.out.done(len(b))
			}
		case <-c.ctx.Done():
			// Flush what is queued (e.g. the reply that caused the close).
			for _, b := range c.out.take() {
				if !c.write(b) {
					break
				}
				c.out.done(len(b))
			}
			c.mu.Lock()
			code, text := c.closeCode, c.closeText
			c.mu.Unlock()
			if code == 0 {
				code = websocket.CloseGoingAway
			}
			if code != websocket.CloseAbnormalClosure {
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			}
			c.ws.NetConn().Close()
			return
		}
	}
}

func (c *conn) write(b []byte) bool {
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b) == nil
}

// enqueue queues a frame the server sends on its own (an event, a ping):
// it never waits; over the byte budget the client does not read, and the
// connection is closed.
func (c *conn) enqueue(b []byte) {
	if !c.out.put(b, nil) {
		c.sendQueueFull()
	}
}

// enqueueReply queues the answer to a client request: over the byte budget
// it waits (the client's own pipelining is slowed down, not dropped) for
// as long as a write may take.
func (c *conn) enqueueReply(b []byte) {
	t := time.NewTimer(writeWait)
	defer t.Stop()
	wait := func() bool {
		select {
		case <-c.out.room:
			return true
		case <-t.C:
		case <-c.ctx.Done():
		}
		return false
	}
	if !c.out.put(b, wait) {
		c.sendQueueFull()
	}
}

func (c *conn) sendQueueFull() {
	if c.ctx.Err() != nil {
		return
	}
	c.log.Warn("api send queue full, closing", "budget_bytes", c.srv.cfg.SendQueueBytes)
	c.closeWith(websocket.ClosePolicyViolation, "Send queue full (api.send_queue_bytes)")
}

func (c *conn) readLoop() {
	defer c.srv.wg.Done()
	defer c.cleanup()
	for {
		c.mu.Lock()
		idle := c.srv.cfg.IdleTimeout
		c.mu.Unlock()
		_ = c.ws.SetReadDeadline(time.Now().Add(idle))
		mt, b, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.log.Info("api frame too big, closing", "limit", c.srv.cfg.MaxFrameBytes)
				c.closeWith(websocket.CloseMessageTooBig, "Frame too big")
			case errors.As(err, &ne) && ne.Timeout():
				c.log.Info("api connection idle, closing")
				c.closeWith(websocket.ClosePolicyViolation, "Idle timeout")
			default:
				c.closeWith(websocket.CloseNormalClosure, "")
			}
			return
		}
		if c.ctx.Err() != nil {
			return
		}
		if mt != websocket.TextMessage {
			c.closeWith(websocket.CloseUnsupportedData, "Text frames only")
			return
		}
		c.handleFrameSafely(b)
	}
}

func (c *conn) cleanup() {
	c.closeWith(websocket.CloseNormalClosure, "")
	c.loginTimer.Stop()
	c.srv.removeConn(c)
	c.srv.core.Bus().UnsubscribeAll(c)
	c.mu.Lock()
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	for _, p := range c.pending {
		p.timer.Stop()
	}
	c.pending = nil
	invs := c.invites
	c.invites = nil
	c.mu.Unlock()
	down := signaling.Errorf(signaling.CodeRegisteredDown, "Connection down")
	if c.srv.ctx.Err() != nil {
		down = signaling.Errorf(signaling.CodeSessionStop, "Server stopping")
	}
	for _, inv := range invs {
		inv.h.Hangup(down)
	}
	c.srv.core.StopOwned(c.id, down)
	if c.user != "" {
		c.log.Info("api connection closed")
	}
}

// handleFrameSafely handles one frame; a panic fails that frame only (a
// request gets an internal error).
func (c *conn) handleFrameSafely(b []byte) {
	defer c.recovered("api frame", nil)
	c.handleFrame(b)
}

func (c *conn) handleFrame(b []byte) {
	f, ferr := decodeFrame(b)
	if ferr != nil {
		if ferr.tid == nil {
			c.log.Info("api bad frame, closing", "err", ferr.err.Text)
			c.closeWith(websocket.CloseProtocolError, ferr.err.Text)
			return
		}
		c.replyErr(ferr.tid, ferr.err)
		return
	}
	switch f.kind {
	case kindAck:
		c.mu.Lock()
		if p, ok := c.pending[f.srvTid]; ok {
			p.timer.Reset(c.srv.cfg.AckTimeout)
		}
		c.mu.Unlock()
	case kindResponse:
		c.mu.Lock()
		p, ok := c.pending[f.srvTid]
		if ok {
			p.timer.Stop()
			delete(c.pending, f.srvTid)
		}
		c.mu.Unlock()
		if ok && p.cb != nil {
			p.cb(f.result == "ok", f.data)
		}
	case kindRequest:
		if !c.limit.Allow(time.Now()) {
			c.replyErr(f.tid, signaling.Errorf(signaling.CodeInvalidOperation, "Too many requests (limit %g/s)", c.srv.cfg.RequestRate))
			return
		}
		defer c.recovered("api request", f.tid)
		c.handleRequest(f)
	}
}

// reply sends {"result":"ok","data":data,"tid":tid}.
func (c *conn) reply(tid json.RawMessage, data any) {
	b, err := json.Marshal(outResponse{Result: "ok", Data: data, Tid: tid})
	if err != nil {
		c.replyErr(tid, signaling.Errorf(signaling.CodeInternalError, "Internal error: %v", err))
		return
	}
	c.enqueueReply(b)
}

func (c *conn) replyErr(tid json.RawMessage, e *signaling.Error) {
	if o := c.srv.cfg.Observer; o != nil {
		o.APIError(e.Code)
	}
	b, _ := json.Marshal(outResponse{Result: "error", Data: errorData{Code: e.Code, Error: e.Text}, Tid: tid})
	c.enqueueReply(b)
}

func (c *conn) ack(tid json.RawMessage) {
	b, _ := json.Marshal(outAck{Ack: tid})
	c.enqueueReply(b)
}

// request sends a server request; cb (optional) gets the answer. No answer
// within the deadline (5 s, or 180 s after an ack) closes the connection.
func (c *conn) request(class, subclass, cmd string, data any, cb func(ok bool, data json.RawMessage)) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.nextTid++
	tid := c.nextTid
	b, err := json.Marshal(outRequest{Class: class, Subclass: subclass, Cmd: cmd, Data: data, Tid: tid})
	if err != nil {
		c.mu.Unlock()
		c.log.Error("api cannot encode request", "err", err)
		return false
	}
	if c.pending == nil {
		c.pending = make(map[int64]*pending)
	}
	c.pending[tid] = &pending{cb: cb, timer: time.AfterFunc(c.srv.cfg.RequestTimeout, func() {
		defer c.recovered("request timer", nil)
		c.log.Info("api client did not answer a server request, closing", "tid", tid, "cmd", cmd)
		c.closeWith(websocket.ClosePolicyViolation, "No answer to server request")
	})}
	c.mu.Unlock()
	c.enqueue(b)
	return true
}

// Deliver implements signaling.Sink: the event becomes a core/event request,
// if this connection may see it (access.go).
func (c *conn) Deliver(ev signaling.Event) {
	if !c.visible(ev) {
		return
	}
	c.request("core", "", "event", ev, nil)
	var key string
	switch {
	case ev.Class == signaling.ClassMedia && ev.Subclass == signaling.SubclassSession && ev.Type == signaling.EventStop:
		key = "session:" + ev.ObjID
	case ev.Class == signaling.ClassMedia && ev.Subclass == signaling.SubclassCall && ev.Type == signaling.EventHangup:
		key = "call:" + ev.ObjID
	default:
		return
	}
	c.dropAutoSub(key)
}

func (c *conn) autoSubscribe(key string, sub signaling.Subscription) {
	c.mu.Lock()
	if c.autoSubs == nil {
		c.autoSubs = make(map[string]signaling.Subscription)
	}
	c.autoSubs[key] = sub
	c.mu.Unlock()
	c.srv.core.Bus().Subscribe(c, sub)
}

func (c *conn) dropAutoSub(key string) {
	c.mu.Lock()
	sub, ok := c.autoSubs[key]
	if ok {
		delete(c.autoSubs, key)
	}
	c.mu.Unlock()
	if ok {
		c.srv.core.Bus().Unsubscribe(c, sub)
	}
}

func (c *conn) startPing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.pingTimer = time.AfterFunc(c.srv.cfg.PingInterval, c.ping)
}

func (c *conn) ping() {
	defer c.recovered("ping timer", nil)
	c.request("core", "", "ping", map[string]any{"time": time.Now().Unix()}, func(bool, json.RawMessage) {
		c.startPing()
	})
}

// runAsync acks the request and runs f on its own goroutine (for commands
// that may wait on a backend); f's result is the final reply. At most
// api.max_in_flight requests run at once: a further one waits for a slot
// (the reader stops reading meanwhile: back pressure) for up to
// InFlightWait, then answers 1045.
func (c *conn) runAsync(tid json.RawMessage, f func(ctx context.Context) (any, error)) {
	if !c.takeSlot() {
		if c.ctx.Err() == nil {
			c.replyErr(tid, signaling.Errorf(signaling.CodeInvalidOperation, "Too many requests in progress (max %d, api.max_in_flight)", c.srv.cfg.MaxInFlight))
		}
		return
	}
	key := string(tid)
	c.mu.Lock()
	if _, dup := c.clientTids[key]; dup || c.closing {
		c.mu.Unlock()
		<-c.slots
		if dup {
			c.replyErr(tid, signaling.Errorf(signaling.CodeInvalidParameters, "Duplicated tid: %s", key))
		}
		return
	}
	if c.clientTids == nil {
		c.clientTids = make(map[string]struct{})
	}
	c.clientTids[key] = struct{}{}
	c.mu.Unlock()
	c.ack(tid)
	c.srv.wg.Add(1)
	go func() {
		defer c.srv.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.clientTids, key)
			c.mu.Unlock()
			<-c.slots
		}()
		defer c.recovered("api async request", tid)
		data, err := f(c.ctx)
		if err != nil {
			c.replyErr(tid, signaling.AsError(err))
			return
		}
		c.reply(tid, data)
	}()
}

// takeSlot waits for a free in-flight slot.
func (c *conn) takeSlot() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(c.srv.cfg.InFlightWait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-c.ctx.Done():
	}
	return false
}
