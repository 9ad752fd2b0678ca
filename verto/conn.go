package verto

import (
	"encoding/json"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/internal/ratelimit"
)

const (
	outQueueLen    = 256  // frames queued for one socket before it counts as stuck
	maxPending     = 1024 // server requests awaiting an (optional) client reply
	maxRateStrikes = 200  // rejected requests in a row before the socket is closed
)

// conn is one WebSocket. Its reader runs on the HTTP handler goroutine, its writer on one more
// goroutine; nothing else is started per connection.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	log    *slog.Logger
	remote string

	out        chan []byte
	done       chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeCode  int
	closeText  string

	lastRecv atomic.Int64 // unix nanos of the last frame received
	authed   atomic.Bool

	// reader-goroutine only
	reqLimit    ratelimit.Bucket
	inviteLimit ratelimit.Bucket
	strikes     int
	authFails   int
	readyOnce   bool

	// guarded by srv.mu
	sess *session
	user string

	pmu     sync.Mutex
	pending map[int64]pendingReq
}

type pendingReq struct {
	method string
	sent   time.Time
}

func newConn(s *Server, ws *websocket.Conn, remote string) *conn {
	c := &conn{
		srv: s, ws: ws, remote: remote,
		log:         s.log.With("remote", remote),
		out:         make(chan []byte, outQueueLen),
		done:        make(chan struct{}),
		writerDone:  make(chan struct{}),
		reqLimit:    ratelimit.New(s.cfg.RequestRate, float64(s.cfg.RequestBurst)),
		inviteLimit: ratelimit.New(s.cfg.InviteRate, float64(s.cfg.InviteBurst)),
		pending:     make(map[int64]pendingReq),
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return c
}

// kill asks the writer to flush what is queued, send a close frame and close the socket.
func (c *conn) kill(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		close(c.done)
	})
}

func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn) run() {
	c.log.Debug("verto: connected")
	go c.writeLoop()
	c.readLoop()
	c.kill(websocket.CloseNormalClosure, "")
	c.srv.connClosed(c)
	<-c.writerDone
	c.log.Debug("verto: disconnected")
}

func (c *conn) readLoop() {
	c.ws.SetReadLimit(c.srv.cfg.MaxFrameBytes)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				c.log.Debug("verto: read ended", "err", err)
			}
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if c.isDone() {
			continue // closing: drain until the writer closes the socket
		}
		c.handleFrameSafely(typ, data)
	}
}

// handleFrameSafely handles one frame; a panic in it (a handler, the call handler behind it)
// is logged with its stack and closes this socket only, not the process.
func (c *conn) handleFrameSafely(typ int, data []byte) {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("verto: panic recovered", "panic", v, "stack", string(debug.Stack()))
			c.kill(websocket.CloseInternalServerErr, "internal error")
		}
	}()
	c.handleFrame(typ, data)
}

func (c *conn) writeLoop() {
	defer close(c.writerDone)
	cfg := &c.srv.cfg
	tick := time.NewTicker(cfg.PingInterval / 2)
	defer tick.Stop()
	login := time.NewTimer(cfg.LoginTimeout)
	defer login.Stop()
	write := func(b []byte) bool {
		_ = c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			c.log.Debug("verto: write failed", "err", err)
			return false
		}
		return true
	}
	for {
		select {
		case b := <-c.out:
			if !write(b) {
				c.kill(websocket.CloseAbnormalClosure, "")
				_ = c.ws.Close()
				return
			}
		case <-tick.C:
			idle := time.Since(time.Unix(0, c.lastRecv.Load()))
			if c.authed.Load() && idle >= cfg.PingInterval {
				c.sendRequest("verto.ping", map[string]any{"serno": time.Now().Unix()})
			}
		case <-login.C:
			if !c.authed.Load() {
				c.log.Info("verto: no login in time, closing")
				c.kill(websocket.ClosePolicyViolation, "login timeout")
			}
		case <-c.done:
		drain:
			for {
				select {
				case b := <-c.out:
					if !write(b) {
						_ = c.ws.Close()
						return
					}
				default:
					break drain
				}
			}
			code := c.closeCode
			if code == 0 || code == websocket.CloseAbnormalClosure {
				code = websocket.CloseNormalClosure
			}
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, c.closeText),
				time.Now().Add(time.Second))
			_ = c.ws.Close()
			return
		}
	}
}

// enqueue hands a frame to the writer; a socket whose queue is full is closed (it is not
// reading), so a slow client never blocks anyone else.
func (c *conn) enqueue(b []byte) {
	select {
	case c.out <- b:
	default:
		c.log.Warn("verto: send queue full, closing")
		c.kill(websocket.CloseTryAgainLater, "send queue full")
	}
}

