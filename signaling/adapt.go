package signaling

import (
	"context"

	"github.com/google/uuid"
)

// MediaKinder is optionally implemented by an Invitee that can only use
// offers of one media kind: "webrtc" (a browser, a Verto login) or "rtp" (a
// SIP device). When a call's offer is of another kind and the Core has an
// OfferAdapter, the invitee is rung with an adapted offer instead. Invitees
// that do not implement it, or return "", get the call's offer as is.
type MediaKinder interface {
	MediaKind() string
}

// OfferAdapter turns a call's offer into one of another media kind for one
// invitee (the embedded engine does it with an auxiliary proxy session).
type OfferAdapter interface {
	// Adapt returns an offer of kind want for the invitee. When that invitee
	// accepts, finish takes its answer (of kind want) and returns the answer
	// for the call's offer (of the offer's kind). release frees what Adapt
	// took; the router calls it exactly once, when the invitee is out of the
	// call or the call ends (after finish, if finish was called). On error
	// nothing is held and the invitee gets the call's offer as is.
	Adapt(ctx context.Context, callID string, offer Desc, want string) (adapted Desc, finish func(ctx context.Context, answer Desc) (Desc, error), release func(), err error)
}

// MediaAdapter is optionally implemented by an OfferAdapter whose adaptation
// is a media session of its own (the embedded engine's aux proxy session):
// AdaptMedia is Adapt that also returns that session's media, whose SideFar
// is the invitee's leg. The Core names it to the invitee
// (Invitation.MediaSession) so that the invitee's in-dialog requests (a SIP
// phone's re-INVITEs, its INFO digits) reach that leg, not the call's session.
type MediaAdapter interface {
	AdaptMedia(ctx context.Context, callID string, offer Desc, want string) (adapted Desc, m Media, finish func(ctx context.Context, answer Desc) (Desc, error), release func(), err error)
}

// SetOfferAdapter registers the adapter used for invitees whose MediaKind
// differs from the call's offer; nil (the default) falls back to the one
// registered on the Backends, if any. Without an adapter every invitee gets
// the offer as is.
func (c *Core) SetOfferAdapter(a OfferAdapter) {
	c.mu.Lock()
	c.adapter = a
	c.mu.Unlock()
}

// adaptedFor is the invitation for iv: the call's, or one with an adapted
// offer when iv wants another kind and an adapter is registered (when the
// adapter fails, the call's offer, as without an adapter).
func (c *Core) adaptedFor(ctx context.Context, iv *invitation, inv Invitation) Invitation {
	k, ok := iv.inv.(MediaKinder)
	if !ok || inv.Offer.SDP() == "" {
		return inv
	}
	want := k.MediaKind()
	if want == "" || want == inv.Offer.SDPType() {
		return inv
	}
	c.mu.Lock()
	a := c.adapter
	c.mu.Unlock()
	if a == nil {
		a = c.backends.OfferAdapter()
	}
	if a == nil {
		return inv
	}
	owner, limit := iv.call.req.Caller.Owner, iv.call.req.MaxOwned
	if !c.takeAux(owner, limit) {
		iv.call.log.Warn("offer not adapted for invitee: the caller owns too many sessions", "max", limit)
		return inv
	}
	var adapted Desc
	var m Media
	var finish func(context.Context, Desc) (Desc, error)
	var release func()
	var err error
	if ma, ok := a.(MediaAdapter); ok {
		adapted, m, finish, release, err = ma.AdaptMedia(ctx, inv.CallID, inv.Offer, want)
	} else {
		adapted, finish, release, err = a.Adapt(ctx, inv.CallID, inv.Offer, want)
	}
	if err != nil { // no worse than without an adapter: the invitee gets the offer as is
		c.dropAux(owner)
		iv.call.log.Warn("offer not adapted for invitee", "from", inv.Offer.SDPType(), "to", want, "err", err)
		return inv
	}
	if owner != "" {
		inner := release
		release = func() {
			inner()
			c.dropAux(owner)
		}
	}
	if m != nil { // the invitee's leg is m's far side, under an id of its own (SessionMedia)
		id := auxPrefix + uuid.NewString()
		c.mu.Lock()
		if c.auxMedia == nil {
			c.auxMedia = make(map[string]Media)
		}
		c.auxMedia[id] = m
		c.mu.Unlock()
		inner := release
		release = func() {
			c.mu.Lock()
			delete(c.auxMedia, id)
			c.mu.Unlock()
			inner()
		}
		inv.MediaSession = id
	}
	c.mu.Lock()
	iv.finish, iv.release = finish, release // Start releases it if the call ended meanwhile
	c.mu.Unlock()
	iv.call.log.Info("offer adapted for invitee", "from", inv.Offer.SDPType(), "to", want)
	inv.Offer = adapted
	return inv
}

// auxPrefix starts the ids under which SessionMedia finds the media of
// adapted invitees' legs (never a session's id, never told to API clients).
const auxPrefix = "adapted-leg-"

// takeAux counts one auxiliary (adaptation) session of owner among its
// sessions, unless that passes limit (> 0).
func (c *Core) takeAux(owner string, limit int) bool {
	if owner == "" {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && len(c.byOwner[owner])+c.aux[owner] >= limit {
		return false
	}
	c.aux[owner]++
	return true
}

func (c *Core) dropAux(owner string) {
	if owner == "" {
		return
	}
	c.mu.Lock()
	if c.aux[owner]--; c.aux[owner] <= 0 {
		delete(c.aux, owner)
	}
	c.mu.Unlock()
}

// takeReleaseLocked returns the invitation's release func, once (call with c.mu held).
func (iv *invitation) takeReleaseLocked() func() {
	r := iv.release
	iv.release = nil
	return r
}

func runAll(fs []func()) {
	for _, f := range fs {
		if f != nil {
			f()
		}
	}
}

// SetOfferAdapter registers the media side's offer adapter (the embedded
// engine registers one next to its backend); a Core uses it unless it has
// its own (Core.SetOfferAdapter).
func (r *Backends) SetOfferAdapter(a OfferAdapter) {
	r.mu.Lock()
	r.adapter = a
	r.mu.Unlock()
}

// OfferAdapter returns the registered offer adapter, or nil.
func (r *Backends) OfferAdapter() OfferAdapter {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.adapter
}
