package signaling

import (
	"context"
	"sync"
	"time"
)

// Early media through the router.
//
// An invitee that reports Ringing with an answer (a SIP callee's 183 with SDP, an API callee's
// ringing {answer}, a Verto callee's verto.media) offers early media. The router makes it
// reach the caller as the caller can use it:
//
//   - an invitee rung with an adapted offer (adapt.go) has its early answer applied to the
//     auxiliary session first (the adapter's finish), which yields an answer of the caller's
//     kind;
//   - when the call has a linked caller session with media (proxy, ...), that answer is set on
//     it (as set_answer: the session's media starts flowing and its answer event goes out) and
//     the session's answer for its client becomes the early answer (a session without media,
//     p2p, gets the final answer as before: the early one only passes);
//   - the result goes to the caller in media/call/ringing {answer} and CallObserver.CallRinging
//     (the SIP gateway sends it in a 183, the Verto gateway as verto.media).
//
// Only one invitee's early media reaches the caller: the first to offer it. When that invitee
// then accepts, its final answer is not applied again (the caller already has it: a SIP 200
// repeats its 183's SDP; one that does not is logged and the early answer kept); the caller's
// accepted/answer events carry the early answer. When another invitee accepts instead, the
// caller's session already holds the first one's answer: the call ends with 2016 (a linked
// caller session takes one answer); without a caller session the winner's answer passes as
// usual.

// earlyTimeout bounds the application of an early answer (the adapter's finish and the
// caller session's set_answer).
const earlyTimeout = 10 * time.Second

// earlyState is a call's early media (guarded by the Core's mu, except mu).
type earlyState struct {
	// mu serialises the application of early answers and of the final answer, so that
	// Accepted sees a complete early application (held without Core.mu; Core.mu may be
	// taken inside it).
	mu     sync.Mutex
	by     *invitation // whose early answer reached the caller
	answer Desc        // the answer the caller got for it
	raw    string      // the invitee's early SDP
	// onSession: it was set on the caller's session (one with media), which takes no other
	onSession bool
}

// applyEarly applies iv's early answer for the caller and returns what the caller gets (nil:
// nothing, the ringing goes on without an answer).
func (c *Core) applyEarly(iv *invitation, answer Desc) Desc {
	if answer.SDP() == "" {
		return nil
	}
	call := iv.call
	call.early.mu.Lock()
	defer call.early.mu.Unlock()
	c.mu.Lock()
	live := call.state == callRinging && !iv.done
	by, finish, finished := call.early.by, iv.finish, iv.earlyFinished
	callerSession := call.req.SessionID
	c.mu.Unlock()
	switch {
	case !live:
		return nil
	case by == iv: // repeated (a 183 again): the caller has it
		return nil
	case by != nil:
		call.log.Info("early media of a second invitee not passed on (the caller has another's)")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), earlyTimeout)
	defer cancel()
	out := answer
	if finish != nil {
		if finished == nil {
			got, err := finish(ctx, answer)
			if err != nil {
				e := AsError(err)
				call.log.Info("early answer to an adapted offer refused", "code", e.Code, "reason", e.Text)
				return nil
			}
			c.mu.Lock()
			iv.earlyFinished = got
			c.mu.Unlock()
			finished = got
		}
		out = finished
	}
	if _, err := c.SessionMedia(callerSession); err != nil {
		callerSession = "" // none, or without media (p2p): the answer passes as it is, the final one is set
	}
	if callerSession != "" {
		got, err := c.SetAnswer(ctx, callerSession, out)
		if err != nil {
			e := AsError(err)
			call.log.Info("early answer not applied to the caller's session", "code", e.Code, "reason", e.Text)
			return nil
		}
		out = got
	}
	c.mu.Lock()
	call.early.by, call.early.answer, call.early.onSession = iv, out, callerSession != ""
	call.early.raw = answer.SDP()
	c.mu.Unlock()
	call.log.Info("early media passed to the caller", "adapted", finish != nil, "caller_session", callerSession != "")
	return out
}

// earlyFor returns, once any early application in flight is over (final: iv's final answer), the answer to the call's
// offer that iv's early answer produced through its adapter (nil: none), and the answer the
// caller's session got from iv's early media (nil: none); other says the caller's session got
// another invitee's.
func (c *Core) earlyFor(iv *invitation, final Desc) (finished, caller Desc, other bool) {
	call := iv.call
	call.early.mu.Lock()
	defer call.early.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	finished = iv.earlyFinished
	switch call.early.by {
	case nil:
	case iv:
		if !call.early.onSession {
			break
		}
		caller = call.early.answer
		if sdp := final.SDP(); sdp != "" && sdp != call.early.raw {
			call.log.Info("final answer differs from the early one: the caller keeps the early one")
		}
	default:
		other = call.early.onSession
	}
	return finished, caller, other
}

// earlyWith is the early answer with the other fields (callee_name, callee_id, ...) of the
// final one.
func earlyWith(early, final Desc) Desc {
	out := early.Clone()
	for k, v := range final {
		if k != "sdp" && k != "sdp_type" {
			out[k] = v
		}
	}
	return out
}
