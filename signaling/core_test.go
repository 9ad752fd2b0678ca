package signaling

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

type fakeBackend struct{ stops chan *Error }

type fakeMedia struct {
	b   *fakeBackend
	rep MediaReporter
}

func (b *fakeBackend) StartMedia(_ context.Context, req MediaRequest) (Media, MediaResult, error) {
	return &fakeMedia{b: b, rep: req.Reporter}, MediaResult{Answer: Desc{"sdp": "ans"}, RoomID: "r1"}, nil
}
func (m *fakeMedia) SetAnswer(context.Context, Desc) (Desc, error) { return nil, nil }
func (m *fakeMedia) Update(context.Context, string, map[string]any) (map[string]any, error) {
	return map[string]any{"room_id": "r2"}, nil
}
func (m *fakeMedia) Candidate(context.Context, Candidate) error { return nil }
func (m *fakeMedia) Stop(err *Error)                            { m.b.stops <- err }

func TestBackendsLookup(t *testing.T) {
	r := NewBackends()
	a, b := &fakeBackend{}, &fakeBackend{}
	r.Register("media", a, TypeEcho, TypePark, TypeMCU)
	r.Register("freeswitch", b, TypePark, TypeMCU)
	check := func(typ, forced, wantName string, wantCode int) {
		t.Helper()
		name, _, err := r.Lookup(typ, forced)
		if wantCode != 0 {
			if AsError(err) == nil || AsError(err).Code != wantCode {
				t.Errorf("Lookup(%s,%s) err = %v, want %d", typ, forced, err, wantCode)
			}
			return
		}
		if err != nil || name != wantName {
			t.Errorf("Lookup(%s,%s) = %s, %v; want %s", typ, forced, name, err, wantName)
		}
	}
	check(TypePark, "", "media", 0) // first registered
	r.SetDefault(TypePark, "freeswitch")
	check(TypePark, "", "freeswitch", 0) // configured default
	check(TypePark, "media", "media", 0) // forced
	check(TypeEcho, "freeswitch", "", CodeNoMediaserver)
	check(TypeProxy, "", "", CodeNoMediaserver)  // known type, nobody serves it
	check("foo", "", "", CodeUnknownSessionType) // unknown type
	check("foo", "media", "", CodeUnknownSessionType)
	check(TypeEcho, "janus", "", CodeNoMediaserver)
	r.SetDefault(TypeMCU, "janus")
	check(TypeMCU, "", "", CodeNoMediaserver)
}

// parkCore is a Core whose park sessions go to b.
func parkCore(b Backend) *Core {
	bs := NewBackends()
	bs.Register("fake", b, TypePark)
	return New(Options{Backends: bs})
}

