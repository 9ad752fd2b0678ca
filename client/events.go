package nkclient

import (
	"context"
	"sync"
	"sync/atomic"
)

// Subscription receives the delivered events that match its selector, on
// C, until Close (or the end of the connection, which closes C).
//
// It only filters what the server delivers: the server delivers the
// events of the connection's own sessions and calls, and those of the
// classes subscribed to with Client.Subscribe.
type Subscription struct {
	C <-chan Event

	c       *Client
	sel     Selector
	ch      chan Event
	mu      sync.Mutex
	ended   bool
	dropped atomic.Uint64
}

// Events returns a subscription to the delivered events matching sel.
// On a closed connection its channel is closed at once.
func (c *Client) Events(sel Selector) *Subscription { return c.events(sel, c.opts.EventBuffer) }

// callbackBuffer is how far an OnEvent callback may fall behind (at least): a burst of events
// waits for it instead of being dropped.
const callbackBuffer = 4096

func (c *Client) events(sel Selector, size int) *Subscription {
	ch := make(chan Event, size)
	s := &Subscription{C: ch, c: c, sel: sel, ch: ch}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		s.end()
		return s
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// send never blocks the connection: a full channel drops the event.
func (s *Subscription) send(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	select {
	case s.ch <- ev:
	default:
		if s.dropped.Add(1) == 1 {
			s.c.log.Warn("event subscriber too slow: events dropped", "selector", s.sel)
		}
	}
}

func (s *Subscription) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.ch)
	}
}

// Dropped counts the events lost because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	s.end()
}

// OnEvent calls fn for every delivered event matching sel, one at a time
// in a goroutine of the client's (so fn may make requests). Events wait
// for fn in a queue of 4096 (or Options.EventBuffer, if larger); only a fn
// that falls further behind loses events (counted and logged as for
// Events). The returned function stops it; so does Close.
func (c *Client) OnEvent(sel Selector, fn func(Event)) (stop func()) {
	s := c.events(sel, max(c.opts.EventBuffer, callbackBuffer))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil { // ended: no goroutine that Close could miss
		return s.Close
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for ev := range s.C {
			fn(ev)
		}
	}()
	return s.Close
}

// WaitEvent waits for the next delivered event matching sel.
func (c *Client) WaitEvent(ctx context.Context, sel Selector) (Event, error) {
	s := c.Events(sel)
	defer s.Close()
	select {
	case ev, ok := <-s.C:
		if !ok {
			return Event{}, c.Err()
		}
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Subscribe asks the server for the events of sel (core/event/subscribe;
// empty subclass, type and obj_id mean "*").
func (c *Client) Subscribe(ctx context.Context, sel Selector) error {
	return c.Request(ctx, "core", "event", "subscribe", sel, nil)
}

// Unsubscribe undoes Subscribe.
func (c *Client) Unsubscribe(ctx context.Context, sel Selector) error {
	return c.Request(ctx, "core", "event", "unsubscribe", sel, nil)
}

// SendEvent publishes an event of the caller's own class to its
// subscribers (core/event/send).
func (c *Client) SendEvent(ctx context.Context, ev Event) error {
	return c.Request(ctx, "core", "event", "send", ev, nil)
}
