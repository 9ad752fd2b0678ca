package esl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Connection errors.
var (
	// ErrClosed: the connection is closed (locally, by EOF, or by a disconnect notice).
	ErrClosed = errors.New("esl: connection closed")
	// ErrAuth: FreeSWITCH refused the password.
	ErrAuth = errors.New("esl: authentication failed")
	// ErrRejected: FreeSWITCH's ACL refused the connection (text/rude-rejection).
	ErrRejected = errors.New("esl: connection rejected by FreeSWITCH ACL")
	// ErrStalled: a reply did not arrive within StallTimeout after its command timed out;
	// the connection was closed deliberately.
	ErrStalled = errors.New("esl: FreeSWITCH stopped answering; connection recycled")
	// ErrProtocol: FreeSWITCH sent something that breaks the request/reply rule.
	ErrProtocol = errors.New("esl: protocol error")
	// ErrIdle: nothing at all arrived for Options.IdleTimeout (FreeSWITCH sends HEARTBEAT
	// every 20 s to subscribers); the connection was closed deliberately.
	ErrIdle = errors.New("esl: no data from FreeSWITCH within the idle timeout; connection recycled")
)

// CommandError is returned when FreeSWITCH answers "-ERR …" (in a Reply-Text, an api
// response body, or a BACKGROUND_JOB result).
type CommandError struct {
	Command string // the verb, e.g. "api uuid_kill"
	Reply   string // FreeSWITCH's answer, trimmed
}

func (e *CommandError) Error() string { return "esl: " + e.Command + ": " + e.Reply }

// DisconnectError is the close reason after a text/disconnect-notice (not linger).
type DisconnectError struct{ Notice string }

func (e *DisconnectError) Error() string {
	return "esl: disconnected by FreeSWITCH: " + strings.TrimSpace(e.Notice)
}

func (e *DisconnectError) Unwrap() error { return ErrClosed }

// Options configure a Conn.
type Options struct {
	// Password for "auth" (mod_event_socket's password). Required.
	Password string
	// Logger; nil discards.
	Logger *slog.Logger
	// DialTimeout bounds connect + auth when ctx has no earlier deadline (default 5 s).
	DialTimeout time.Duration
	// CommandTimeout applies to commands whose ctx has no deadline (default 10 s).
	CommandTimeout time.Duration
	// StallTimeout: after a command's ctx expired, how long its reply may still take before
	// the connection is considered wedged and closed (default 15 s).
	StallTimeout time.Duration
	// IdleTimeout, when positive, closes the connection (ErrIdle) if no frame at all
	// arrives for that long. Only meaningful with a HEARTBEAT subscription (FreeSWITCH's
	// default interval is 20 s); 0 disables it.
	IdleTimeout time.Duration
	// EventQueue is the capacity of the event queue between the reader and OnEvent
	// (default 10000). Events arriving while it is full are dropped and counted.
	EventQueue int
	// OnEvent receives every event not consumed by a BgAPI waiter, in order, on one
	// dispatcher goroutine. It may block (events then queue up, and overflow is dropped);
	// the reader never blocks. It must not call Conn.Close (Close waits for it).
	OnEvent func(*Event)
	// OnEventsLost is called on the dispatcher goroutine after the queue drained following
	// an overflow, with the number of events dropped since the last call.
	OnEventsLost func(n uint64)
	// OnLinger is called (on the dispatcher goroutine) for a linger disconnect notice,
	// which does not close the connection.
	OnLinger func(headers Headers)
	// Dial replaces net.Dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 10 * time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 15 * time.Second
	}
	if o.EventQueue <= 0 {
		o.EventQueue = 10000
	}
}

type pending struct {
	verb  string
	ch    chan *Frame // cap 1: the reader never blocks on it
	done  atomic.Bool // reply received
	timer *time.Timer // stall watchdog, set after the caller gave up
}

// queued is one entry of the event queue: an event or a linger notice.
type queued struct {
	ev     *Event
	linger Headers
}

