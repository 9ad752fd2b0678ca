package signaling

import (
	"context"
	"reflect"
	"sync"
	"testing"
)

// recObserver records what the Core tells its Observer.
type recObserver struct {
	mu  sync.Mutex
	got []string
}

func (r *recObserver) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }
func (r *recObserver) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}
func (r *recObserver) SessionStarted(id, typ, backend string) {
	if id == "" {
		r.add("no id")
	}
	r.add("session+" + typ + "/" + backend)
}
func (r *recObserver) SessionStopped(id, typ string, code int) {
	if id == "" {
		r.add("no id")
	}
	r.add("session-" + typ + "/" + CodeName(code))
}
func (r *recObserver) CallStarted(typ string)  { r.add("call+" + typ) }
func (r *recObserver) CallAnswered(typ string) { r.add("answered " + typ) }
func (r *recObserver) CallEnded(typ, outcome string, code int) {
	r.add("call-" + typ + "/" + outcome + "/" + CodeName(code))
}

// The Observer hears of every session and call with its type and outcome,
// and Stats counts what is live by type and state.
func TestObserverAndStats(t *testing.T) {
	ro := &recObserver{}
	fb := &fakeBackend{stops: make(chan *Error, 4)}
	bs := NewBackends()
	bs.Register("fake", fb, TypeEcho)
	c := New(Options{Observer: ro, Backends: bs})
	defer c.Close()
	ctx := context.Background()
	bob := &fakeInvitee{}
	c.AddResolver("user", ResolverFunc(func(_ context.Context, d Destination) ([]Invitee, error) {
		if d.Callee == "bob" {
			return []Invitee{bob}, nil
		}
		return nil, nil
	}))
	check := func(want ...string) {
		t.Helper()
		if got := ro.take(); !reflect.DeepEqual(got, want) {
			t.Fatalf("observed %q, want %q", got, want)
		}
	}

	p2p, err := c.StartSession(ctx, SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "o"}})
	if err != nil {
		t.Fatal(err)
	}
	echo, err := c.StartSession(ctx, SessionRequest{Type: TypeEcho, Offer: Desc{"sdp": "o"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartSession(ctx, SessionRequest{Type: TypeMCU, Offer: Desc{"sdp": "o"}}); err == nil {
		t.Fatal("mcu without backend started")
	}
	check("session+p2p/", "session+echo/fake")
	st := c.Stats()
	if st.Sessions["p2p"]["wait"] != 1 || st.Sessions["echo"]["ready"] != 1 || len(st.Calls) != 0 || st.Draining {
		t.Fatalf("stats = %+v", st)
	}

	// Answered call: started, answered, ended as "answered"; the linked session stops.
	id, err := c.StartCall(ctx, CallRequest{Type: "user", Callee: "bob", SessionID: p2p.SessionID, Offer: Desc{"sdp": "o"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Calls["ringing"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	h, _ := bob.state()
	if err := h.Accepted(Desc{"sdp": "a"}, ""); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Calls["answered"] != 1 || st.Sessions["p2p"]["ready"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if err := c.HangupCall(id, nil); err != nil {
		t.Fatal(err)
	}
	check("call+user", "answered user", "call-user/answered/user_stop", "session-p2p/user_stop")

	// Rejected, unanswered (caller hangs up) and undeliverable calls.
	if _, err := c.StartCall(ctx, CallRequest{Type: "user", Callee: "bob"}); err != nil {
		t.Fatal(err)
	}
	h, _ = bob.state()
	h.Rejected(nil)
	id, _ = c.StartCall(ctx, CallRequest{Type: "user", Callee: "bob"})
	_ = c.HangupCall(id, Errorf(CodeOriginatorCancel, "bye"))
	_, _ = c.StartCall(ctx, CallRequest{Type: "sip", Callee: "nobody"})
	check("call+user", "call-user/rejected/call_rejected",
		"call+user", "call-user/cancelled/originator_cancel",
		"call+sip", "call-sip/no_destination/no_destination")

	c.Drain()
	if !c.Draining() || !c.Stats().Draining {
		t.Fatal("not draining")
	}
	_ = c.StopSession(echo.SessionID, nil)
	<-fb.stops
	check("session-echo/user_stop")
	if st := c.Stats(); len(st.Sessions) != 0 || len(st.Calls) != 0 {
		t.Fatalf("stats after = %+v", st)
	}
}