// A backend reporting that the media died stops the session with its code.
func TestMediaReporterStops(t *testing.T) {
	fb := &fakeBackend{stops: make(chan *Error, 4)}
	c := parkCore(fb)
	defer c.Close()
	sink := &recSink{}
	res, err := c.StartSession(context.Background(), SessionRequest{Type: TypePark, Offer: Desc{"sdp": "x"}})
	if err != nil || res.RoomID != "r1" || res.Answer.SDP() != "ans" {
		t.Fatalf("start = %+v, %v", res, err)
	}
	c.Bus().Subscribe(sink, Subscription{Class: "media", Subclass: "session", ObjID: res.SessionID})
	if _, err := c.UpdateSession(context.Background(), res.SessionID, "session_type", map[string]any{"session_type": "mcu"}); err != nil {
		t.Fatal(err)
	}
	if ev := sink.take(); len(ev) != 1 || ev[0].Type != "updated_type" || ev[0].Body["type"] != "mcu" || ev[0].Body["room_id"] != "r2" {
		t.Fatalf("updated_type = %+v", ev)
	}
	m := c.sessions[res.SessionID].media.(*fakeMedia)
	m.rep.Event("info", map[string]any{"info": "hello"})
	m.rep.Stopped(Errorf(CodeFSChannelStop, "channel gone"))
	select {
	case e := <-fb.stops:
		if e.Code != CodeFSChannelStop {
			t.Fatalf("Stop(%v)", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("media not stopped")
	}
	var evs []Event
	peers.Poll(2*time.Second, func() bool { evs = append(evs, sink.take()...); return len(evs) >= 2 }) // checked below
	if len(evs) != 2 || evs[0].Type != "info" || evs[1].Type != "stop" || evs[1].Body["code"] != CodeFSChannelStop {
		t.Fatalf("events = %+v", evs)
	}
}

// Go-level front end use: a SIP-like originator creates a session and a
// call with an observer; two resolvers contribute invitees for "user"
// (as the API and the SIP registrar will); first acceptance wins.
type obs struct {
	mu      sync.Mutex
	ringing int
	answer  Desc
	hangup  *Error
	done    chan struct{}
}

func (o *obs) CallRinging(string, Desc) { o.mu.Lock(); o.ringing++; o.mu.Unlock() }
func (o *obs) CallAnswered(_ string, a Desc) {
	o.mu.Lock()
	o.answer = a
	o.mu.Unlock()
}
func (o *obs) CallHangup(_ string, e *Error) { o.mu.Lock(); o.hangup = e; o.mu.Unlock(); close(o.done) }

type fakeInvitee struct {
	name   string
	mu     sync.Mutex
	h      InviteHandle
	inv    Invitation
	hungup *Error
}

func (f *fakeInvitee) Invite(_ context.Context, inv Invitation, h InviteHandle) error {
	f.mu.Lock()
	f.h, f.inv = h, inv
	f.mu.Unlock()
	return nil
}
func (f *fakeInvitee) Hangup(e *Error) { f.mu.Lock(); f.hungup = e; f.mu.Unlock() }
func (f *fakeInvitee) state() (InviteHandle, *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h, f.hungup
}

func TestRouterGoFrontEnd(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	apiInv := &fakeInvitee{name: "api"}
	sipInv := &fakeInvitee{name: "sip"}
	c.AddResolver("user", ResolverFunc(func(_ context.Context, d Destination) ([]Invitee, error) {
		if d.Callee == "bob" {
			return []Invitee{apiInv}, nil
		}
		return nil, nil
	}))
	c.AddResolver("user", ResolverFunc(func(_ context.Context, d Destination) ([]Invitee, error) {
		if d.Callee == "bob" {
			return []Invitee{sipInv}, nil
		}
		return nil, nil
	}))
	res, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "sip-offer"}, Owner: "sip:dialog-1"})
	if err != nil {
		t.Fatal(err)
	}
	o := &obs{done: make(chan struct{})}
	callID, err := c.StartCall(context.Background(), CallRequest{Type: "user", Callee: "bob", SessionID: res.SessionID,
		Offer: Desc{"sdp": "sip-offer"}, Caller: CallerInfo{Name: "Trunk", Owner: "sip:dialog-1"}, Observer: o})
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := apiInv.state()
	h2, _ := sipInv.state()
	if h1 == nil || h2 == nil {
		t.Fatal("both resolvers' invitees must be invited")
	}
	if apiInv.inv.CallID != callID || apiInv.inv.Offer.SDP() != "sip-offer" || apiInv.inv.Caller.Name != "Trunk" {
		t.Fatalf("invitation = %+v", apiInv.inv)
	}
	h2.Ringing(nil)
	if m, ok := c.LookupCall(callID); !ok || m != (CallMeta{ID: callID, Type: CallTypeUser, Callee: "bob", State: CallRinging, SessionID: res.SessionID}) {
		t.Fatalf("LookupCall while ringing = %+v, %v", m, ok)
	}
	if err := h2.Accepted(Desc{"sdp": "phone-answer"}, ""); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.LookupCall(callID); m.State != CallAnswered {
		t.Fatalf("LookupCall after the answer = %+v", m)
	}
	if m, _ := c.LookupSession(res.SessionID); m.State != SessionReady {
		t.Fatalf("LookupSession after the answer = %+v", m)
	}
	if err := h1.Accepted(Desc{"sdp": "late"}, ""); AsError(err).Code != CodeAlreadyAnswered {
		t.Fatalf("late accept = %v", err)
	}
	if _, e := apiInv.state(); e == nil || e.Code != CodeOriginatorCancel {
		t.Fatalf("loser hangup = %v", e)
	}
	o.mu.Lock()
	if o.ringing != 1 || o.answer.SDP() != "phone-answer" {
		t.Fatalf("observer = %+v", o)
	}
	o.mu.Unlock()
	// The originator's session stopping (e.g. SIP BYE) hangs up the call.
	if err := c.StopSession(res.SessionID, Errorf(CodeSIPBye, "BYE")); err != nil {
		t.Fatal(err)
	}
	<-o.done
	if _, e := sipInv.state(); e == nil || e.Code != CodeSIPBye {
		t.Fatalf("winner hangup = %v", e)
	}
	if len(c.ListCalls())+len(c.ListSessions()) != 0 {
		t.Fatal("leftovers")
	}
	if _, ok := c.LookupCall(callID); ok {
		t.Fatal("LookupCall finds an ended call")
	}
}