// Conn is one authenticated inbound Event Socket connection. Its methods are safe for
// concurrent use.
type Conn struct {
	opts Options
	nc   net.Conn
	log  *slog.Logger

	wmu sync.Mutex // serialises "enqueue pending + write"

	mu       sync.Mutex
	fifo     []*pending
	jobs     map[string]chan *Event
	format   Format
	bgJobSub bool
	err      error

	events  chan queued
	dropped atomic.Uint64
	done    chan struct{} // closed when the connection is closed
	wg      sync.WaitGroup
}

// Dial connects to FreeSWITCH at addr (host:port), authenticates, and starts the reader and
// event dispatcher. It handles the rude rejection and "-ERR invalid" replies.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	opts.defaults()
	if err := ValidatePassword(opts.Password); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	dial := opts.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("esl: dial %s: %w", addr, err)
	}
	rd := NewReader(nc)
	if err := authenticate(ctx, nc, rd, opts.Password); err != nil {
		nc.Close()
		return nil, err
	}
	c := &Conn{
		opts:   opts,
		nc:     nc,
		log:    opts.Logger.With("fs", addr),
		jobs:   make(map[string]chan *Event),
		format: FormatPlain,
		events: make(chan queued, opts.EventQueue),
		done:   make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop(rd)
	go c.dispatchLoop()
	return c, nil
}

func authenticate(ctx context.Context, nc net.Conn, rd *Reader, password string) error {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
		defer nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	f, err := rd.ReadFrame()
	if err != nil {
		return fmt.Errorf("esl: waiting for auth/request: %w", ctxErr(ctx, err))
	}
	switch ct := f.ContentType(); ct {
	case "auth/request":
	case "text/rude-rejection":
		return fmt.Errorf("%w: %s", ErrRejected, strings.TrimSpace(string(f.Body)))
	case "text/disconnect-notice":
		return &DisconnectError{Notice: string(f.Body)}
	default:
		return fmt.Errorf("%w: expected auth/request, got %q", ErrProtocol, ct)
	}
	if _, err := nc.Write(AppendCommand(nil, "auth "+password, nil, nil)); err != nil {
		return fmt.Errorf("esl: sending auth: %w", ctxErr(ctx, err))
	}
	f, err = rd.ReadFrame()
	if err != nil {
		return fmt.Errorf("esl: waiting for auth reply: %w", ctxErr(ctx, err))
	}
	if f.ContentType() != "command/reply" {
		return fmt.Errorf("%w: auth answered with %q", ErrProtocol, f.ContentType())
	}
	if rt := f.ReplyText(); rt != "+OK accepted" {
		return fmt.Errorf("%w: %s", ErrAuth, rt)
	}
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Done is closed when the connection has closed; Err then tells why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns the reason the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// DroppedEvents returns how many events were dropped because the event queue was full.
func (c *Conn) DroppedEvents() uint64 { return c.dropped.Load() }

// Close closes the connection and waits for its goroutines. Pending commands fail with
// ErrClosed. OnEvent is not called after Close returns.
func (c *Conn) Close() error {
	c.closeWith(ErrClosed)
	c.wg.Wait()
	return nil
}

// closeWith records the first close reason, closes the socket and fails pending requests.
func (c *Conn) closeWith(reason error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = reason
	fifo := c.fifo
	c.fifo = nil
	c.jobs = map[string]chan *Event{}
	close(c.done)
	c.mu.Unlock()
	for _, p := range fifo {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	c.nc.Close()
	if reason != ErrClosed {
		c.log.Warn("esl connection closed", "reason", reason)
	}
}

func (c *Conn) readLoop(rd *Reader) {
	defer c.wg.Done()
	for {
		if c.opts.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
		}
		f, err := rd.ReadFrame()
		if err != nil {
			var ne net.Error
			if c.opts.IdleTimeout > 0 && errors.As(err, &ne) && ne.Timeout() {
				c.closeWith(ErrIdle)
				return
			}
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				c.closeWith(ErrClosed)
			} else {
				c.closeWith(fmt.Errorf("%w: %w", ErrClosed, err))
			}
			return
		}
		switch ct := f.ContentType(); ct {
		case "command/reply", "api/response":
			c.mu.Lock()
			if len(c.fifo) == 0 {
				c.mu.Unlock()
				c.closeWith(fmt.Errorf("%w: unsolicited %s", ErrProtocol, ct))
				return
			}
			p := c.fifo[0]
			c.fifo[0] = nil
			c.fifo = c.fifo[1:]
			p.done.Store(true)
			if p.timer != nil {
				p.timer.Stop()
			}
			c.mu.Unlock()
			p.ch <- f // cap 1, only ever one send
		case "text/event-plain", "text/event-json":
			var ev *Event
			if ct == "text/event-plain" {
				ev, err = ParsePlain(f.Body)
			} else {
				ev, err = ParseJSON(f.Body)
			}
			if err != nil {
				c.log.Warn("esl: dropping unparsable event", "err", err)
				continue
			}
			c.route(ev)
		case "text/disconnect-notice":
			if strings.EqualFold(f.Headers.Get("Content-Disposition"), "linger") {
				c.enqueue(queued{linger: f.Headers})
				continue
			}
			c.closeWith(&DisconnectError{Notice: string(f.Body)})
			return
		case "text/rude-rejection":
			c.closeWith(fmt.Errorf("%w: %s", ErrRejected, strings.TrimSpace(string(f.Body))))
			return
		default: // text/event-xml, log/data, anything new: not subscribed by this client
			c.log.Debug("esl: ignoring frame", "content_type", ct)
		}
	}
}

