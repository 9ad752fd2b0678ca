package vertogw

import (
	"context"
	"errors"
	"time"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/verto"
)

// Re-attach of calls placed TO a Verto client.
//
// The client's WebRTC leg is the far side of the caller's proxy session. The media engine keeps
// that leg through the page's loss (Detach) and re-offers it in place (ReattachOffer /
// ReattachAnswer), so the caller's session, and the call, carry on untouched.

// farLeg is what re-attaching a called client needs of the session whose far side it is
// (*embedded.Media).
type farLeg interface {
	DeferPeerClose(side media.Side, d time.Duration) error
	Detach(side media.Side, grace time.Duration) error
	ReattachOffer(ctx context.Context, side media.Side) (string, error)
	ReattachAnswer(ctx context.Context, side media.Side, sdp string) error
}

// farLegMedia is a Media whose sessions' far WebRTC legs can be re-attached in place.
type farLegMedia interface {
	farLeg(sessionID string) (farLeg, bool)
}

// recoverableOut is the events of a call placed to a Verto client whose media can keep its leg
// (verto.Recoverable). Whether this call's leg is kept is decided when the client answers
// (keepLeg); calls that cannot be kept end when the page goes, as without re-attach.
type recoverableOut struct{ outEvents }

var errNoLeg = errors.New("vertogw: the called client's media leg cannot be re-attached")

// keepLeg, after the client answered: when the caller's session holds the client's WebRTC leg
// as its far side, the call is kept across a page reload. The page's PeerConnection often
// closes before its socket's loss is noticed: such a close ends the session only after
// detachWait (and not at all once detached).
func (iv *invitee) keepLeg() {
	fm, ok := iv.g.media.(farLegMedia)
	if !ok {
		return
	}
	sid := iv.callerSession()
	if sid == "" {
		return
	}
	leg, ok := fm.farLeg(sid)
	if !ok { // e.g. the offer was adapted (aux session): the caller's far side is not the page
		iv.log.Info("verto call cannot be re-attached: the caller's session has no WebRTC far leg", "session_id", sid)
		return
	}
	if err := leg.DeferPeerClose(media.SideFar, detachWait); err != nil {
		iv.log.Info("verto call cannot be re-attached", "session_id", sid, "err", err)
		return
	}
	iv.mu.Lock()
	iv.legSID = sid
	iv.mu.Unlock()
}

// leg is the kept far leg of the call, if any.
func (iv *invitee) leg() (farLeg, string, bool) {
	iv.mu.Lock()
	sid := iv.legSID
	iv.mu.Unlock()
	fm, ok := iv.g.media.(farLegMedia)
	if sid == "" || !ok {
		return nil, sid, false
	}
	l, ok := fm.farLeg(sid)
	return l, sid, ok
}

// Detached: the page went. A kept leg waits for the re-attach; otherwise the call ends as it
// did without re-attach (NORMAL_CLEARING).
func (r recoverableOut) Detached() {
	iv := r.invitee
	l, sid, ok := iv.leg()
	var err error
	if ok {
		err = l.Detach(media.SideFar, iv.g.cfg.detachGrace())
	}
	if ok && err == nil {
		iv.log.Info("verto call detached, waiting for re-attach", "session_id", sid)
		return
	}
	if err == nil {
		err = errNoLeg
	}
	iv.log.Info("verto call ends with its page", "session_id", sid, "err", err)
	iv.mu.Lock()
	oc := iv.oc
	iv.legSID = ""
	iv.mu.Unlock()
	if oc != nil {
		oc.Cancel(verto.CauseNormalClearing)
	}
	r.outEvents.Hangup(verto.CauseNormalClearing)
}

// ReattachOffer: the engine's offer of a new WebRTC leg for the new page.
func (r recoverableOut) ReattachOffer(ctx context.Context) (string, error) {
	l, _, ok := r.invitee.leg()
	if !ok {
		return "", errNoLeg
	}
	return l.ReattachOffer(ctx, media.SideFar)
}

// Reattached: the new page's answer replaces the old leg; the hold state is restored.
func (r recoverableOut) Reattached(ctx context.Context, answerSDP string) error {
	iv := r.invitee
	l, sid, ok := iv.leg()
	if !ok {
		return errNoLeg
	}
	if err := l.ReattachAnswer(ctx, media.SideFar, answerSDP); err != nil {
		return err
	}
	iv.mu.Lock()
	held := iv.held
	iv.mu.Unlock()
	iv.g.setHold(ctx, sid, held, iv.log)
	iv.log.Info("verto call re-attached", "session_id", sid, "held", held)
	return nil
}
