package vertogw

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// resolveVerto serves call type "verto": the callee (user_id / callee, "@domain" ignored) is a
// Verto user; each of its logins rings.
func (g *Gateway) resolveVerto(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	user := userPart(dest.Callee)
	if user == "" {
		if s, ok := dest.Data["user_id"].(string); ok {
			user = userPart(s)
		}
	}
	if !validUser(user) {
		return nil, signaling.Errorf(signaling.CodeNoDestination, "No destination: invalid Verto user %q", dest.Callee)
	}
	invs := g.invitees(user, dest.Caller.Owner)
	if len(invs) == 0 {
		return nil, signaling.Errorf(signaling.CodeNoDestination, "No destination: Verto user %s is not logged in", user)
	}
	return invs, nil
}

// resolveUser contributes the Verto logins of a user to call type "user" (and to calls with no
// type); it returns nothing for users with no Verto login, so other resolvers decide.
func (g *Gateway) resolveUser(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	user := dest.Callee
	if user == "" {
		if s, ok := dest.Data["user"].(string); ok {
			user = s
		}
	}
	if !validUser(user) {
		return nil, nil
	}
	return g.invitees(user, dest.Caller.Owner), nil
}

// invitees makes one invitee per live Verto login of user, except the calling one.
func (g *Gateway) invitees(user, callerOwner string) []signaling.Invitee {
	srv := g.server()
	if srv == nil {
		return nil
	}
	var out []signaling.Invitee
	for _, sessid := range srv.Sessions(user) {
		if ownerKey(sessid) == callerOwner {
			continue
		}
		out = append(out, &invitee{g: g, srv: srv, user: user, sessid: sessid,
			log: g.log.With("verto_user", user, "sessid", sessid)})
	}
	return out
}

// invitee is one Verto login rung by the router.
type invitee struct {
	g      *Gateway
	srv    *verto.Server
	user   string
	sessid string
	log    *slog.Logger

	mu      sync.Mutex
	h       signaling.InviteHandle
	callID  string
	oc      *verto.OutboundCall
	slot    bool // holds one of the user's call slots
	dtmf    *dtmfQueue
	ctx     context.Context
	cancel  context.CancelFunc
	settled bool // the Verto side ended (answered call over, rejected)
	held    bool // the client put the call on hold
	// leg is the client's WebRTC leg, the far side of the caller's session, kept and
	// re-attached in place across a page reload (reattach.go).
	leg keptLeg
}

// Invite rings the login: server verto.invite with the caller id and the call's offer.
func (iv *invitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	sdp := inv.Offer.SDP()
	if sdp == "" {
		return signaling.Errorf(signaling.CodeMissingOffer, "Verto user %s needs an offer", iv.user)
	}
	if t := inv.Offer.SDPType(); t != "webrtc" {
		return signaling.Errorf(signaling.CodeInvalidParameters, "Verto user %s needs a WebRTC offer, not %q", iv.user, t)
	}
	if !iv.g.take(iv.user) {
		return signaling.Errorf(signaling.CodeInvalidOperation, "Too many calls for Verto user %s", iv.user)
	}
	iv.ctx, iv.cancel = context.WithCancel(context.Background())
	iv.mu.Lock()
	iv.h, iv.callID, iv.slot = h, inv.CallID, true
	iv.dtmf = newDTMFQueue(&iv.g.wg)
	iv.mu.Unlock()
	name, number := inv.Caller.Name, inv.Caller.ID
	if name == "" {
		name = inv.Offer.String("caller_name")
	}
	if number == "" {
		number = inv.Offer.String("caller_id")
	}
	if number == "" {
		number = inv.Caller.User
	}
	if name == "" {
		name = number
	}
	oc, err := iv.srv.Invite(iv.ctx, verto.OutboundRequest{
		User: iv.user, SessionID: iv.sessid, SDP: sdp,
		CallerIDName: name, CallerIDNumber: number,
		CalleeIDName: iv.user, CalleeIDNumber: iv.user,
	}, recoverableOut{outEvents{iv}})
	if err != nil {
		iv.done()
		if errors.Is(err, verto.ErrNotLoggedIn) {
			return signaling.Errorf(signaling.CodeNoDestination, "Verto user %s is not logged in", iv.user)
		}
		return signaling.AsError(err)
	}
	iv.mu.Lock()
	iv.oc = oc
	iv.mu.Unlock()
	iv.log.Info("verto login ringing", "call_id", inv.CallID, "verto_call", oc.ID())
	h.Ringing(nil)
	return nil
}

