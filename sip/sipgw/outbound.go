package sipgw

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/registrar"
)

// outInvitee is one SIP leg a call rings: a SIP URL or a registered contact.
type outInvitee struct {
	g       *Gateway
	target  string
	binding *registrar.Binding

	mu        sync.Mutex
	cancel    context.CancelFunc
	call      *sip.Call
	ended     bool
	sessionID string
	callID    string
	events    *legEvents
	leg       *sipLeg // once answered
	movedAway bool    // the leg was transferred into another call
	h         signaling.InviteHandle
	log       *slog.Logger // with call_id, session_id and the target
}

func (o *outInvitee) dest() string {
	if o.binding != nil {
		return o.binding.Contact
	}
	return o.target
}

// Invite starts dialing and returns at once.
func (o *outInvitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	g := o.g
	sdp := inv.Offer.SDP()
	if sdp == "" {
		return signaling.Errorf(signaling.CodeMissingOffer, "A SIP call needs an SDP offer")
	}
	srv := g.server()
	if srv == nil {
		return signaling.Errorf(signaling.CodeSIPSendError, "SIP is not running")
	}
	call, _ := g.core.LookupCall(inv.CallID)
	sid := call.SessionID
	// With an adapted offer the leg is the far side of the adapter's media, not of the call's
	// session: its re-INVITEs and INFO digits go there. (Digits toward the phone by INFO are
	// still watched on the call's session, watchDTMF in run.)
	msid := sid
	if inv.MediaSession != "" {
		msid = inv.MediaSession
	}
	ctx, cancel := context.WithCancel(g.ctx)
	o.mu.Lock()
	o.cancel, o.sessionID, o.callID, o.h = cancel, sid, inv.CallID, h
	o.events = &legEvents{g: g, sessionID: msid, side: signaling.SideFar, onEnd: o.ended2}
	o.log = g.log.With("call_id", inv.CallID, "session_id", sid, "to", o.dest())
	o.mu.Unlock()
	fromUser := inv.Caller.ID
	if fromUser == "" || !isUserName(fromUser) {
		fromUser = inv.Caller.User
	}
	if !isUserName(fromUser) {
		fromUser = ""
	}
	opts := sip.DialOptions{
		Target: o.target, Binding: o.binding, Caller: inv.Caller.User,
		FromUser: fromUser, FromDisplay: displayName(inv.Caller.Name),
		Offer: []byte(sdp), Events: o.events,
		OnProgress: o.progress,
	}
	if !g.spawn(func() {
		defer cancel()
		o.run(ctx, opts)
	}) {
		cancel()
		return signaling.Errorf(signaling.CodeSIPSendError, "SIP is stopping")
	}
	return nil
}

func displayName(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' || c == 0x7f {
			return ""
		}
	}
	return s
}

func (o *outInvitee) run(ctx context.Context, opts sip.DialOptions) {
	g := o.g
	call, err := g.server().Dial(ctx, opts)
	o.mu.Lock()
	h, ended, log := o.h, o.ended, o.log
	o.mu.Unlock()
	if err != nil {
		if ended || ctx.Err() != nil {
			return // we were hung up (CANCEL went out)
		}
		var se *sip.StatusError
		switch {
		case errors.As(err, &se):
			log.Info("SIP call rejected", "code", se.Code, "reason", se.Reason)
			h.Rejected(statusError(se.Code, se.Reason))
		case errors.Is(err, sip.ErrNotPermitted), errors.Is(err, sip.ErrForbiddenTarget):
			h.Rejected(signaling.Errorf(signaling.CodeUnauthorized, "%v", err))
		default:
			log.Info("SIP call failed", "err", err)
			h.Rejected(signaling.Errorf(signaling.CodeSIPSendError, "SIP call failed: %v", err))
		}
		return
	}
	o.mu.Lock()
	if o.ended {
		o.mu.Unlock()
		hangup(call)
		return
	}
	o.call = call
	sid, callID := o.sessionID, o.callID
	o.mu.Unlock()
	log = log.With("sip_call_id", call.Info().CallID)
	log.Info("outbound SIP call answered")
	stopDTMF := g.watchDTMF(call, sid, signaling.SideFar)
	defer stopDTMF()
	// (After early media the router keeps the answer the caller has from the 183.)
	answer := signaling.Desc{"sdp": string(call.RemoteSDP()), "sdp_type": "rtp"}
	var user string
	if o.binding != nil {
		user = o.binding.AOR
	}
	l := newSIPLeg(g, call, user, callID, sid, signaling.SideFar, nil, log)
	defer g.untrackLeg(call, l)
	l.onMove = func() {
		o.mu.Lock()
		o.movedAway = true
		o.mu.Unlock()
	}
	_, _, _, _, moved := l.current()
	o.mu.Lock()
	o.leg = l
	ev := o.events
	o.mu.Unlock()
	ev.mu.Lock()
	ev.leg = l
	ev.mu.Unlock()
	if err := h.Accepted(answer, ""); err != nil {
		log.Info("SIP answer not taken", "err", err)
		hangup(call)
		return
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
	case <-moved:
	}
	select {
	case <-moved:
	default:
		if l.sipCall() == call {
			if ctx.Err() != nil {
				hangup(call)
			}
			g.untrackLeg(call, l)
			log.Info("outbound SIP call ended")
			return
		}
	}
	// Transferred, or another dialog took this place (Replaces): serveLeg follows it.
	stopDTMF()
	g.serveLeg(l)
}

// progress turns a 1xx into ringing; an SDP in it is the callee's early answer, which the
// router applies for the caller (signaling/early.go: through the adapter, on the caller's
// session) so that the caller hears the early media.
func (o *outInvitee) progress(p sip.Progress) {
	o.mu.Lock()
	h := o.h
	o.mu.Unlock()
	if len(p.SDP) == 0 {
		h.Ringing(nil)
		return
	}
	h.Ringing(signaling.Desc{"sdp": string(p.SDP), "sdp_type": "rtp"})
}

// ended2 is told when the answered SIP leg ends.
func (o *outInvitee) ended2(e sip.End) {
	o.mu.Lock()
	h, out := o.h, o.ended
	o.mu.Unlock()
	if out || h == nil {
		return
	}
	h.Hangup(sipEndError(e))
}

// Hangup takes the leg out of the call: CANCEL before the answer, BYE after.
func (o *outInvitee) Hangup(_ *signaling.Error) {
	o.mu.Lock()
	if o.ended || o.movedAway {
		o.mu.Unlock()
		return
	}
	l := o.leg
	o.mu.Unlock()
	if l != nil && (l.isReleased() || l.holdForTransfer()) {
		return // gone elsewhere, or the transfer under way decides (a failure hangs the leg up)
	}
	o.mu.Lock()
	o.ended = true
	cancel := o.cancel
	o.mu.Unlock()
	if l != nil {
		l.endPosition()
	}
	// run sends CANCEL (Dial's context) or BYE (after the answer).
	if cancel != nil {
		cancel()
	}
}

func hangup(c *sip.Call) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Hangup(ctx)
}
