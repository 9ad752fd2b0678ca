package esl_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge/esl"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// A slow FreeSWITCH: the command times out cleanly, the late reply is consumed, and the
// next command on the same connection gets its own answer.
func TestSlowCommandTimesOut(t *testing.T) {
	s := startFake(t)
	s.HandleAPI("slow", func(string) string { return "+OK slow result\n" })
	s.Delay("api slow", 300*time.Millisecond)
	c := dial(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.API(ctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow api: %v, want deadline exceeded", err)
	}
	out, err := c.API(ctx5(t), "status")
	if err != nil || out == "+OK slow result\n" {
		t.Fatalf("next command got %q %v (late reply misattributed?)", out, err)
	}
	if c.Err() != nil {
		t.Fatalf("connection closed: %v", c.Err())
	}
	// bgapi timing out while its reply is slow behaves the same.
	s.Delay("bgapi slow", 300*time.Millisecond)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.BgAPI(ctx2, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow bgapi: %v", err)
	}
	s.ClearDelays()
	if out, err := c.BgAPI(ctx5(t), "slow"); err != nil || out != "+OK slow result\n" {
		t.Fatalf("bgapi after timeout: %q %v", out, err)
	}
}

// A wedged FreeSWITCH (never answers): after StallTimeout the connection is recycled.
func TestStalledConnectionRecycled(t *testing.T) {
	s := startFake(t)
	s.Delay("api hang", -1)
	c := dial(t, s, func(o *esl.Options) { o.StallTimeout = 100 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.API(ctx, "hang"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("stalled connection not recycled")
	}
	if !errors.Is(c.Err(), esl.ErrStalled) {
		t.Fatalf("reason %v", c.Err())
	}
}

// reconciles records Reconcile calls.
type reconciles struct {
	mu    sync.Mutex
	calls []esl.Reconciliation
	ch    chan struct{}
}

func (r *reconciles) hook(_ context.Context, rec esl.Reconciliation) {
	r.mu.Lock()
	r.calls = append(r.calls, rec)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *reconciles) waitN(t *testing.T, n int) esl.Reconciliation {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.calls) >= n {
			rec := r.calls[n-1]
			r.mu.Unlock()
			return rec
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("reconcile #%d not called", n)
		}
	}
}

func runClient(t *testing.T, s *fakefs.Server, rec *reconciles, evs *events, mod func(*esl.ClientOptions)) *esl.Client {
	t.Helper()
	o := esl.ClientOptions{
		Addr:       s.Addr(),
		Conn:       esl.Options{Password: password, Logger: logger(t)},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Reconcile: rec.hook,
		OnEvent:   evs.on,
	}
	if mod != nil {
		mod(&o)
	}
	cl, err := esl.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return cl
}

func uuids(chans []esl.Channel) map[string]bool {
	m := map[string]bool{}
	for _, c := range chans {
		m[c.UUID] = true
	}
	return m
}

// The connection drops mid-call and FreeSWITCH restarts listening later: the client
// reconnects with backoff, re-subscribes, and reconciles with the channels that are live
// now (one hung up while we were away, one new).
func TestClientReconnectReconciles(t *testing.T) {
	s := startFake(t)
	a, _ := s.InboundCall(fakefs.ChannelSpec{SIPHeaders: map[string]string{fakefs.SessionHeader: "sess-a"}})
	rec := &reconciles{ch: make(chan struct{}, 1)}
	evs := newEvents()
	var dials atomic.Int32
	cl := runClient(t, s, rec, evs, func(o *esl.ClientOptions) {
		o.Conn.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	})
	first := rec.waitN(t, 1)
	if first.Reason != esl.ReasonConnect || !uuids(first.Channels)[a.UUID] || len(first.Channels) != 1 {
		t.Fatalf("first reconcile %+v", first)
	}
	if err := esl.TransferEcho(ctx5(t), cl, a.UUID); err != nil {
		t.Fatal(err)
	}

	// FreeSWITCH goes away mid-call.
	s.StopListening()
	before := dials.Load()
	peers.WaitFor(t, 5*time.Second, "the client retrying", func() bool { return dials.Load() >= before+2 })
	// Commands while disconnected fail cleanly after their own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := cl.API(ctx, "status")
	cancel()
	if !errors.Is(err, esl.ErrNotConnected) {
		t.Fatalf("api while down: %v", err)
	}
	s.Hangup(a.UUID, "NORMAL_CLEARING") // nobody listening: the event is missed
	b, _ := s.InboundCall(fakefs.ChannelSpec{SIPHeaders: map[string]string{fakefs.SessionHeader: "sess-b"}})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	second := rec.waitN(t, 2)
	if second.Reason != esl.ReasonReconnect || len(second.Channels) != 1 || second.Channels[0].UUID != b.UUID {
		t.Fatalf("reconcile after reconnect %+v", second)
	}
	if second.Channels[0].Application != "park" {
		t.Fatalf("channel state %+v", second.Channels[0])
	}
	// Re-subscribed: events flow again on the new connection.
	if err := esl.UUIDKill(ctx5(t), cl, b.UUID, ""); err != nil {
		t.Fatal(err)
	}
	evs.wait(t, "hangup after reconnect", named("CHANNEL_HANGUP_COMPLETE", b.UUID))

	// An abrupt drop (no notice) and a disconnect notice both lead to reconnection.
	s.DropConnections()
	rec.waitN(t, 3)
	s.Disconnect(fakefs.ShutdownText)
	if r := rec.waitN(t, 4); r.Reason != esl.ReasonReconnect || len(r.Channels) != 0 {
		t.Fatalf("reconcile 4 %+v", r)
	}
	if _, err := cl.API(ctx5(t), "status"); err != nil {
		t.Fatal(err)
	}
}

// While FreeSWITCH rejects us (ACL) or answers -ERR to the subscription, the client keeps
// retrying and recovers once it is fixed.
func TestClientRetriesRejections(t *testing.T) {
	s := startFake(t)
	s.SetRude(true)
	s.FailCommand("event", "-ERR no keywords supplied")
	rec := &reconciles{ch: make(chan struct{}, 1)}
	cl := runClient(t, s, rec, newEvents(), nil)
	time.Sleep(100 * time.Millisecond) // the subject: a window in which it must not connect
	if cl.Connected() {
		t.Fatal("connected through a rude rejection")
	}
	s.SetRude(false)
	if _, err := s.WaitCommand(ctx5(t), "event json"); err != nil {
		t.Fatal(err)
	}
	if cl.Connected() {
		t.Fatal("connected although the subscription failed")
	}
	s.FailCommand("event", "")
	if r := rec.waitN(t, 1); r.Reason != esl.ReasonConnect {
		t.Fatalf("reconcile %+v", r)
	}
}

func TestBackoff(t *testing.T) {
	cl, err := esl.NewClient(esl.ClientOptions{Addr: "127.0.0.1:1", MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for attempt, full := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		full *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := cl.Backoff(attempt); d < full/2 || d > full {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
	if cl.Backoff(1000) > time.Second {
		t.Fatal("backoff overflow")
	}
}

// An event flood with a slow consumer: the reader keeps reading (commands still answered),
// memory stays bounded by the queue (excess events are dropped and counted), nothing
// deadlocks, and the loss is reported exactly once per drained burst.
func TestEventFlood(t *testing.T) {
	s := startFake(t)
	const n = 20000
	var got, lost atomic.Uint64
	release := make(chan struct{})
	c := dial(t, s, func(o *esl.Options) {
		o.EventQueue = 64
		o.OnEvent = func(ev *esl.Event) {
			if ev.Subclass() == "fakefs::flood" {
				<-release // a stuck consumer
				got.Add(1)
			}
		}
		o.OnEventsLost = func(k uint64) { lost.Add(k) }
	})
	if err := c.Subscribe(ctx5(t), esl.FormatPlain, "CUSTOM", "fakefs::flood"); err != nil {
		t.Fatal(err)
	}
	s.Flood(n)
	// The consumer is stuck, yet the reader keeps serving replies.
	for i := 0; i < 5; i++ {
		if _, err := c.API(ctx5(t), "status"); err != nil {
			t.Fatalf("api during flood: %v", err)
		}
	}
	peers.WaitFor(t, 10*time.Second, "the flood dropped", func() bool { return c.DroppedEvents() >= n-65 })
	close(release)
	peers.WaitFor(t, 10*time.Second, "every event delivered or counted lost", func() bool { return got.Load()+lost.Load() >= n })
	if got.Load()+lost.Load() != n || lost.Load() != c.DroppedEvents() || lost.Load() == 0 {
		t.Fatalf("got %d + lost %d != %d (dropped %d)", got.Load(), lost.Load(), n, c.DroppedEvents())
	}
	if got.Load() > 64+1 {
		t.Fatalf("queue not bounded: %d events delivered while the consumer was stuck", got.Load())
	}
	if c.Err() != nil {
		t.Fatalf("connection died: %v", c.Err())
	}
}

// Event loss on a Client triggers a reconcile with ReasonEventsLost.
func TestClientEventLossReconciles(t *testing.T) {
	s := startFake(t)
	rec := &reconciles{ch: make(chan struct{}, 1)}
	block := make(chan struct{})
	var once sync.Once
	evs := newEvents()
	runClient(t, s, rec, evs, func(o *esl.ClientOptions) {
		o.Conn.EventQueue = 8
		o.Events = []string{"CUSTOM", "fakefs::flood"}
		o.OnEvent = func(*esl.Event) { once.Do(func() { <-block }) }
	})
	rec.waitN(t, 1)
	s.Flood(500)
	close(block)
	if r := rec.waitN(t, 2); r.Reason != esl.ReasonEventsLost {
		t.Fatalf("reconcile %+v", r)
	}
}

// The fake, like FreeSWITCH, kills a listener that does not read its events.
func TestFakeKillsSlowListener(t *testing.T) {
	s, err := fakefs.Start(fakefs.Options{Password: password, EventQueue: 10, MaxLostEvents: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dial(t, s, nil)
	if err := c.Subscribe(ctx5(t), esl.FormatPlain, "CUSTOM", "fakefs::flood"); err != nil {
		t.Fatal(err)
	}
	// Stall the listener's writer with a hanging command, then flood.
	s.Delay("api hang", -1)
	go c.API(context.Background(), "hang")
	if _, err := s.WaitCommand(ctx5(t), "api hang"); err != nil {
		t.Fatal(err)
	}
	s.Flood(100)
	s.Release()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("listener not killed")
	}
	var de *esl.DisconnectError
	if !errors.As(c.Err(), &de) || de.Notice != fakefs.LostEventsText {
		t.Fatalf("reason %v", c.Err())
	}
}

// A FreeSWITCH that goes silent (no heartbeats, no replies) is detected by the idle timeout.
func TestIdleTimeout(t *testing.T) {
	s := startFake(t)
	c := dial(t, s, func(o *esl.Options) { o.IdleTimeout = 800 * time.Millisecond })
	if err := c.Subscribe(ctx5(t), esl.FormatJSON, "HEARTBEAT"); err != nil {
		t.Fatal(err)
	}
	// Heartbeats keep it alive well past the timeout.
	for i := 0; i < 10; i++ {
		s.Fire("HEARTBEAT", "", []fakefs.Header{{Name: "Up-Time", Value: "0 years, 0 days"}}, "")
		time.Sleep(100 * time.Millisecond) // the subject: heartbeats spread past the timeout
	}
	if c.Err() != nil {
		t.Fatalf("closed despite heartbeats: %v", c.Err())
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("silent FreeSWITCH not detected")
	}
	if !errors.Is(c.Err(), esl.ErrIdle) {
		t.Fatalf("reason %v", c.Err())
	}
}
