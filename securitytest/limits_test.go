package securitytest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"

	"github.com/gorilla/websocket"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

// #13.6: one user cannot take every room or session, over several
// connections; one address cannot hold every unauthenticated socket.
// Each refusal names the setting.
func TestQuotasPerUserAndSource(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1), MaxUserRooms: 3, MaxUserSessions: 4, MaxUserCalls: 2, MaxUnauthPerSource: 3}, nil)
	a1, a2, bob := login(t, e, "alice"), login(t, e, "alice"), login(t, e, "bob")
	for i := range 3 {
		c := []*client{a1, a2}[i%2]
		c.OK("media", "room", "create", map[string]any{"class": "mcu"})
	}
	if txt := a2.Fail(signaling.CodeInvalidOperation, "media", "room", "create", map[string]any{"class": "mcu"}); !strings.Contains(txt, "api.max_user_rooms") {
		t.Errorf("4th room: %q does not name api.max_user_rooms", txt)
	}
	bob.OK("media", "room", "create", map[string]any{"class": "mcu"}) // another user is not affected
	for i := range 4 {
		c := []*client{a1, a2}[i%2]
		c.OK("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})
	}
	if txt := a1.Fail(signaling.CodeInvalidOperation, "media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()}); !strings.Contains(txt, "api.max_user_sessions") {
		t.Errorf("5th session: %q does not name api.max_user_sessions", txt)
	}
	bob.OK("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})
	// Calls placed (bob's connection is rung and lets them ring).
	for i := range 2 {
		[]*client{a1, a2}[i].OK("media", "call", "start", map[string]any{"type": "user", "user": "bob", "offer": rtpOffer()})
	}
	if txt := a1.Fail(signaling.CodeInvalidOperation, "media", "call", "start", map[string]any{"type": "user", "user": "bob", "offer": rtpOffer()}); !strings.Contains(txt, "api.max_user_calls") {
		t.Errorf("3rd call: %q does not name api.max_user_calls", txt)
	}

	// Sockets that never log in, from one address.
	var idle []*client
	for range 3 {
		c, err := dialFrom(t, e.addr, "127.0.0.4", nil)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/", nil)
	if err != nil && resp == nil {
		t.Fatal(err)
	}
	if _, err := dialFrom(t, e.addr, "127.0.0.4", nil); err == nil {
		t.Error("a 4th unauthenticated socket from one address was accepted (api.max_unauth_per_source 3)")
	}
	// Logging in frees the slot.
	idle[0].OK("core", "user", "login", map[string]any{"user": "bob", "password": testPassword})
	if _, err := dialFrom(t, e.addr, "127.0.0.4", nil); err != nil {
		t.Errorf("after a login: %v", err)
	}
}

// #13.7: subscription bodies are budgeted in bytes, not counted.
func TestSubscriptionBodiesBudgetedInBytes(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1), SubscriptionBytes: 64 << 10}, nil)
	c := login(t, e, "alice")
	body := map[string]any{"pad": strings.Repeat("x", 30<<10)}
	c.OK("core", "event", "subscribe", map[string]any{"class": "app", "subclass": "a", "body": body})
	c.OK("core", "event", "subscribe", map[string]any{"class": "app", "subclass": "b", "body": body})
	if txt := c.Fail(signaling.CodeInvalidOperation, "core", "event", "subscribe", map[string]any{"class": "app", "subclass": "c", "body": body}); !strings.Contains(txt, "api.subscription_bytes") {
		t.Errorf("3rd 30 KiB body: %q does not name api.subscription_bytes", txt)
	}
	// events_body of a session start counts too.
	c.Fail(signaling.CodeInvalidOperation, "media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer(), "events_body": body})
	// Replacing a subscription's body is fine.
	c.OK("core", "event", "subscribe", map[string]any{"class": "app", "subclass": "b", "body": map[string]any{"small": 1}})
	c.OK("core", "event", "subscribe", map[string]any{"class": "app", "subclass": "c", "body": body})
}

