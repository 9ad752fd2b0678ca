package signaling

import (
	"context"
	"strings"
	"sync"
	"testing"
)

// earlyObs records what a call's originator is told.
type earlyObs struct {
	mu       sync.Mutex
	ringing  []Desc
	answered Desc
	hangup   *Error
	done     chan struct{}
}

func newEarlyObs() *earlyObs { return &earlyObs{done: make(chan struct{})} }

func (o *earlyObs) CallRinging(_ string, a Desc) {
	o.mu.Lock()
	o.ringing = append(o.ringing, a)
	o.mu.Unlock()
}
func (o *earlyObs) CallAnswered(_ string, a Desc) {
	o.mu.Lock()
	o.answered = a
	o.mu.Unlock()
}
func (o *earlyObs) CallHangup(_ string, e *Error) {
	o.mu.Lock()
	o.hangup = e
	o.mu.Unlock()
	close(o.done)
}
func (o *earlyObs) rings() []Desc {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Desc(nil), o.ringing...)
}

// proxyBackend stands for a proxy session's media: its offer for the far side is of the
// caller's kind, and it turns the far side's answer into "client-<sdp>".
type proxyBackend struct{}

type proxyMedia struct{ fakeMedia }

func (proxyBackend) StartMedia(_ context.Context, req MediaRequest) (Media, MediaResult, error) {
	return &proxyMedia{}, MediaResult{Offer: Desc{"sdp": "far-" + req.Offer.SDP(), "sdp_type": req.Offer.SDPType()}}, nil
}

func (*proxyMedia) SetAnswer(_ context.Context, a Desc) (Desc, error) {
	return Desc{"sdp": "client-" + a.SDP(), "sdp_type": "webrtc"}, nil
}
func (*proxyMedia) Stop(*Error) {}

