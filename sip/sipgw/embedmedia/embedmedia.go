// Package embedmedia gives the SIP glue (package sipgw) the media of sessions
// served by the embedded media engine (signaling/embedded): SIP re-offers for
// hold/resume, RFC 4733 DTMF out and in.
package embedmedia

import (
	"context"
	"fmt"

	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// Media implements sipgw.Media and sipgw.DTMFSource on an embedded backend.
type Media struct {
	B *embedded.Backend
}

var (
	_ sipgw.Media      = Media{}
	_ sipgw.DTMFSource = Media{}
)

func (m Media) lookup(sid string) (*embedded.Media, error) {
	if m.B == nil {
		return nil, fmt.Errorf("embedmedia: no embedded backend")
	}
	s, ok := m.B.Media(sid)
	if !ok {
		return nil, fmt.Errorf("embedmedia: session %s has no embedded media", sid)
	}
	return s, nil
}

// ReofferRTP applies a SIP re-offer to the plain-RTP leg on side.
func (m Media) ReofferRTP(sid string, side sipgw.Side, sdp string) (string, error) {
	s, err := m.lookup(sid)
	if err != nil {
		return "", err
	}
	return s.ReofferRTP(media.Side(side), sdp)
}

// SendDTMF plays digits as RFC 4733 toward side.
func (m Media) SendDTMF(ctx context.Context, sid string, to sipgw.Side, digits string, durMS int) error {
	s, err := m.lookup(sid)
	if err != nil {
		return err
	}
	return s.SendDTMF(ctx, media.Side(to), digits, durMS)
}

// OnDTMF reports RFC 4733 digits received by the session.
func (m Media) OnDTMF(sid string, fn func(from sipgw.Side, digit rune)) func() {
	s, err := m.lookup(sid)
	if err != nil {
		return func() {}
	}
	return s.OnDTMF(func(from media.Side, d rune) { fn(sipgw.Side(from), d) })
}
