package vertogw

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/verto"
)

// Re-attach after a page reload (verto.attach).
//
// A Verto client's WebRTC leg is one side of a session: the caller side of the session its own
// call started (echo, or the proxy of a routed call), or the far side of the caller's proxy
// session for a call placed to it. The session's media keeps that leg through the page's loss
// and re-offers it in place (signaling.Reattacher), so the session, the call and the other
// party carry on untouched: the page's PeerConnection closing is tolerated for detachWait
// (the socket's loss is often noticed later), Detached detaches the leg for
// Config.DetachGrace, verto.attach carries the media's new offer, and the new page's answer
// replaces the old leg, restoring the hold state.

// detachWait is how long a close of the page's PeerConnection waits for the Verto socket's loss
// before it ends the session.
const detachWait = 3 * time.Second

var errNoLeg = errors.New("vertogw: the client's media leg cannot be re-attached")

// keptLeg is the Verto client's WebRTC leg of a call, once it is known to be re-attachable.
type keptLeg struct {
	mu   sync.Mutex
	sid  string // "" while (or when) the leg is not kept
	side signaling.Side
}

// keep makes side of session sid the kept leg when its media can re-attach it; a close of the
// page's PeerConnection then ends the session only after detachWait.
func (k *keptLeg) keep(core *signaling.Core, sid string, side signaling.Side) error {
	r, err := signaling.MediaAs[signaling.Reattacher](core, sid)
	if err == nil {
		err = r.CanReattach(side)
	}
	if err == nil {
		err = r.DeferPeerClose(side, detachWait)
	}
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.sid, k.side = sid, side
	k.mu.Unlock()
	return nil
}

// get returns the kept leg's session, its re-attacher and side.
func (k *keptLeg) get(core *signaling.Core) (signaling.Reattacher, string, signaling.Side, error) {
	k.mu.Lock()
	sid, side := k.sid, k.side
	k.mu.Unlock()
	if sid == "" {
		return nil, "", side, errNoLeg
	}
	r, err := signaling.MediaAs[signaling.Reattacher](core, sid)
	return r, sid, side, err
}

// drop forgets the leg (the call ends with its page).
func (k *keptLeg) drop() {
	k.mu.Lock()
	k.sid = ""
	k.mu.Unlock()
}

// detach: the page went; the leg waits for the re-attach for grace.
func (k *keptLeg) detach(core *signaling.Core, grace time.Duration) (string, error) {
	r, sid, side, err := k.get(core)
	if err == nil {
		err = r.Detach(side, grace)
	}
	return sid, err
}

// offer is the media's offer of a new leg for the new page.
func (k *keptLeg) offer(ctx context.Context, core *signaling.Core) (string, error) {
	r, _, side, err := k.get(core)
	if err != nil {
		return "", err
	}
	return r.ReattachOffer(ctx, side)
}

// answer applies the new page's answer: its leg replaces the old one.
func (k *keptLeg) answer(ctx context.Context, core *signaling.Core, sdp string) (string, error) {
	r, sid, side, err := k.get(core)
	if err != nil {
		return sid, err
	}
	return sid, r.ReattachAnswer(ctx, side, sdp)
}

// recoverableInbound is the events of a call a Verto client placed (verto.Recoverable). Whether
// its leg is kept is decided once its session has started (keptLeg.keep); calls that cannot be
// kept end when the page goes.
type recoverableInbound struct{ *inbound }

// Detached: the page went. A kept leg waits for the re-attach; otherwise the call ends
// (NORMAL_CLEARING, as without re-attach).
func (r recoverableInbound) Detached() {
	ib := r.inbound
	sid, err := ib.leg.detach(ib.g.core, ib.g.cfg.detachGrace())
	if err == nil {
		ib.log.Info("verto call detached, waiting for re-attach", "session_id", sid)
		return
	}
	ib.log.Info("verto call ends with its page", "session_id", sid, "err", err)
	ib.leg.drop()
	_ = ib.call.Hangup(verto.CauseNormalClearing)
	ib.Hangup(verto.CauseNormalClearing)
}

// ReattachOffer: the media's offer of a new WebRTC leg for the new page.
func (r recoverableInbound) ReattachOffer(ctx context.Context) (string, error) {
	return r.leg.offer(ctx, r.g.core)
}

// Reattached: the new page's answer replaces the old leg; the hold state is restored.
func (r recoverableInbound) Reattached(ctx context.Context, answerSDP string) error {
	ib := r.inbound
	ib.mu.Lock()
	held := ib.held
	ib.mu.Unlock()
	return ib.g.reattached(ctx, &ib.leg, answerSDP, held, ib.log)
}

// reattached applies a new page's answer to the kept leg k and restores the call's hold state.
func (g *Gateway) reattached(ctx context.Context, k *keptLeg, answerSDP string, held bool, log *slog.Logger) error {
	sid, err := k.answer(ctx, g.core, answerSDP)
	if err != nil {
		return err
	}
	g.setHold(ctx, sid, held, log)
	log.Info("verto call re-attached", "session_id", sid, "held", held)
	return nil
}

// recoverableOut is the events of a call placed to a Verto client (verto.Recoverable). Whether
// its leg is kept is decided when the client answers (keepLeg); calls that cannot be kept end
// when the page goes, as without re-attach.
type recoverableOut struct{ outEvents }

// keepLeg, after the client answered: when the caller's session holds the client's WebRTC leg
// as its far side, the call is kept across a page reload.
func (iv *invitee) keepLeg() {
	sid := iv.callerSession()
	if sid == "" {
		return
	}
	// e.g. the offer was adapted (aux session): the caller's far side is not the page.
	if err := iv.leg.keep(iv.g.core, sid, signaling.SideFar); err != nil {
		iv.log.Info("verto call cannot be re-attached", "session_id", sid, "err", err)
	}
}

// Detached: the page went. A kept leg waits for the re-attach; otherwise the call ends as it
// did without re-attach (NORMAL_CLEARING).
func (r recoverableOut) Detached() {
	iv := r.invitee
	sid, err := iv.leg.detach(iv.g.core, iv.g.cfg.detachGrace())
	if err == nil {
		iv.log.Info("verto call detached, waiting for re-attach", "session_id", sid)
		return
	}
	iv.log.Info("verto call ends with its page", "session_id", sid, "err", err)
	iv.leg.drop()
	iv.mu.Lock()
	oc := iv.oc
	iv.mu.Unlock()
	if oc != nil {
		oc.Cancel(verto.CauseNormalClearing)
	}
	r.outEvents.Hangup(verto.CauseNormalClearing)
}

// ReattachOffer: the media's offer of a new WebRTC leg for the new page.
func (r recoverableOut) ReattachOffer(ctx context.Context) (string, error) {
	return r.leg.offer(ctx, r.g.core)
}

// Reattached: the new page's answer replaces the old leg; the hold state is restored.
func (r recoverableOut) Reattached(ctx context.Context, answerSDP string) error {
	iv := r.invitee
	iv.mu.Lock()
	held := iv.held
	iv.mu.Unlock()
	return iv.g.reattached(ctx, &iv.leg, answerSDP, held, iv.log)
}