// earlyCall starts a call from a caller session of type session ("": none) to invs, with a
// recording observer and a sink on the call's and the session's events.
func earlyCall(t *testing.T, c *Core, offer Desc, session string, invs ...Invitee) (callID, sid string, o *earlyObs, ev *recSink) {
	t.Helper()
	c.AddResolver("user", ResolverFunc(func(context.Context, Destination) ([]Invitee, error) { return invs, nil }))
	c.Backends().Register("proxy", proxyBackend{}, TypeProxy)
	ev = &recSink{}
	if session != "" {
		res, err := c.StartSession(context.Background(), SessionRequest{Type: session, Offer: offer, Owner: "o1"})
		if err != nil {
			t.Fatal(err)
		}
		sid = res.SessionID
		c.Bus().Subscribe(ev, Subscription{Class: ClassMedia, Subclass: SubclassSession, Type: "*", ObjID: sid})
	}
	o = newEarlyObs()
	cl, err := c.NewCall(CallRequest{Type: "user", Callee: "bob", SessionID: sid, Offer: offer, Observer: o, Caller: CallerInfo{Owner: "o1"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Bus().Subscribe(ev, Subscription{Class: ClassMedia, Subclass: SubclassCall, Type: "*", ObjID: cl.ID()})
	cl.Start(context.Background())
	return cl.ID(), sid, o, ev
}

func eventsOf(evs []Event, typ string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func bodyAnswer(e Event) Desc {
	d, _ := e.Body["answer"].(Desc)
	return d
}

// TestEarlyMediaToCallerSession: an invitee's early answer is set on the caller's (proxy)
// session while the call rings (its answer event goes out then, not at the acceptance), the
// caller gets ringing {answer} with the session's answer; the acceptance by the same invitee
// does not set it again and carries the early answer with the final one's other fields.
func TestEarlyMediaToCallerSession(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	phone := &fakeInvitee{}
	callID, sid, o, ev := earlyCall(t, c, Desc{"sdp": "caller-offer", "sdp_type": "webrtc"}, TypeProxy, phone)
	h, _ := phone.state()
	if inv := phone.inv; inv.Offer.SDP() != "far-caller-offer" {
		t.Fatalf("invitation offer %v", inv.Offer)
	}
	h.Ringing(nil)
	h.Ringing(Desc{"sdp": "early", "sdp_type": "webrtc"})
	h.Ringing(Desc{"sdp": "early", "sdp_type": "webrtc"}) // a repeated 183: nothing new
	if info, _ := c.SessionInfo(sid); info["state"] != SessionReady || info["answer"].(Desc).SDP() != "client-early" {
		t.Fatalf("caller session while ringing: %v", info)
	}
	r := o.rings()
	if len(r) != 2 || len(r[0]) != 0 || r[1].SDP() != "client-early" {
		t.Fatalf("observer ringing %v, want a bare ringing then the session's early answer", r)
	}
	evs := ev.take()
	if a := eventsOf(evs, EventAnswer); len(a) != 1 || a[0].Subclass != SubclassSession || bodyAnswer(a[0]).SDP() != "client-early" {
		t.Fatalf("session answer events while ringing: %v", a)
	}
	if rg := eventsOf(evs, EventRinging); len(rg) != 2 || bodyAnswer(rg[1]).SDP() != "client-early" {
		t.Fatalf("ringing events %v", rg)
	}
	if err := h.Accepted(Desc{"sdp": "early", "sdp_type": "webrtc", "callee_name": "Bob"}, ""); err != nil {
		t.Fatal(err)
	}
	evs = ev.take()
	for _, e := range evs {
		if e.Subclass == SubclassSession && e.Type == EventAnswer {
			t.Errorf("the answer was set again on acceptance: %v", e)
		}
	}
	if acc := eventsOf(evs, EventAccepted); len(acc) != 1 || bodyAnswer(acc[0]).SDP() != "client-early" {
		t.Errorf("accepted events %v", acc)
	}
	o.mu.Lock()
	ans := o.answered
	o.mu.Unlock()
	if ans.SDP() != "client-early" || ans.String("callee_name") != "Bob" {
		t.Errorf("observer answer %v", ans)
	}
	_ = c.HangupCall(callID, nil)
	<-o.done
}

// TestEarlyMediaP2P: a caller session without media (p2p) is not answered by early media: the
// early answer passes as it is and the final answer (another one, say) is set.
func TestEarlyMediaP2P(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	phone := &fakeInvitee{}
	callID, sid, o, _ := earlyCall(t, c, Desc{"sdp": "A"}, TypeP2P, phone)
	h, _ := phone.state()
	h.Ringing(Desc{"sdp": "early"})
	if r := o.rings(); len(r) != 1 || r[0].SDP() != "early" {
		t.Fatalf("ringing %v", r)
	}
	if info, _ := c.SessionInfo(sid); info["answer"] != nil {
		t.Fatalf("p2p session answered by early media: %v", info)
	}
	if err := h.Accepted(Desc{"sdp": "final"}, ""); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.SessionInfo(sid); info["answer"].(Desc).SDP() != "final" {
		t.Fatalf("p2p session: %v", info)
	}
	_ = c.HangupCall(callID, nil)
	<-o.done
}

// TestEarlyMediaAdapted: an invitee rung with an adapted offer has its early answer taken by
// the adapter once (its result reaches the caller, through the caller's session when there is
// one) and its final answer is not finished again.
func TestEarlyMediaAdapted(t *testing.T) {
	for _, session := range []string{"", TypeProxy} {
		t.Run("caller session "+session, func(t *testing.T) {
			a := &recAdapter{released: map[string]int{}}
			c := New(Options{})
			defer c.Close()
			c.SetOfferAdapter(a)
			phone := newKindInvitee("rtp")
			callID, sid, o, ev := earlyCall(t, c, Desc{"sdp": "orig", "sdp_type": "webrtc"}, session, phone)
			h, _ := phone.state()
			h.Ringing(Desc{"sdp": "early-rtp", "sdp_type": "rtp"})
			want := "back-from-early-rtp"
			if session != "" {
				want = "client-" + want
				if info, _ := c.SessionInfo(sid); info["answer"].(Desc).SDP() != want {
					t.Fatalf("caller session: %v", info)
				}
			}
			r := o.rings()
			if len(r) != 1 || r[0].SDP() != want || r[0].SDPType() != "webrtc" {
				t.Fatalf("caller's ringing %v, want the adapted early answer %s", r, want)
			}
			ev.take()
			if err := h.Accepted(Desc{"sdp": "early-rtp", "sdp_type": "rtp"}, ""); err != nil {
				t.Fatal(err)
			}
			if _, fin := a.snapshot(); len(fin) != 1 {
				t.Errorf("finished %v, want once", fin)
			}
			o.mu.Lock()
			ans := o.answered
			o.mu.Unlock()
			if ans.SDP() != want {
				t.Errorf("caller's answer %v, want %s", ans, want)
			}
			_ = c.HangupCall(callID, nil)
			<-o.done
			if rel, _ := a.snapshot(); rel["rtp1"] != 1 {
				t.Errorf("released %v", rel)
			}
		})
	}
}

// TestEarlyMediaTwoInvitees: only the first invitee's early media reaches the caller; when
// another invitee answers, a caller session holding the first's answer cannot take it (the
// call ends with a clear 2016), and without a caller session the winner's answer passes.
func TestEarlyMediaTwoInvitees(t *testing.T) {
	for _, session := range []string{TypeProxy, ""} {
		t.Run("caller session "+session, func(t *testing.T) {
			c := New(Options{})
			defer c.Close()
			a, b := &fakeInvitee{name: "a"}, &fakeInvitee{name: "b"}
			callID, _, o, _ := earlyCall(t, c, Desc{"sdp": "offer", "sdp_type": "rtp"}, session, a, b)
			ha, _ := a.state()
			hb, _ := b.state()
			ha.Ringing(Desc{"sdp": "early-a", "sdp_type": "rtp"})
			hb.Ringing(Desc{"sdp": "early-b", "sdp_type": "rtp"})
			r := o.rings()
			if len(r) != 1 || !strings.HasSuffix(r[0].SDP(), "early-a") {
				t.Fatalf("ringing %v, want a's early answer only", r)
			}
			err := hb.Accepted(Desc{"sdp": "answer-b", "sdp_type": "rtp"}, "")
			if session != "" {
				if e := AsError(err); e == nil || e.Code != CodeAnswerAlreadySet {
					t.Fatalf("b's acceptance: %v, want 2016", err)
				}
				<-o.done
				if o.hangup.Code != CodeAnswerAlreadySet {
					t.Errorf("hangup %v", o.hangup)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o.mu.Lock()
			ans := o.answered
			o.mu.Unlock()
			if ans.SDP() != "answer-b" {
				t.Errorf("answer %v", ans)
			}
			_ = c.HangupCall(callID, nil)
			<-o.done
		})
	}
}

// TestEarlyMediaRefusedByAdapter: an early answer the adapter refuses is not passed on (the
// call rings on); the final answer is then finished as usual.
func TestEarlyMediaRefusedByAdapter(t *testing.T) {
	a := &recAdapter{released: map[string]int{}}
	c := New(Options{})
	defer c.Close()
	c.SetOfferAdapter(a)
	phone := newKindInvitee("rtp")
	callID, _, o, _ := earlyCall(t, c, Desc{"sdp": "orig", "sdp_type": "webrtc"}, "", phone)
	h, _ := phone.state()
	h.Ringing(Desc{"sdp": "garbage", "sdp_type": "rtp"})
	if r := o.rings(); len(r) != 1 || len(r[0]) != 0 {
		t.Fatalf("ringing %v, want one without an answer", r)
	}
	if err := h.Accepted(Desc{"sdp": "good", "sdp_type": "rtp"}, ""); err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	ans := o.answered
	o.mu.Unlock()
	if ans.SDP() != "back-from-good" {
		t.Errorf("answer %v", ans)
	}
	_ = c.HangupCall(callID, nil)
	<-o.done
}
