// Package apitest is the control-API client of the tests: the project's Go
// client (nkclient) with methods that fail the test instead of returning an
// error, and waits for the next event that matches.
//
// Everything the server asks (pings, events, invites, other requests) is
// answered by nkclient; the events are kept, in order, for Event and
// Pending.
package apitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// RequestTimeout bounds one request's wait for its reply.
const RequestTimeout = 20 * time.Second

// EventTimeout bounds Event's wait.
const EventTimeout = 10 * time.Second

// Conn is one API connection of a test. Its methods are for the test's
// goroutine.
type Conn struct {
	t   testing.TB
	C   *nkclient.Client // for what the methods below do not cover
	sub *nkclient.Subscription
	buf []nkclient.Event // received, not yet taken by Event
}

// Dial connects to url (ws:// or wss://) or fails t; the connection is
// closed when the test ends. opts.EventBuffer defaults to 4096 here.
func Dial(t testing.TB, url string, opts nkclient.Options) *Conn {
	t.Helper()
	if opts.EventBuffer == 0 {
		opts.EventBuffer = 4096
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	c, err := nkclient.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("apitest: dial %s: %v", url, err)
	}
	conn := &Conn{t: t, C: c, sub: c.Events(nkclient.Selector{})}
	t.Cleanup(func() {
		conn.sub.Close()
		_ = c.Close()
	})
	return conn
}

// Login logs in as user or fails the test.
func (c *Conn) Login(user, password string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	if _, err := c.C.Login(ctx, user, password); err != nil {
		c.t.Fatalf("apitest: login %s: %v", user, err)
	}
}

// Req sends a request and decodes its reply's data into out (nil: dropped);
// a refusal is an *nkclient.APIError.
func (c *Conn) Req(class, subclass, cmd string, data, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	return c.C.Request(ctx, class, subclass, cmd, data, out)
}

// OK sends a request that must succeed and returns its reply's data (nil
// when it is not an object).
func (c *Conn) OK(class, subclass, cmd string, data any) map[string]any {
	c.t.Helper()
	var raw json.RawMessage
	if err := c.Req(class, subclass, cmd, data, &raw); err != nil {
		c.t.Fatalf("%s/%s/%s: want ok, got %v", class, subclass, cmd, err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// Fail sends a request that must be refused with code and returns the
// error's text, which must not be empty.
func (c *Conn) Fail(code int, class, subclass, cmd string, data any) string {
	c.t.Helper()
	err := c.Req(class, subclass, cmd, data, nil)
	var ae *nkclient.APIError
	if !errors.As(err, &ae) || ae.Code != code {
		c.t.Fatalf("%s/%s/%s: want error %d, got %v", class, subclass, cmd, code, err)
	}
	if ae.Text == "" {
		c.t.Fatalf("%s/%s/%s: error %d without text", class, subclass, cmd, code)
	}
	return ae.Text
}

// Media selects the media events of subclass, type and object ("": any).
func Media(subclass, typ, objID string) nkclient.Selector {
	return nkclient.Selector{Class: "media", Subclass: subclass, Type: typ, ObjID: objID}
}

// Event waits (EventTimeout) for the first event received so far or later
// that matches sel and match (nil: any body), takes it and returns its
// body. Other events stay for later calls.
func (c *Conn) Event(sel nkclient.Selector, match func(body map[string]any) bool) map[string]any {
	c.t.Helper()
	ok := func(ev nkclient.Event) (map[string]any, bool) {
		if !sel.Match(ev) {
			return nil, false
		}
		var body map[string]any
		_ = json.Unmarshal(ev.Body, &body)
		return body, match == nil || match(body)
	}
	for i, ev := range c.buf {
		if body, yes := ok(ev); yes {
			c.buf = append(c.buf[:i], c.buf[i+1:]...)
			return body
		}
	}
	deadline := time.NewTimer(EventTimeout)
	defer deadline.Stop()
	for {
		select {
		case ev, open := <-c.sub.C:
			if !open {
				c.t.Fatalf("API connection closed while waiting for %s (%v)", describe(sel), c.C.Err())
			}
			if body, yes := ok(ev); yes {
				return body
			}
			c.buf = append(c.buf, ev)
		case <-deadline.C:
			c.t.Fatalf("timeout waiting for %s; got meanwhile: %s", describe(sel), c.describeBuf())
		}
	}
}

// Pending returns the events received and not taken so far (they stay).
func (c *Conn) Pending() []nkclient.Event {
	for {
		select {
		case ev, open := <-c.sub.C:
			if !open {
				return c.buf
			}
			c.buf = append(c.buf, ev)
		default:
			return c.buf
		}
	}
}

func describe(s nkclient.Selector) string {
	return fmt.Sprintf("event %s/%s/%s/%s", s.Class, s.Subclass, s.Type, s.ObjID)
}

func (c *Conn) describeBuf() string {
	s := ""
	for _, ev := range c.buf {
		s += fmt.Sprintf(" %s/%s/%s/%s %s", ev.Class, ev.Subclass, ev.Type, ev.ObjID, ev.Body)
	}
	return s
}

// Serve serves the control API (wsapi with cfg) over core on a loopback port
// until the test ends, and returns its ws:// URL. It stops serving before the
// cleanups registered earlier run (core.Close among them).
func Serve(t testing.TB, core *signaling.Core, cfg wsapi.Config, log *slog.Logger) string {
	t.Helper()
	addr, _ := ServeServer(t, wsapi.New(cfg, core, log))
	return "ws://" + addr + "/"
}

// ServeServer serves srv on a loopback port and returns its address and a
// stop that ends serving, waits for it and reports an error of Serve to t.
// stop may be called more than once; it is called when the test ends.
func ServeServer(t testing.TB, srv *wsapi.Server) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}
