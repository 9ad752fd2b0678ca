package vertogw

import (
	"context"
	"net/netip"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// EmbeddedMedia is the Media of sessions served by the embedded media engine registered in
// backends (found at each use, so the order of wiring does not matter). Sessions it does not
// serve answer ErrNoMedia.
func EmbeddedMedia(backends *signaling.Backends) RelayMedia { return embeddedMedia{backends} }

type embeddedMedia struct{ backends *signaling.Backends }

// RTPAddr is the engine's advertised plain-RTP address (invalid without an engine).
func (m embeddedMedia) RTPAddr() netip.Addr {
	b, ok := embedded.FromBackends(m.backends)
	if !ok {
		return netip.Addr{}
	}
	return b.Engine().AdvertisedIP()
}

func (m embeddedMedia) SendDTMF(ctx context.Context, sessionID string, toCaller bool, digits string) error {
	b, ok := embedded.FromBackends(m.backends)
	if !ok {
		return ErrNoMedia
	}
	em, ok := b.Media(sessionID)
	if !ok || em.Session() == nil {
		return ErrNoMedia
	}
	side := media.SideFar
	if toCaller {
		side = media.SideCaller
	}
	return em.SendDTMF(ctx, side, digits, 0)
}

// farLeg is the embedded media of sessionID when it is a proxy whose far side is a WebRTC leg
// (the leg of a Verto client called through that session, which can be re-attached in place).
func (m embeddedMedia) farLeg(sessionID string) (farLeg, bool) {
	b, ok := embedded.FromBackends(m.backends)
	if !ok {
		return nil, false
	}
	em, ok := b.Media(sessionID)
	if !ok || em.Session() == nil || em.Type() != signaling.TypeProxy || em.FarKind() != media.KindWebRTC {
		return nil, false
	}
	return em, true
}