// route hands a BACKGROUND_JOB to its waiter, everything else to the event queue.
func (c *Conn) route(ev *Event) {
	if ev.Name() == "BACKGROUND_JOB" {
		id := ev.Get("Job-UUID")
		c.mu.Lock()
		ch, ok := c.jobs[id]
		if ok {
			delete(c.jobs, id)
		}
		c.mu.Unlock()
		if ok {
			ch <- ev // cap 1
			return
		}
	}
	c.enqueue(queued{ev: ev})
}

func (c *Conn) enqueue(q queued) {
	select {
	case c.events <- q:
	default:
		n := c.dropped.Add(1)
		if n == 1 || n%1000 == 0 {
			c.log.Warn("esl: event queue full, dropping events", "dropped_total", n, "capacity", cap(c.events))
		}
	}
}

func (c *Conn) dispatchLoop() {
	defer c.wg.Done()
	var reported uint64
	for {
		select {
		case q := <-c.events:
			switch {
			case q.ev != nil && c.opts.OnEvent != nil:
				c.opts.OnEvent(q.ev)
			case q.linger != nil && c.opts.OnLinger != nil:
				c.opts.OnLinger(q.linger)
			}
			if len(c.events) == 0 {
				if d := c.dropped.Load(); d > reported {
					n := d - reported
					reported = d
					if c.opts.OnEventsLost != nil {
						c.opts.OnEventsLost(n)
					}
				}
			}
		case <-c.done:
			return
		}
	}
}

// roundTrip writes one command and waits for its command/reply or api/response.
func (c *Conn) roundTrip(ctx context.Context, verb string, wire []byte) (*Frame, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CommandTimeout)
		defer cancel()
	}
	p := &pending{verb: verb, ch: make(chan *Frame, 1)}
	if err := c.write(ctx, p, wire); err != nil {
		return nil, err
	}
	select {
	case f := <-p.ch:
		return f, nil
	case <-c.done:
		// The reply may have been delivered just before the close.
		select {
		case f := <-p.ch:
			return f, nil
		default:
		}
		return nil, fmt.Errorf("esl: %s: %w", verb, c.Err())
	case <-ctx.Done():
		// Keep the FIFO slot: the late reply must still be consumed. If it never comes,
		// FreeSWITCH is wedged; recycle the connection on purpose.
		c.mu.Lock()
		if !p.done.Load() && c.err == nil {
			p.timer = time.AfterFunc(c.opts.StallTimeout, func() {
				if !p.done.Load() {
					c.closeWith(fmt.Errorf("%w (%s)", ErrStalled, verb))
				}
			})
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("esl: %s: %w", verb, ctx.Err())
	}
}

