package sipgw

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
)

// REFER from a SIP party (sip.ReferHandler): the party is the transferor, the other party of
// its call is moved to the Refer-To target by signaling.Core.TransferCall. The target is
// routed like an inbound Request-URI when it names nkbridge (a user, sip-/verto- prefixes),
// else it is a SIP URL; either way with the REFERing party's permissions: a target it may not
// call is refused 403 before anything starts. Progress goes back as NOTIFY: 100 Trying, then
// 200 OK once the other party is in the new call (before the BYE that releases the
// transferor) or the failure's SIP status (the call goes on).

// referTimeout bounds a REFER's transfer (ring time and re-INVITE included).
const referTimeout = 3 * time.Minute

// Refer takes a REFER on the leg (sip.ReferHandler).
func (l *legEvents) Refer(_ *sip.Call, r sip.Refer) error {
	g := l.g
	l.mu.Lock()
	leg := l.leg
	l.mu.Unlock()
	if leg == nil {
		return &sip.ReferError{Code: 403, Reason: "the call is not answered"}
	}
	var into any
	var dest signaling.Destination
	if rp := r.Target.Replaces; rp != nil {
		// Attended: the other party joins the REFERing party's other call, the one Replaces
		// names, which must be that party's own (same address, same digest user).
		d := g.server().FindDialog(rp.CallID, rp.ToTag, rp.FromTag)
		var p *sipLeg
		if d != nil {
			p = g.legOf(d)
		}
		if p == nil || d == leg.sipCall() {
			return &sip.ReferError{Code: 488, Reason: "Replaces names no other answered call"}
		}
		ci, di := leg.sipCall().Info(), d.Info()
		if hostOf(ci.Source) != hostOf(di.Source) || !strings.EqualFold(ci.AuthUser, di.AuthUser) {
			return &sip.ReferError{Code: 403, Reason: "Replaces names a call that is not yours"}
		}
		into = p
	} else if rt, ok := g.extensionTarget(r.Target); ok {
		into = rt
	} else {
		var err error
		if dest, err = g.referDest(r.Target, leg.user); err != nil {
			return err
		}
	}
	callID, _, side, _, _ := leg.current()
	by := signaling.PartyCaller
	if side == signaling.SideFar {
		by = signaling.PartyCallee
	}
	if err := g.core.Transferable(callID, by); err != nil {
		e := signaling.AsError(err)
		code := 488
		if e.Code == signaling.CodeCallNotFound {
			code = 481
		}
		return &sip.ReferError{Code: code, Reason: oneLine(e.Text)}
	}
	log := leg.log.With("refer_to", r.Target.URI, "referred_by", r.ReferredBy)
	if !g.spawn(func() {
		ctx, cancel := context.WithTimeout(g.ctx, referTimeout)
		defer cancel()
		var err error
		if into != nil {
			_, err = g.core.TransferInto(ctx, callID, by, into, func() { r.Notify(200, "OK") })
		} else {
			_, err = g.core.TransferCall(ctx, callID, by, dest, func() { r.Notify(200, "OK") })
		}
		if err != nil {
			code, reason := sipStatus(signaling.AsError(err))
			log.Info("REFER failed", "err", err, "sip", code)
			r.Notify(code, reason)
		}
	}) {
		return &sip.ReferError{Code: 503, Reason: "SIP gateway stopping"}
	}
	return nil
}

// extensionTarget reports whether a Refer-To names one of nkbridge's extensions (echo, park,
// conf-<room>): a session the other party is moved into, not a call.
func (g *Gateway) extensionTarget(t sip.ReferTarget) (Route, bool) {
	if !g.isLocalHost(t.Host) {
		return Route{}, false
	}
	rt, err := g.router.Route(t.User)
	return rt, err == nil && rt.SessionType != ""
}

// referDest is the destination of a Refer-To: the route of its user when it names nkbridge,
// else the SIP URL, which user must be allowed to call (403 otherwise).
func (g *Gateway) referDest(t sip.ReferTarget, user string) (signaling.Destination, error) {
	var dest signaling.Destination
	if g.isLocalHost(t.Host) {
		rt, err := g.router.Route(t.User)
		if err != nil {
			return dest, &sip.ReferError{Code: 404, Reason: "no route for the Refer-To user"}
		}
		dest = signaling.Destination{Type: rt.CallType, Callee: rt.Callee}
	} else {
		dest = signaling.Destination{Type: signaling.CallTypeSIP, Callee: t.URI}
	}
	if dest.Type == signaling.CallTypeSIP {
		if user == "" {
			return dest, &sip.ReferError{Code: 403, Reason: "only authenticated SIP users may transfer to SIP URLs"}
		}
		if _, err := g.server().Authorize(user, dest.Callee); err != nil {
			reason := "user " + user + " may not call " + dest.Callee
			if errors.Is(err, sip.ErrForbiddenTarget) {
				reason = "SIP domain not allowed: " + dest.Callee
			}
			return dest, &sip.ReferError{Code: 403, Reason: reason}
		}
	}
	dest.Caller = signaling.CallerInfo{User: user}
	if err := signaling.CheckTransferTarget(dest); err != nil {
		return dest, &sip.ReferError{Code: 400, Reason: signaling.AsError(err).Text}
	}
	return dest, nil
}