// done releases what the invitee holds, once.
func (iv *invitee) done() {
	iv.mu.Lock()
	slot := iv.slot
	iv.slot = false
	iv.settled = true
	iv.mu.Unlock()
	if iv.cancel != nil {
		iv.cancel()
	}
	if slot {
		iv.g.release(iv.user)
	}
}

// Hangup: the router ends this invitee's part (answered elsewhere, caller gone, ring timeout,
// end of the answered call).
func (iv *invitee) Hangup(err *signaling.Error) {
	if err == nil {
		err = signaling.Err(signaling.CodeUserStop)
	}
	iv.mu.Lock()
	oc := iv.oc
	iv.mu.Unlock()
	if oc != nil {
		cause := causeOf(err, signaling.CallTypeVerto)
		if oc.Call() == nil {
			switch err.Code {
			case signaling.CodeOriginatorCancel:
				if err.Text == "Answered elsewhere" {
					cause = verto.CauseLoseRace
				}
			case signaling.CodeNoAnswer:
				cause = verto.CauseNoAnswer
			default:
				cause = verto.CauseOriginatorCancel
			}
		}
		iv.log.Info("verto call cancelled by the router", "err", errText(err), "cause", cause.Name)
		oc.Cancel(cause)
	}
	iv.done()
}

// --- verto.OutboundEvents

// Answered: this login answered; it wins unless another invitee was first.
func (ev outEvents) Answered(call *verto.Call, sdp string) error {
	iv := ev.invitee
	iv.mu.Lock()
	h := iv.h
	iv.mu.Unlock()
	err := h.Accepted(signaling.Desc{"sdp": sdp, "sdp_type": "webrtc", "callee_name": iv.user, "callee_id": iv.user}, "")
	if err != nil {
		cause := causeOf(err, signaling.CallTypeVerto)
		iv.log.Info("verto answer not accepted", "err", errText(err), "cause", cause.Name)
		_ = call.Hangup(cause) // LOSE_RACE when someone else won
		iv.done()
		return err
	}
	iv.keepLeg()
	iv.log.Info("verto login answered", "call_id", iv.callID)
	return nil
}

// Rejected: the client declined (or its socket went) before answering.
func (ev outEvents) Rejected(cause verto.Cause) {
	iv := ev.invitee
	iv.mu.Lock()
	h := iv.h
	iv.mu.Unlock()
	iv.log.Info("verto login declined", "cause", cause.Name)
	h.Rejected(rejectError(cause))
	iv.done()
}

// outEvents receives the Verto side of an invitee's call (verto.OutboundEvents); it is a type
// of its own because Invitee.Hangup and CallEvents.Hangup differ.
type outEvents struct{ *invitee }

// Hangup: the client ended the answered call (verto.bye, or its socket went away).
func (ev outEvents) Hangup(cause verto.Cause) {
	iv := ev.invitee
	iv.mu.Lock()
	h := iv.h
	iv.mu.Unlock()
	iv.log.Info("verto login hung up", "cause", cause.Name)
	h.Hangup(byeError(cause))
	iv.done()
}

// callerSession is the session of the call's originator, whose far side this login is.
func (iv *invitee) callerSession() string {
	call, _ := iv.g.core.LookupCall(iv.callID)
	return call.SessionID
}

func (ev outEvents) DTMF(digits string) {
	iv := ev.invitee
	sid := iv.callerSession()
	if sid == "" {
		return
	}
	iv.mu.Lock()
	q, ctx := iv.dtmf, iv.ctx
	iv.mu.Unlock()
	if !q.run(ctx, func(ctx context.Context) { iv.g.sendDTMF(ctx, sid, signaling.SideCaller, digits, iv.log) }) {
		iv.log.Info("verto dtmf dropped: too many pending", "digits", digits)
	}
}

func (ev outEvents) Hold(held bool) {
	iv := ev.invitee
	iv.mu.Lock()
	iv.held = held
	iv.mu.Unlock()
	if sid := iv.callerSession(); sid != "" {
		iv.g.setHold(iv.ctx, sid, held, iv.log)
	}
}
