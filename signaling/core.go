package signaling

import (
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Options configures a Core. Zero values take the defaults (timeouts: the sessions: and calls:
// keys of internal/defaults).
type Options struct {
	Logger       *slog.Logger
	Bus          *Bus          // default: a new bus
	Backends     *Backends     // default: none registered (only p2p works)
	WaitTimeout  time.Duration // sessions.wait_timeout: sessions without an answer
	ReadyTimeout time.Duration // sessions.ready_timeout: sessions with an answer
	RingTime     time.Duration // calls.ring_time
	MaxRingTime  time.Duration // calls.max_ring_time
	Observer     Observer      // optional: told about sessions and calls (metrics)
	Recorder     Recorder      // optional: told about calls and sessions with details (call records)
}

// Core holds the sessions and calls of one nkbridge instance. Its methods
// are safe for concurrent use; they never call out (to backends, invitees,
// observers, the bus) while holding its lock.
type Core struct {
	log      *slog.Logger
	bus      *Bus
	backends *Backends
	obs      Observer
	rec      Recorder
	opts     Options

	mu        sync.Mutex
	sessions  map[string]*session
	byOwner   map[string]map[string]struct{} // owner -> session ids
	aux       map[string]int                 // owner -> auxiliary (adaptation) sessions of its calls
	auxMedia  map[string]Media               // id -> the media of an adapted invitee's leg (adapt.go)
	peersOf   map[string]map[string]struct{} // session id -> sessions whose peer it is
	calls     map[string]*call
	callOwner map[string]map[string]struct{} // owner -> call ids
	resolvers []resolverEntry
	listers   listers      // monitor.go
	adapter   OfferAdapter // optional (adapt.go)
	dir       Directory    // optional: the other nodes of a cluster (presence.go)
	remote    Remote       // optional: the other nodes' sessions and calls (remote.go)
	runner    CommandRunner
	presence  Presence
	closed    bool
	draining  bool
	waiting   bool // Close waits for wg: no more background work (Add must not race its Wait)

	wg sync.WaitGroup // asynchronous stops
}

type resolverEntry struct {
	typ string
	r   Resolver
}

// New returns a Core.
func New(o Options) *Core {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Bus == nil {
		o.Bus = NewBus()
	}
	if o.Backends == nil {
		o.Backends = NewBackends()
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = defaults.Duration("sessions.wait_timeout")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = defaults.Duration("sessions.ready_timeout")
	}
	if o.MaxRingTime <= 0 {
		o.MaxRingTime = defaults.Duration("calls.max_ring_time")
	}
	if o.RingTime <= 0 {
		o.RingTime = defaults.Duration("calls.ring_time")
	}
	if o.RingTime > o.MaxRingTime {
		o.RingTime = o.MaxRingTime
	}
	return &Core{
		log:       o.Logger,
		bus:       o.Bus,
		obs:       o.Observer,
		rec:       o.Recorder,
		backends:  o.Backends,
		opts:      o,
		sessions:  make(map[string]*session),
		byOwner:   make(map[string]map[string]struct{}),
		aux:       make(map[string]int),
		peersOf:   make(map[string]map[string]struct{}),
		calls:     make(map[string]*call),
		callOwner: make(map[string]map[string]struct{}),
	}
}

// Bus returns the event bus.
func (c *Core) Bus() *Bus { return c.bus }

// Backends returns the backend registry.
func (c *Core) Backends() *Backends { return c.backends }

// StopOwned stops every session and hangs up every call whose Owner is
// owner (a front end's connection key), with err.
func (c *Core) StopOwned(owner string, err *Error) {
	c.mu.Lock()
	var sids, cids []string
	for id := range c.byOwner[owner] {
		sids = append(sids, id)
	}
	for id := range c.callOwner[owner] {
		cids = append(cids, id)
	}
	c.mu.Unlock()
	for _, id := range cids {
		_ = c.HangupCall(id, err)
	}
	for _, id := range sids {
		_ = c.StopSession(id, err)
	}
}

// Drain makes the core refuse new sessions and calls (1061 "Server
// draining") while existing ones go on.
func (c *Core) Drain() {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
}

// Counts returns how many sessions and calls exist.
func (c *Core) Counts() (sessions, calls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions), len(c.calls)
}

// refuseLocked says why new sessions and calls are refused, if they are.
func (c *Core) refuseLocked() *Error {
	switch {
	case c.closed:
		return Errorf(CodeSessionStop, "Server stopping")
	case c.draining:
		return Errorf(CodeSessionStop, "Server draining")
	}
	return nil
}

// Owned returns how many sessions (auxiliary adaptation sessions of its
// calls included) and calls owner has.
func (c *Core) Owned(owner string) (sessions, calls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byOwner[owner]) + c.aux[owner], len(c.callOwner[owner])
}

// Close stops every session and call (1061 "Server stopping") and waits for
// pending asynchronous work. New sessions and calls are refused afterwards.
func (c *Core) Close() {
	c.mu.Lock()
	c.closed = true
	var sids, cids []string
	for id := range c.sessions {
		sids = append(sids, id)
	}
	for id := range c.calls {
		cids = append(cids, id)
	}
	c.mu.Unlock()
	stop := Errorf(CodeSessionStop, "Server stopping")
	for _, id := range cids {
		_ = c.HangupCall(id, stop)
	}
	for _, id := range sids {
		_ = c.StopSession(id, stop)
	}
	c.mu.Lock()
	c.waiting = true
	c.mu.Unlock()
	c.wg.Wait()
}

func addTo(m map[string]map[string]struct{}, k, v string) {
	s := m[k]
	if s == nil {
		s = make(map[string]struct{})
		m[k] = s
	}
	s[v] = struct{}{}
}

func delFrom(m map[string]map[string]struct{}, k, v string) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// background runs f on a goroutine the Core waits for in Close, and says
// whether it did: once Close waits for pending work (every session and call
// is gone by then) it starts nothing more. A backend may report while Close
// runs or after it returned; the Add happens under the lock Close takes
// before its Wait, so the two never race.
func (c *Core) background(f func()) bool {
	c.mu.Lock()
	if c.waiting {
		c.mu.Unlock()
		return false
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer c.recovered("background")
		f()
	}()
	return true
}

// recovered, deferred in a timer or goroutine, logs a panic (a backend's,
// usually) with its stack instead of ending the process and every call.
func (c *Core) recovered(what string) {
	if v := recover(); v != nil {
		c.log.Error("panic recovered", "in", what, "panic", v, "stack", string(debug.Stack()))
	}
}