// #13.7: a client that does not read for a moment is judged by the bytes
// waiting for it (api.send_queue_bytes), not by a number of frames: 4000
// events of 1 KiB (more than the kernel buffers hold) wait in its queue,
// and it gets them all once it reads again.
func TestSlowReaderBudgetedInBytes(t *testing.T) {
	const n = 4000
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1), SendQueueBytes: 16 << 20, RequestTimeout: time.Minute}, nil)
	slow, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	for i, req := range []map[string]any{
		{"class": "core", "subclass": "user", "cmd": "login", "data": map[string]any{"user": "alice", "password": testPassword}},
		{"class": "core", "subclass": "event", "cmd": "subscribe", "data": map[string]any{"class": "app"}},
	} {
		req["tid"] = i
		if err := slow.WriteJSON(req); err != nil {
			t.Fatal(err)
		}
	}
	pad := strings.Repeat("x", 1<<10)
	var senders []*client
	for range 4 {
		senders = append(senders, login(t, e, "alice"))
	}
	for i := range n {
		s := senders[i%len(senders)]
		if err := s.Write(map[string]any{"class": "core", "subclass": "event", "cmd": "send", "tid": 1000 + i,
			"data": map[string]any{"class": "app", "type": "tick", "body": map[string]any{"pad": pad}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range senders {
		s.OK("core", "core", "ping", nil) // every event was published
	}
	got := 0
	_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got < n {
		var m map[string]any
		if err := slow.ReadJSON(&m); err != nil {
			t.Fatalf("the reader was dropped after %d of %d events: %v", got, n, err)
		}
		if m["cmd"] == "event" {
			got++
			_ = slow.WriteJSON(map[string]any{"result": "ok", "tid": m["tid"]})
		}
	}
}

// #13.9 and #14.5: 1000 pipelined pings do not drop the connection, and 20
// session starts at once on one connection all succeed (a short burst over
// api.max_in_flight is queued, not refused).
func TestPipelinedBurst(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, nil)
	c, err := dialFrom(t, e.addr, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.OK("core", "user", "login", map[string]any{"user": "alice", "password": testPassword})
	// Raw pipelining: write everything first, read afterwards.
	raw, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.WriteJSON(map[string]any{"class": "core", "subclass": "user", "cmd": "login", "tid": 0,
		"data": map[string]any{"user": "alice", "password": testPassword}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ {
		if err := raw.WriteJSON(map[string]any{"class": "core", "cmd": "ping", "tid": i}); err != nil {
			t.Fatalf("write ping %d: %v", i, err)
		}
	}
	oks := 0
	_ = raw.SetReadDeadline(time.Now().Add(20 * time.Second))
	for oks < 1001 {
		var m map[string]any
		if err := raw.ReadJSON(&m); err != nil {
			t.Fatalf("after %d replies: %v", oks, err)
		}
		if m["result"] == "ok" {
			oks++
		} else if m["result"] == "error" {
			t.Fatalf("ping refused: %v", m)
		}
	}

	// 20 starts at once.
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := c.Call("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Errorf("start in a burst of 20: %v", err)
		}
	}
}

// #13.11: a panic in an async handler (a backend), in the reader (a
// resolver) or in a timer (a media's Stop at a session timeout) fails that
// request only: the process, the connection and other sessions go on.
func TestPanicsAreContained(t *testing.T) {
	e := newAPIEnv(t, wsapi.Config{Users: testUsers(t, 1)}, func(b *signaling.Backends) {
		b.Register("boom", panicBackend{}, signaling.TypePark)
	})
	e.core.AddResolver("boom", signaling.ResolverFunc(func(context.Context, signaling.Destination) ([]signaling.Invitee, error) {
		panic("resolver exploded")
	}))
	c := login(t, e, "alice")
	keep := c.OK("media", "session", "start", map[string]any{"type": "echo", "offer": rtpOffer()})["session_id"].(string)

	c.Fail(signaling.CodeInternalError, "media", "session", "start", map[string]any{"type": "park", "backend": "boom", "offer": rtpOffer()})
	c.OK("media", "call", "start", map[string]any{"type": "boom", "callee": "x"})
	c.OK("core", "core", "ping", nil)
	// The timer: a session whose media panics when stopped at its timeout.
	c.OK("media", "session", "start", map[string]any{"type": "park", "backend": "boom", "offer": map[string]any{"sdp": "ok"}, "wait_timeout": 0.2})
	peers.WaitFor(t, 5*time.Second, "the panicking session timed out", func() bool {
		s, _ := e.core.Counts()
		return s == 1
	})
	c.OK("media", "session", "info", map[string]any{"session_id": keep})
}

// panicBackend panics in StartMedia, unless the offer's sdp is "ok": then
// its media panics in Stop.
type panicBackend struct{}

func (panicBackend) StartMedia(_ context.Context, req signaling.MediaRequest) (signaling.Media, signaling.MediaResult, error) {
	if req.Offer.SDP() != "ok" {
		panic("backend exploded")
	}
	return panicMedia{}, signaling.MediaResult{}, nil
}

type panicMedia struct{}

func (panicMedia) SetAnswer(context.Context, signaling.Desc) (signaling.Desc, error) { return nil, nil }
func (panicMedia) Candidate(context.Context, signaling.Candidate) error              { return nil }
func (panicMedia) Update(context.Context, string, map[string]any) (map[string]any, error) {
	return nil, errors.New("no")
}
func (panicMedia) Stop(*signaling.Error) { panic("stop exploded") }
