package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// DefaultEvents returns what a Client subscribes to unless told otherwise: the channel
// lifecycle, application completion, DTMF, job results, heartbeats and conference
// membership.
func DefaultEvents() []string {
	return []string{
		"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_EXECUTE_COMPLETE",
		"CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP_COMPLETE", "DTMF",
		"BACKGROUND_JOB", "HEARTBEAT", "CUSTOM", "conference::maintenance",
	}
}

// Reconcile reasons.
const (
	ReasonConnect    = "connect"     // first connection
	ReasonReconnect  = "reconnect"   // connection restored after a loss
	ReasonEventsLost = "events-lost" // the event queue overflowed; state may be stale
)

// Reconciliation is passed to ClientOptions.Reconcile.
type Reconciliation struct {
	Reason   string
	Channels []Channel // "show channels as json" taken right after (re)subscribing
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// Addr of mod_event_socket, e.g. 127.0.0.1:8021.
	Addr string
	// Conn holds the per-connection options (Password, timeouts, EventQueue, Logger).
	// OnEvent, OnEventsLost are set by the Client.
	Conn Options
	// Format of subscriptions (default json) and Events to subscribe (default
	// DefaultEvents()). They are re-sent on every connection.
	Format Format
	Events []string
	// Backoff between connection attempts: doubles from MinBackoff (default 200 ms) to
	// MaxBackoff (default 10 s), each wait randomised to [50 %, 100 %]. It resets once a
	// connection has stayed up for StableAfter (default 10 s).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// OnEvent receives events (dispatcher goroutine of the current connection).
	OnEvent func(*Event)
	// Reconcile is called from Run's goroutine after each successful (re)connection and
	// after event loss, with the live channels, so the application can compare them with
	// its own state (find sessions whose channel vanished, adopt or kill unknown ones).
	// It runs concurrently with OnEvent.
	Reconcile func(ctx context.Context, r Reconciliation)
}

// Client keeps one Conn to FreeSWITCH alive: it dials, authenticates, subscribes,
// reconciles, and when the connection dies reconnects with exponential backoff. Commands
// wait (within their context) for a live connection; a command in flight when the
// connection dies fails and is not retried (FreeSWITCH may have executed it).
type Client struct {
	opts ClientOptions
	log  *slog.Logger

	mu     sync.Mutex
	cur    *Conn
	ready  chan struct{} // closed (and replaced) when cur changes to a live conn
	resync chan struct{}
}

// NewClient validates the options; call Run to connect.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Addr == "" {
		return nil, fmt.Errorf("%w: FreeSWITCH address", ErrInvalid)
	}
	if opts.Format == "" {
		opts.Format = FormatJSON
	}
	if len(opts.Events) == 0 {
		opts.Events = DefaultEvents()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(10*time.Second, opts.MinBackoff)
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = 10 * time.Second
	}
	opts.Conn.defaults()
	if opts.Conn.IdleTimeout == 0 && slices.Contains(opts.Events, "HEARTBEAT") {
		opts.Conn.IdleTimeout = 65 * time.Second // three missed 20 s heartbeats
	}
	c := &Client{opts: opts, log: opts.Conn.Logger, ready: make(chan struct{}), resync: make(chan struct{}, 1)}
	opts.Conn.OnEvent = opts.OnEvent
	opts.Conn.OnEventsLost = func(n uint64) {
		c.log.Warn("esl: events lost; reconciling", "lost", n)
		select {
		case c.resync <- struct{}{}:
		default:
		}
	}
	c.opts = opts
	return c, nil
}