// write appends p to the FIFO and writes wire under the write mutex so that FIFO order is
// wire order. A failed write closes the connection (its stream position is unknown).
func (c *Conn) write(ctx context.Context, p *pending, wire []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("esl: %s: %w", p.verb, err)
	}
	c.fifo = append(c.fifo, p)
	c.mu.Unlock()
	dl, _ := ctx.Deadline()
	c.nc.SetWriteDeadline(dl)
	if _, err := c.nc.Write(wire); err != nil {
		closed := fmt.Errorf("%w: write: %w", ErrClosed, err)
		c.closeWith(closed)
		// The connection is gone (callers may retry on the next one), unless
		// the caller's own deadline is what stopped the write.
		return fmt.Errorf("esl: %s: %w", p.verb, ctxErr(ctx, closed))
	}
	return nil
}

// Command sends a raw command (line plus optional headers and body) and returns the reply
// frame. The line, header names and values are validated. A "-ERR" Reply-Text yields a
// *CommandError together with the frame.
func (c *Conn) Command(ctx context.Context, line string, hs Headers, body []byte) (*Frame, error) {
	if err := ValidateLine(line); err != nil {
		return nil, err
	}
	for _, h := range hs {
		if err := ValidateHeaderName(h.Name); err != nil {
			return nil, err
		}
		if err := ValidateHeaderValue(h.Value); err != nil {
			return nil, err
		}
		if strings.EqualFold(h.Name, "Content-Length") {
			return nil, fmt.Errorf("%w: Content-Length is set from the body", ErrInvalid)
		}
	}
	verb, _, _ := strings.Cut(line, " ")
	f, err := c.roundTrip(ctx, verb, AppendCommand(nil, line, hs, body))
	if err != nil {
		return nil, err
	}
	if rt := f.ReplyText(); strings.HasPrefix(rt, "-ERR") {
		return f, &CommandError{Command: verb, Reply: rt}
	}
	return f, nil
}

// API runs "api <cmd>" and returns FreeSWITCH's output verbatim. Output starting with
// "-ERR" is also returned as a *CommandError. Slow commands stall this connection's other
// commands and events (FreeSWITCH runs api inline): use BgAPI for them.
func (c *Conn) API(ctx context.Context, cmd string) (string, error) {
	if err := ValidateLine(cmd); err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(cmd, " ")
	f, err := c.roundTrip(ctx, "api "+name, AppendCommand(nil, "api "+cmd, nil, nil))
	if err != nil {
		return "", err
	}
	if ct := f.ContentType(); ct != "api/response" {
		return "", fmt.Errorf("%w: api answered with %q (%s)", ErrProtocol, ct, f.ReplyText())
	}
	out := string(f.Body)
	if strings.HasPrefix(out, "-ERR") {
		return out, &CommandError{Command: "api " + name, Reply: strings.TrimSpace(out)}
	}
	return out, nil
}

// BgAPI runs "bgapi <cmd>" with a Job-UUID chosen here, waits for the BACKGROUND_JOB event
// and returns its body. The waiter is registered before the command is written. The
// connection is subscribed to BACKGROUND_JOB first if needed. If ctx expires the job keeps
// running in FreeSWITCH; its result is then delivered to OnEvent.
func (c *Conn) BgAPI(ctx context.Context, cmd string) (string, error) {
	if err := ValidateLine(cmd); err != nil {
		return "", err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CommandTimeout)
		defer cancel()
	}
	if err := c.ensureBgJob(ctx); err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(cmd, " ")
	verb := "bgapi " + name
	id := uuid.NewString()
	ch := make(chan *Event, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return "", fmt.Errorf("esl: %s: %w", verb, err)
	}
	c.jobs[id] = ch
	c.mu.Unlock()
	unregister := func() {
		c.mu.Lock()
		delete(c.jobs, id)
		c.mu.Unlock()
	}
	f, err := c.roundTrip(ctx, verb, AppendCommand(nil, "bgapi "+cmd, Headers{{"Job-UUID", id}}, nil))
	if err != nil {
		unregister()
		return "", err
	}
	if rt := f.ReplyText(); !strings.HasPrefix(rt, "+OK") {
		unregister()
		return "", &CommandError{Command: verb, Reply: rt}
	}
	if got := f.Headers.Get("Job-UUID"); got != id {
		unregister()
		return "", fmt.Errorf("%w: bgapi Job-UUID %q, sent %q", ErrProtocol, got, id)
	}
	select {
	case ev := <-ch:
		if strings.HasPrefix(ev.Body, "-ERR") {
			return ev.Body, &CommandError{Command: verb, Reply: strings.TrimSpace(ev.Body)}
		}
		return ev.Body, nil
	case <-c.done:
		return "", fmt.Errorf("esl: %s: %w", verb, c.Err())
	case <-ctx.Done():
		unregister()
		return "", fmt.Errorf("esl: %s: %w", verb, ctx.Err())
	}
}

