package signaling

import (
	"context"
	"time"
)

// Capabilities: what some backends' media can do besides the Media interface.
//
// A front end never looks for a concrete backend. It asks the core for a session's media as
// the capability it needs:
//
//	d, err := signaling.MediaAs[signaling.DTMFSender](core, sessionID)
//	if err != nil { ... } // 1062 no such session, 1006 no media or the backend cannot do it
//	err = d.SendDTMF(ctx, signaling.SideFar, "123", 0)
//
// A backend offers a capability by implementing its interface on the Media that StartMedia
// returned.

// Side names one leg of a session's media: SideCaller is the party whose offer started the
// session, SideFar the far side of a proxy session (a backend's own far end, FreeSWITCH's
// channel say, is SideFar too).
type Side int

// Sides of a session.
const (
	SideCaller Side = 0
	SideFar    Side = 1
)

// Other is the opposite side.
func (s Side) Other() Side {
	if s == SideFar {
		return SideCaller
	}
	return SideFar
}

// String is "caller" or "far" (the side of a media/session/info dtmf event).
func (s Side) String() string {
	if s == SideFar {
		return "far"
	}
	return "caller"
}

// DTMFSender plays digits as RFC 4733 events toward one side of a session.
type DTMFSender interface {
	// SendDTMF plays digits (0-9, *, #, A-D) toward side to, each durMS ms (0: the backend's
	// default); it returns once they are sent.
	SendDTMF(ctx context.Context, to Side, digits string, durMS int) error
}

// DTMFObserver reports the RFC 4733 digits a session's media receives.
type DTMFObserver interface {
	// OnDTMF registers f for every digit received from either side (called from a media
	// goroutine: f must not block). The returned func unregisters it.
	OnDTMF(f func(from Side, digit rune)) (cancel func())
}

// RTPReofferer applies an SDP re-offer (a SIP re-INVITE or UPDATE: hold, resume, a new
// address) from the plain-RTP peer of one side.
type RTPReofferer interface {
	// ReofferRTP returns the SDP answer; a sendonly, inactive or 0.0.0.0 offer puts the
	// session on hold (no media timeout), a sendrecv one resumes it.
	ReofferRTP(side Side, sdp string) (answer string, err error)
}

// Holder holds or resumes a session for a party that signals hold outside SDP (Verto's
// verto.modify): while held the caller's audio does not reach the other side and no media
// timeout runs.
type Holder interface {
	Hold(ctx context.Context, held bool) error
}

// Reattacher keeps a session through the loss of a WebRTC peer's PeerConnection (a Verto page
// reload) and gives the side a new WebRTC leg in place, the rest of the session (the far side,
// the echo, the room) carrying on untouched.
type Reattacher interface {
	// CanReattach says whether side is a WebRTC leg that can be detached and re-attached
	// (nil) or why not.
	CanReattach(side Side) error
	// DeferPeerClose makes a close or ICE/DTLS failure of side's peer end the session only
	// after d, and not at all if Detach comes meanwhile (signalling often learns of a page
	// reload after the media does).
	DeferPeerClose(side Side, d time.Duration) error
	// Detach keeps the session for up to grace without side's peer: no media timeout, no
	// stop on its failure. When grace runs out first the session stops.
	Detach(side Side, grace time.Duration) error
	// ReattachOffer builds a new WebRTC leg for side and returns its SDP offer (complete
	// candidates) for the peer's new PeerConnection.
	ReattachOffer(ctx context.Context, side Side) (offer string, err error)
	// ReattachAnswer applies the peer's answer: the new leg replaces the old one and side is
	// attached again. On error the session is left as it was.
	ReattachAnswer(ctx context.Context, side Side, sdp string) error
}

// SessionMedia returns the media of live session id, to be asserted to the capability
// interfaces of this package (or use MediaAs). Errors: 1062 when there is no such session,
// 1006 when the session has no media (p2p).
func (c *Core) SessionMedia(id string) (Media, error) {
	c.mu.Lock()
	s, ok := c.sessions[id]
	var m Media
	var typ string
	if ok && !s.stopped {
		m, typ = s.media, s.typ
	} else if am, aok := c.auxMedia[id]; aok && !ok { // an adapted invitee's leg (adapt.go)
		m, typ, ok = am, TypeProxy, true
	}
	c.mu.Unlock()
	if !ok || typ == "" {
		return nil, Errorf(CodeSessionNotFound, "Session not found: %s", id)
	}
	if m == nil {
		return nil, Errorf(CodeNotImplemented, "Session %s (type %s) has no media", id, typ)
	}
	return m, nil
}

// MediaAs returns the media of live session id as capability T (DTMFSender, DTMFObserver,
// RTPReofferer, Holder, Reattacher, AudioStreamer), or a clear error: 1062 no such session, 1006 the session has no
// media or its backend cannot do what T does.
func MediaAs[T any](c *Core, id string) (T, error) {
	var zero T
	m, err := c.SessionMedia(id)
	if err != nil {
		return zero, err
	}
	if t, ok := m.(T); ok {
		return t, nil
	}
	backend := "its"
	if meta, ok := c.LookupSession(id); ok && meta.Backend != "" {
		backend = "the " + meta.Backend
	}
	return zero, Errorf(CodeNotImplemented, "Not implemented: %s backend cannot %s (session %s)", backend, capabilityText[T](), id)
}

// capabilityText says what capability T does, for errors.
func capabilityText[T any]() string {
	switch any((*T)(nil)).(type) {
	case *DTMFSender:
		return "send DTMF"
	case *DTMFObserver:
		return "report DTMF"
	case *RTPReofferer:
		return "take RTP re-offers (hold, resume)"
	case *Reattacher:
		return "re-attach a WebRTC leg"
	case *Holder:
		return "hold"
	case *AudioStreamer:
		return "stream audio"
	}
	return "do that"
}