// StopOwned and Close stop everything; the ring timer and wait timer fire.
func TestOwnedAndTimers(t *testing.T) {
	c := New(Options{WaitTimeout: 100 * time.Millisecond, RingTime: 150 * time.Millisecond})
	inv := &fakeInvitee{}
	c.AddResolver("user", ResolverFunc(func(context.Context, Destination) ([]Invitee, error) { return []Invitee{inv}, nil }))
	o := &obs{done: make(chan struct{})}
	if _, err := c.StartCall(context.Background(), CallRequest{Type: "user", Callee: "x", Observer: o}); err != nil {
		t.Fatal(err)
	}
	<-o.done
	if o.hangup.Code != CodeNoAnswer {
		t.Fatalf("ring timeout = %v", o.hangup)
	}
	if _, e := inv.state(); e == nil || e.Code != CodeNoAnswer {
		t.Fatalf("invitee = %v", e)
	}
	r, _ := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "x"}})
	peers.Poll(2*time.Second, func() bool { return len(c.ListSessions()) == 0 }) // checked below
	if _, ok := c.LookupSession(r.SessionID); ok {
		t.Fatal("wait timeout did not fire")
	}
	for range 3 {
		if _, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "x"}, Owner: "o1"}); err != nil {
			t.Fatal(err)
		}
	}
	c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "x"}, Owner: "o2"})
	c.StopOwned("o1", Err(CodeRegisteredDown))
	if n := len(c.ListSessions()); n != 1 {
		t.Fatalf("%d sessions after StopOwned", n)
	}
	c.Close()
	if n := len(c.ListSessions()); n != 0 {
		t.Fatalf("%d sessions after Close", n)
	}
	if _, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "x"}}); err == nil {
		t.Fatal("start after Close")
	}
}

// reportingMedia is media that dies by itself: report makes it report
// Stopped from its own goroutine, as the backends do (a media timeout, a
// hangup), here once Core.Close has begun stopping sessions.
type reportingMedia struct {
	rep      MediaReporter
	b        *reportingBackend
	reported sync.WaitGroup
}

func (m *reportingMedia) SetAnswer(context.Context, Desc) (Desc, error) { return nil, nil }
func (m *reportingMedia) Update(context.Context, string, map[string]any) (map[string]any, error) {
	return nil, nil
}
func (m *reportingMedia) Candidate(context.Context, Candidate) error { return nil }
func (m *reportingMedia) Stop(*Error) {
	m.b.closing.Do(func() { close(m.b.start) })
	runtime.Gosched() // a stop takes a moment: reports overlap the rest of Close
}
func (m *reportingMedia) report(start <-chan struct{}) {
	m.reported.Add(1)
	go func() {
		defer m.reported.Done()
		<-start
		m.rep.Stopped(Errorf(CodeFSChannelStop, "channel gone"))
	}()
}

type reportingBackend struct {
	mu      sync.Mutex
	media   []*reportingMedia
	start   chan struct{} // closed by the first Stop
	closing sync.Once
}

func (b *reportingBackend) StartMedia(_ context.Context, req MediaRequest) (Media, MediaResult, error) {
	m := &reportingMedia{rep: req.Reporter, b: b}
	b.mu.Lock()
	b.media = append(b.media, m)
	b.mu.Unlock()
	return m, MediaResult{Answer: Desc{"sdp": "ans"}}, nil
}

// Media reporting Stopped while Core.Close stops it (and after Close has
// returned) neither races with Close's wait for pending work (run with
// -race) nor leaves a goroutine behind (goleak in TestMain).
func TestStoppedDuringClose(t *testing.T) {
	for round := 0; round < 500; round++ {
		b := &reportingBackend{start: make(chan struct{})}
		c := parkCore(b)
		for i := 0; i < 8; i++ {
			if _, err := c.StartSession(context.Background(), SessionRequest{Type: TypePark, Offer: Desc{"sdp": "x"}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range b.media {
			m.report(b.start)
		}
		c.Close()
		for _, m := range b.media {
			m.reported.Wait()
			// A late report, after Close returned, is a no-op.
			m.rep.Stopped(Errorf(CodeFSChannelStop, "late"))
		}
		if s, calls := c.Counts(); s != 0 || calls != 0 {
			t.Fatalf("after Close: %d sessions, %d calls", s, calls)
		}
	}
}

// A backend reporting twice (the engine's media timeout, then FreeSWITCH's
// hangup that the timeout's BYE caused) stops the session with the first
// reason, although each report stops it on its own goroutine.
func TestFirstStoppedWins(t *testing.T) {
	fb := &fakeBackend{stops: make(chan *Error, 4)}
	c := parkCore(fb)
	defer c.Close()
	for round := 0; round < 100; round++ {
		res, err := c.StartSession(context.Background(), SessionRequest{Type: TypePark, Offer: Desc{"sdp": "x"}})
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		m := c.sessions[res.SessionID].media.(*fakeMedia)
		c.mu.Unlock()
		m.rep.Stopped(Errorf(CodeSessionTimeout, "Media stopped: timeout"))
		m.rep.Stopped(Errorf(CodeFSChannelStop, "channel gone"))
		select {
		case e := <-fb.stops:
			if e.Code != CodeSessionTimeout {
				t.Fatalf("round %d: stopped with %v, want the first report (%d)", round, e, CodeSessionTimeout)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("media not stopped")
		}
	}
}
