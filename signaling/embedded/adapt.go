package embedded

import (
	"context"

	"github.com/google/uuid"

	"github.com/nkbridge/nkbridge/signaling"
)

// Adapter implements signaling.OfferAdapter on the embedded engine: an
// invitee that wants another media kind than the call's offer gets the far
// offer of an auxiliary proxy session whose caller leg takes the call's
// offer; the invitee's answer goes to that session, whose caller-side answer
// becomes the call's. The aux sessions count among the Backend's sessions
// and are closed by release (or by Backend.Close).
//
// The Backend must run on an engine of its own, not the one serving the
// sessions whose offers it adapts: an engine's WebRTC legs share one UDP mux
// port and cannot reach each other (ICE between two legs of one engine
// fails), while two engines on one host connect over their two ports.
type Adapter struct{ b *Backend }

// NewAdapter returns the offer adapter of b.
func NewAdapter(b *Backend) *Adapter { return &Adapter{b: b} }

// AuxPrefix starts the ids of the Backend's auxiliary sessions.
const AuxPrefix = "adapt-"

// Adapt implements signaling.OfferAdapter.
func (a *Adapter) Adapt(ctx context.Context, callID string, offer signaling.Desc, want string) (signaling.Desc, func(context.Context, signaling.Desc) (signaling.Desc, error), func(), error) {
	adapted, _, finish, release, err := a.AdaptMedia(ctx, callID, offer, want)
	return adapted, finish, release, err
}

// AdaptMedia implements signaling.MediaAdapter: the media returned is the aux
// proxy session's, whose far side is the invitee's leg.
func (a *Adapter) AdaptMedia(ctx context.Context, callID string, offer signaling.Desc, want string) (signaling.Desc, signaling.Media, func(context.Context, signaling.Desc) (signaling.Desc, error), func(), error) {
	if _, err := kindOf(want, "invitee media kind"); err != nil {
		return nil, nil, nil, nil, err
	}
	id := AuxPrefix + uuid.NewString()
	sm, res, err := a.b.StartMedia(ctx, signaling.MediaRequest{
		SessionID: id, Type: signaling.TypeProxy, Offer: offer,
		Options: map[string]any{"proxy_type": want},
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	m := sm.(*Media)
	m.log.Info("embedded: offer adapted", "call_id", callID, "from", m.callerKind, "to", want)
	adapted := withSDP(offer, res.Offer)
	finish := func(ctx context.Context, answer signaling.Desc) (signaling.Desc, error) {
		if t := answer.String("sdp_type"); t != "" && t != want {
			return nil, signaling.Errorf(signaling.CodeInvalidParameters, "Invalid field: answer.sdp_type (the offer was %q, the answer is %q)", want, t)
		}
		out, err := m.SetAnswer(ctx, answer)
		if err != nil {
			return nil, err
		}
		return withSDP(answer, out), nil
	}
	release := func() { m.Stop(nil) }
	return adapted, m, finish, release, nil
}

// withSDP is base (its caller/callee names, ...) with the sdp and sdp_type of d.
func withSDP(base, d signaling.Desc) signaling.Desc {
	out := base.Clone()
	if out == nil {
		out = signaling.Desc{}
	}
	out["sdp"], out["sdp_type"] = d.SDP(), d.SDPType()
	return out
}
