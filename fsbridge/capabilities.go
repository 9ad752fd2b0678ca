package fsbridge

import (
	"context"
	"time"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// Capabilities of sessions on FreeSWITCH (package signaling's DTMFSender, RTPReofferer, Holder
// and Reattacher, which the SIP and Verto front ends use): they act on the media engine's
// session that carries the client to FreeSWITCH. Its caller side is the client; its far side is
// FreeSWITCH's channel, which receives DTMF as RFC 2833 events as from any phone (its
// dialplan, IVR and conference controls act on them).

var (
	_ signaling.DTMFSender   = (*fsSession)(nil)
	_ signaling.RTPReofferer = (*fsSession)(nil)
	_ signaling.Holder       = (*fsSession)(nil)
)

// engineLeg is a Leg whose media runs on the embedded media engine (SIPDialer's legs).
type engineLeg interface{ engineSession() *media.Session }

func (l *sipLeg) engineSession() *media.Session { return l.media }

// engine is the engine session of the session's leg.
func (s *fsSession) engine() (*media.Session, placement, Leg, error) {
	s.mu.Lock()
	leg, place, stopped := s.leg, s.place, s.stopped
	s.mu.Unlock()
	if stopped || leg == nil {
		return nil, place, nil, signaling.Errorf(signaling.CodeSessionNotFound, "Session not found: %s", s.id)
	}
	el, ok := leg.(engineLeg)
	if !ok || el.engineSession() == nil {
		return nil, place, nil, signaling.Errorf(signaling.CodeNotImplemented, "Not implemented: the FreeSWITCH leg of session %s has no media of nkbridge's", s.id)
	}
	return el.engineSession(), place, leg, nil
}

// SendDTMF implements signaling.DTMFSender: RFC 4733 toward FreeSWITCH's channel
// (signaling.SideFar) or toward the client (SideCaller, when its leg negotiated
// telephone-events).
func (s *fsSession) SendDTMF(ctx context.Context, to signaling.Side, digits string, durMS int) error {
	ms, _, _, err := s.engine()
	if err != nil {
		return err
	}
	side := media.SideCaller
	if to == signaling.SideFar {
		side = media.SideFar
	}
	if err := ms.SendDTMF(ctx, side, digits, durMS); err != nil {
		return signaling.Errorf(signaling.CodeInvalidParameters, "DTMF not sent: %v", err)
	}
	s.log.Debug("fsbridge: DTMF sent", "to", to, "digits", digits)
	return nil
}

// ReofferRTP implements signaling.RTPReofferer for a plain-RTP client (a SIP phone's
// re-INVITE: hold, resume, a new address); FreeSWITCH's side belongs to the backend. A parked
// channel stays quiet (no media timeout) after a resume.
func (s *fsSession) ReofferRTP(side signaling.Side, sdp string) (string, error) {
	if side != signaling.SideCaller {
		return "", signaling.Errorf(signaling.CodeInvalidOperation, "Re-offer refused: the far side of session %s is FreeSWITCH's", s.id)
	}
	ms, place, leg, err := s.engine()
	if err != nil {
		return "", err
	}
	d, err := ms.ReofferRTP(media.SideCaller, media.Description{Kind: media.KindRTP, SDP: sdp})
	if err != nil {
		return "", mediaError(err)
	}
	if !ms.Held() && place.typ == signaling.TypePark {
		leg.SetQuiet(true)
	}
	return d.SDP, nil
}

// Hold implements signaling.Holder (a Verto client's verto.modify hold): the client's audio no
// longer reaches FreeSWITCH and no media timeout runs while held (nor ever in park).
func (s *fsSession) Hold(ctx context.Context, held bool) error {
	ms, place, leg, err := s.engine()
	if err != nil {
		return err
	}
	if err := leg.Update(ctx, map[string]any{"use_audio": !held}); err != nil {
		return err
	}
	ms.SetHold(held || place.typ == signaling.TypePark)
	return nil
}

// A WebRTC client of a session on FreeSWITCH (a Verto page) is the caller side of the engine's
// session: it is re-attached in place after a page reload like the embedded engine's sessions,
// FreeSWITCH's channel never noticing (signaling.Reattacher).
var _ signaling.Reattacher = (*fsSession)(nil)

// CanReattach implements signaling.Reattacher: only the client's side, when it is WebRTC.
func (s *fsSession) CanReattach(side signaling.Side) error {
	_, err := s.webrtcClient(side)
	return err
}

// webrtcClient is the engine session when side is the session's WebRTC client.
func (s *fsSession) webrtcClient(side signaling.Side) (*media.Session, error) {
	if side != signaling.SideCaller {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: the far side of session %s is FreeSWITCH's", s.id)
	}
	ms, _, _, err := s.engine()
	if err != nil {
		return nil, err
	}
	if k := ms.CallerKind(); k != media.KindWebRTC {
		return nil, signaling.Errorf(signaling.CodeInvalidOperation, "Re-attach refused: the client of session %s is %s, not WebRTC", s.id, k)
	}
	return ms, nil
}

// DeferPeerClose implements signaling.Reattacher.
func (s *fsSession) DeferPeerClose(side signaling.Side, d time.Duration) error {
	ms, err := s.webrtcClient(side)
	if err != nil {
		return err
	}
	return mediaError(ms.DeferPeerClose(media.SideCaller, d))
}

// Detach implements signaling.Reattacher. FreeSWITCH may fall silent while the client is away
// (echo sends back only what it gets): no media timeout runs until the re-attach.
func (s *fsSession) Detach(side signaling.Side, grace time.Duration) error {
	ms, err := s.webrtcClient(side)
	if err != nil {
		return err
	}
	if err := ms.Detach(media.SideCaller, grace); err != nil {
		return mediaError(err)
	}
	ms.SetHold(true)
	return nil
}

// ReattachOffer implements signaling.Reattacher.
func (s *fsSession) ReattachOffer(ctx context.Context, side signaling.Side) (string, error) {
	ms, err := s.webrtcClient(side)
	if err != nil {
		return "", err
	}
	d, err := ms.ReofferWebRTC(ctx, media.SideCaller)
	if err != nil {
		return "", mediaError(err)
	}
	return d.SDP, nil
}

// ReattachAnswer implements signaling.Reattacher.
func (s *fsSession) ReattachAnswer(ctx context.Context, side signaling.Side, sdp string) error {
	ms, err := s.webrtcClient(side)
	if err != nil {
		return err
	}
	if err := ms.SetReofferAnswer(ctx, media.SideCaller, media.Description{Kind: media.KindWebRTC, SDP: sdp}); err != nil {
		return mediaError(err)
	}
	_, place, _, _ := s.engine()
	ms.SetHold(place.typ == signaling.TypePark) // a client's own hold is restored by its front end
	return nil
}
