package signaling

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

type recorder struct {
	mu       sync.Mutex
	calls    []CallRecord
	states   []string
	sessions []SessionRecord
	answered []SessionRecord
}

func (r *recorder) SessionAnswered(s SessionRecord) {
	r.mu.Lock()
	r.answered = append(r.answered, s)
	r.mu.Unlock()
}

func (r *recorder) CallEvent(state string, c CallRecord) {
	r.mu.Lock()
	r.states = append(r.states, state)
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

func (r *recorder) SessionEnded(s SessionRecord) {
	r.mu.Lock()
	r.sessions = append(r.sessions, s)
	r.mu.Unlock()
}

func (r *recorder) ended(t *testing.T) CallRecord {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.states {
		if s == CallEnded {
			return r.calls[i]
		}
	}
	t.Fatalf("no ended call in %v", r.states)
	return CallRecord{}
}

// TestRecorderCallLife: the recorder gets ringing, answered and ended with times in order,
// the parties, the SIP data, who hung up, and each linked session's record with its call id.
func TestRecorderCallLife(t *testing.T) {
	rec := &recorder{}
	c := New(Options{Recorder: rec})
	defer c.Close()
	inv := &fakeInvitee{name: "bob"}
	c.AddResolver(CallTypeUser, ResolverFunc(func(context.Context, Destination) ([]Invitee, error) { return []Invitee{inv}, nil }))
	caller, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "o"}, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	callID, err := c.StartCall(context.Background(), CallRequest{Type: CallTypeUser, Callee: "bob", SessionID: caller.SessionID,
		Offer: Desc{"sdp": "o"}, Caller: CallerInfo{Name: "Alice", ID: "100", User: "alice", Owner: "conn-1"},
		Data: map[string]any{"sip_call_id": "abc@host", "sip_from": "<sip:100@host>", "secret": "x", "sip_n": 5}})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := inv.state()
	h.Ringing(nil)
	h.Ringing(nil) // a second 180: one ringing record
	callee, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "o2"}, Answer: Desc{"sdp": "a2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Accepted(Desc{"sdp": "a"}, callee.SessionID); err != nil {
		t.Fatal(err)
	}
	h.Hangup(Errorf(CodeSIPBye, "BYE"))

	rec.mu.Lock()
	states := append([]string(nil), rec.states...)
	rec.mu.Unlock()
	if len(states) != 3 || states[0] != CallRinging || states[1] != CallAnswered || states[2] != CallEnded {
		t.Fatalf("call events %v", states)
	}
	r := rec.ended(t)
	if r.ID != callID || r.Callee != "bob" || r.Caller != (CallerInfo{Name: "Alice", ID: "100", User: "alice"}) ||
		len(r.Data) != 2 || r.Data["sip_call_id"] != "abc@host" || r.Data["sip_from"] != "<sip:100@host>" {
		t.Fatalf("record %+v", r)
	}
	if r.Start.IsZero() || r.Ringing.Before(r.Start) || r.Answer.Before(r.Ringing) || r.End.Before(r.Answer) {
		t.Fatalf("times start %v ringing %v answer %v end %v", r.Start, r.Ringing, r.Answer, r.End)
	}
	if r.Code != CodeSIPBye || r.Outcome != OutcomeAnswered || r.HangupBy != HangupByCallee {
		t.Fatalf("end %d %s by %s", r.Code, r.Outcome, r.HangupBy)
	}
	if len(r.SessionIDs) != 2 || r.SessionIDs[0] != caller.SessionID || r.SessionIDs[1] != callee.SessionID {
		t.Fatalf("sessions %v", r.SessionIDs)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// the callee's session was answered at start, the caller's by the call's answer
	if len(rec.answered) != 2 || rec.answered[0].ID != callee.SessionID || rec.answered[1].ID != caller.SessionID ||
		rec.answered[1].CallID != callID || rec.answered[1].Answer.IsZero() {
		t.Fatalf("answered sessions %+v", rec.answered)
	}
	if len(rec.sessions) != 2 {
		t.Fatalf("session records %+v", rec.sessions)
	}
	for _, s := range rec.sessions {
		if s.CallID != callID || s.End.IsZero() || s.Answer.IsZero() {
			t.Fatalf("session record %+v", s)
		}
	}
}

func TestRecorderHangupBy(t *testing.T) {
	for _, tc := range []struct {
		name, by, outcome string
		end               func(c *Core, callID, callerSession string, h InviteHandle)
	}{
		{"ring timeout", HangupBySystem, OutcomeNoAnswer, func(*Core, string, string, InviteHandle) {}},
		{"caller cancels", HangupByCaller, OutcomeCancelled, func(c *Core, id, _ string, _ InviteHandle) { _ = c.HangupCall(id, nil) }},
		{"callee declines", HangupByCallee, OutcomeRejected, func(_ *Core, _, _ string, h InviteHandle) { h.Rejected(nil) }},
		{"caller session stops", HangupByCaller, OutcomeAnswered, func(c *Core, _, sid string, h InviteHandle) {
			_ = h.Accepted(Desc{"sdp": "a"}, "")
			_ = c.StopSession(sid, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := New(Options{Recorder: rec})
			defer c.Close()
			inv := &fakeInvitee{name: "bob"}
			c.AddResolver(CallTypeUser, ResolverFunc(func(context.Context, Destination) ([]Invitee, error) { return []Invitee{inv}, nil }))
			s, err := c.StartSession(context.Background(), SessionRequest{Type: TypeP2P, Offer: Desc{"sdp": "o"}})
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.StartCall(context.Background(), CallRequest{Type: CallTypeUser, Callee: "bob", SessionID: s.SessionID, RingTime: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := inv.state()
			tc.end(c, id, s.SessionID, h)
			peers.WaitFor(t, 5*time.Second, "the call ended", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				n := len(rec.states)
				return n > 0 && rec.states[n-1] == CallEnded
			})
			if r := rec.ended(t); r.HangupBy != tc.by || r.Outcome != tc.outcome {
				t.Fatalf("by %q outcome %q, want %q %q", r.HangupBy, r.Outcome, tc.by, tc.outcome)
			}
		})
	}
}