// Backoff returns the wait before connection attempt number attempt (0-based): MinBackoff
// doubled attempt times, capped at MaxBackoff, scaled by a random factor in [0.5, 1].
func (c *Client) Backoff(attempt int) time.Duration {
	d := c.opts.MinBackoff
	for i := 0; i < attempt && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Run connects and keeps reconnecting until ctx is done; it then closes the connection and
// returns ctx.Err().
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	reason := ReasonConnect
	for {
		start := time.Now()
		conn, err := c.connect(ctx)
		if err == nil {
			c.log.Info("esl: connected", "addr", c.opts.Addr, "reason", reason)
			err = c.serve(ctx, conn, reason)
			reason = ReasonReconnect
			if time.Since(start) >= c.opts.StableAfter {
				attempt = 0
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := c.Backoff(attempt)
		attempt++
		c.log.Warn("esl: connection to FreeSWITCH lost or failed; retrying", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (c *Client) connect(ctx context.Context) (*Conn, error) {
	conn, err := Dial(ctx, c.opts.Addr, c.opts.Conn)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.opts.Conn.CommandTimeout)
	defer cancel()
	if err := conn.Subscribe(sctx, c.opts.Format, c.opts.Events...); err != nil {
		conn.Close()
		return nil, fmt.Errorf("esl: subscribing: %w", err)
	}
	return conn, nil
}

// serve publishes conn, reconciles, and waits for it to die (or ctx).
func (c *Client) serve(ctx context.Context, conn *Conn, reason string) error {
	c.mu.Lock()
	c.cur = conn
	close(c.ready)
	c.ready = make(chan struct{})
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.cur == conn {
			c.cur = nil
		}
		c.mu.Unlock()
		conn.Close()
	}()
	// Drain a resync request left over from a previous connection.
	select {
	case <-c.resync:
	default:
	}
	c.reconcile(ctx, conn, reason)
	for {
		select {
		case <-conn.Done():
			return conn.Err()
		case <-ctx.Done():
			return ctx.Err()
		case <-c.resync:
			c.reconcile(ctx, conn, ReasonEventsLost)
		}
	}
}

func (c *Client) reconcile(ctx context.Context, conn *Conn, reason string) {
	if c.opts.Reconcile == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.Conn.CommandTimeout)
	chans, err := ShowChannels(rctx, conn)
	cancel()
	if err != nil {
		c.log.Warn("esl: show channels failed; closing connection to retry", "err", err)
		conn.closeWith(fmt.Errorf("%w: reconcile: %w", ErrClosed, err))
		return
	}
	c.opts.Reconcile(ctx, Reconciliation{Reason: reason, Channels: chans})
}

// Conn waits (within ctx) for a live connection and returns it.
func (c *Client) Conn(ctx context.Context) (*Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Conn.CommandTimeout)
		defer cancel()
	}
	for {
		c.mu.Lock()
		cur, ready := c.cur, c.ready
		c.mu.Unlock()
		if cur != nil && cur.Err() == nil {
			return cur, nil
		}
		select {
		case <-ready:
		case <-time.After(50 * time.Millisecond): // cur may have died without a new one yet
		case <-ctx.Done():
			return nil, fmt.Errorf("%w to FreeSWITCH: %w", ErrNotConnected, ctx.Err())
		}
	}
}

// Connected reports whether a live connection exists right now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && c.cur.Err() == nil
}

// ErrNotConnected is wrapped when a command cannot get a connection.
var ErrNotConnected = errors.New("esl: not connected")

// API runs an api command on the current connection (see Conn.API).
func (c *Client) API(ctx context.Context, cmd string) (string, error) {
	conn, err := c.Conn(ctx)
	if err != nil {
		return "", err
	}
	return conn.API(ctx, cmd)
}

// BgAPI runs a bgapi command on the current connection (see Conn.BgAPI).
func (c *Client) BgAPI(ctx context.Context, cmd string) (string, error) {
	conn, err := c.Conn(ctx)
	if err != nil {
		return "", err
	}
	return conn.BgAPI(ctx, cmd)
}

// Execute runs an application on a channel (see Conn.Execute).
func (c *Client) Execute(ctx context.Context, channel, app, arg, eventUUID string) error {
	conn, err := c.Conn(ctx)
	if err != nil {
		return err
	}
	return conn.Execute(ctx, channel, app, arg, eventUUID)
}

// Hangup hangs a channel up via sendmsg (see Conn.Hangup).
func (c *Client) Hangup(ctx context.Context, channel, cause string) error {
	conn, err := c.Conn(ctx)
	if err != nil {
		return err
	}
	return conn.Hangup(ctx, channel, cause)
}