func (c *Conn) ensureBgJob(ctx context.Context) error {
	c.mu.Lock()
	ok, f := c.bgJobSub, c.format
	c.mu.Unlock()
	if ok {
		return nil
	}
	return c.Subscribe(ctx, f, "BACKGROUND_JOB")
}

// Subscribe sends "event <format> <names…>". Names are event names (CHANNEL_PARK, ALL…);
// after "CUSTOM" every further name is a subclass (conference::maintenance). FreeSWITCH
// accumulates subscriptions; the last format wins for all of them.
func (c *Conn) Subscribe(ctx context.Context, format Format, names ...string) error {
	if format != FormatPlain && format != FormatJSON {
		return fmt.Errorf("%w: event format %q (plain or json)", ErrInvalid, format)
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: no events to subscribe", ErrInvalid)
	}
	custom, bg := false, false
	for _, n := range names {
		var err error
		if custom {
			err = ValidateSubclass(n)
		} else {
			err = ValidateEventName(n)
		}
		if err != nil {
			return err
		}
		switch n {
		case "CUSTOM":
			custom = true
		case "ALL", "BACKGROUND_JOB":
			bg = true
		}
	}
	if _, err := c.Command(ctx, "event "+string(format)+" "+strings.Join(names, " "), nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	c.format = format
	c.bgJobSub = c.bgJobSub || bg
	c.mu.Unlock()
	return nil
}

// NoEvents cancels every event subscription ("noevents").
func (c *Conn) NoEvents(ctx context.Context) error {
	_, err := c.Command(ctx, "noevents", nil, nil)
	if err == nil {
		c.mu.Lock()
		c.bgJobSub = false
		c.mu.Unlock()
	}
	return err
}

// SendMsg sends "sendmsg <uuid>" with the given headers and optional body.
func (c *Conn) SendMsg(ctx context.Context, channel string, hs Headers, body []byte) error {
	if err := ValidateUUID(channel); err != nil {
		return err
	}
	_, err := c.Command(ctx, "sendmsg "+channel, hs, body)
	return err
}

// Execute runs a dialplan application on a channel via sendmsg. The argument travels as a
// text/plain body, so it may contain any characters. eventUUID (optional, validated) comes
// back as Application-UUID in CHANNEL_EXECUTE_COMPLETE.
func (c *Conn) Execute(ctx context.Context, channel, app, arg, eventUUID string) error {
	if err := validateApp(app); err != nil {
		return err
	}
	hs := Headers{{"call-command", "execute"}, {"execute-app-name", app}}
	if eventUUID != "" {
		if err := ValidateUUID(eventUUID); err != nil {
			return err
		}
		hs = append(hs, Header{"Event-UUID", eventUUID})
	}
	var body []byte
	if arg != "" {
		hs = append(hs, Header{"content-type", "text/plain"})
		body = []byte(arg)
	}
	return c.SendMsg(ctx, channel, hs, body)
}

// Hangup hangs a channel up via sendmsg; cause defaults to NORMAL_CLEARING.
func (c *Conn) Hangup(ctx context.Context, channel, cause string) error {
	if cause == "" {
		cause = "NORMAL_CLEARING"
	}
	if err := validateCause(cause); err != nil {
		return err
	}
	return c.SendMsg(ctx, channel, Headers{{"call-command", "hangup"}, {"hangup-cause", cause}}, nil)
}

func validateApp(app string) error {
	if app == "" || len(app) > 64 {
		return invalid("application", app)
	}
	for i := 0; i < len(app); i++ {
		if ch := app[i]; !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '_') {
			return invalid("application", app)
		}
	}
	return nil
}

func validateCause(cause string) error {
	if len(cause) > 64 {
		return invalid("hangup cause", cause)
	}
	if err := ValidateEventName(cause); err != nil { // same charset: [A-Z0-9_]
		return invalid("hangup cause", cause)
	}
	return nil
}