// sendRequest sends a server → client request and remembers its id; the client's reply is
// optional and only matched to drop it.
func (c *conn) sendRequest(method string, params map[string]any) {
	id := c.srv.nextID.Add(1)
	b, err := json.Marshal(outRequest{JSONRPC: "2.0", ID: id, Method: method, Params: params})
	if err != nil {
		c.log.Error("verto: marshal request", "method", method, "err", err)
		return
	}
	now := time.Now()
	c.pmu.Lock()
	if len(c.pending) >= maxPending {
		for k, p := range c.pending {
			if now.Sub(p.sent) > 30*time.Second || len(c.pending) >= maxPending {
				delete(c.pending, k)
			}
		}
	}
	c.pending[id] = pendingReq{method: method, sent: now}
	c.pmu.Unlock()
	c.enqueue(b)
}

// handleResponse matches a client reply to one of our requests; unknown ids are ignored.
func (c *conn) handleResponse(m incoming) {
	id, err := strconv.ParseInt(string(m.id), 10, 64)
	c.pmu.Lock()
	p, ok := c.pending[id]
	if ok && err == nil {
		delete(c.pending, id)
	}
	c.pmu.Unlock()
	switch {
	case err != nil || !ok:
		c.log.Debug("verto: reply to unknown id ignored", "id", string(m.id))
	case m.isErr:
		c.log.Debug("verto: client answered our request with an error", "method", p.method, "id", id)
	}
}

func (c *conn) sendResponse(r outResponse) {
	b, err := json.Marshal(r)
	if err != nil {
		c.log.Error("verto: marshal reply", "err", err)
		b, _ = json.Marshal(outResponse{JSONRPC: "2.0", ID: r.ID, Error: newError(-32603, "Internal error")})
	}
	c.enqueue(b)
}

// handleFrame decodes one text frame (a request, a reply, or a batch) and answers it.
func (c *conn) handleFrame(typ int, data []byte) {
	now := time.Now()
	var ferr *rpcError
	var msgs []incoming
	var batch bool
	if typ != websocket.TextMessage {
		ferr = newError(CodeInvalidRequest, "Invalid Request: text frames only")
	} else {
		msgs, batch, ferr = decodeFrame(data)
	}
	if ferr != nil {
		if !c.charge(now) {
			ferr = newError(CodeRateLimited, "Rate limit exceeded")
		}
		c.sendResponse(outResponse{JSONRPC: "2.0", ID: nullID, Error: ferr})
		return
	}
	var replies []outResponse
	var afters []func()
	for _, m := range msgs {
		// Every element costs a token, whatever it is; over the limit, requests and invalid
		// elements get -32003 and replies are dropped. A long flood closes the socket.
		if !c.charge(now) {
			if m.kind != kindResponse {
				replies = append(replies, outResponse{JSONRPC: "2.0", ID: m.id, Error: newError(CodeRateLimited, "Rate limit exceeded")})
			}
			continue
		}
		switch m.kind {
		case kindInvalid:
			replies = append(replies, outResponse{JSONRPC: "2.0", ID: m.id, Error: m.err})
		case kindResponse:
			c.handleResponse(m)
		case kindRequest:
			res, rerr, after := c.dispatch(m)
			r := outResponse{JSONRPC: "2.0", ID: m.id}
			if rerr != nil {
				r.Error = rerr
			} else {
				if res == nil {
					res = map[string]any{}
				}
				if sid := c.sessionID(); sid != "" {
					res["sessid"] = sid
				}
				r.Result = res
			}
			replies = append(replies, r)
			if after != nil {
				afters = append(afters, after)
			}
		}
	}
	switch {
	case len(replies) == 0:
	case !batch:
		c.sendResponse(replies[0])
	default:
		b, err := json.Marshal(replies)
		if err != nil {
			c.log.Error("verto: marshal batch reply", "err", err)
		} else {
			c.enqueue(b)
		}
	}
	for _, f := range afters {
		f()
	}
}

// charge takes a request token. Without one it counts a strike; a long run of strikes closes
// the socket.
func (c *conn) charge(now time.Time) bool {
	if c.reqLimit.Allow(now) {
		c.strikes = 0
		return true
	}
	c.strikes++
	if c.strikes == maxRateStrikes+1 {
		c.log.Warn("verto: request flood, closing")
		c.kill(websocket.ClosePolicyViolation, "rate limit exceeded")
	}
	return false
}

func (c *conn) sessionID() string {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.sess == nil {
		return ""
	}
	return c.sess.id
}
