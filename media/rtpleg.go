package media

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// rtpLeg is a plain RTP endpoint from the engine's port pool.
type rtpLeg struct {
	s    *Session
	side Side
	ep   *plainrtp.Endpoint
	neg  atomic.Pointer[negotiated]
	last atomic.Int64
	// offer is the plain-RTP offer in this leg's negotiation (ours or the peer's).
	offer *plainrtp.Description
}

func newRTPLeg(s *Session, side Side) (*rtpLeg, error) {
	ep, err := s.e.pool.Open()
	if err != nil {
		return nil, err
	}
	l := &rtpLeg{s: s, side: side, ep: ep}
	l.touch()
	err = ep.Start(plainrtp.Handlers{
		AcceptPT: func(pt uint8) bool {
			n := l.neg.Load()
			if n == nil {
				return false
			}
			_, ok := n.recv[pt]
			return ok
		},
		RTP: func(p *rtp.Packet) {
			l.last.Store(time.Now().UnixNano())
			s.onRTP(l, side, p)
		},
		// A phone with silence suppression (VAD) sends no RTP while its user is quiet but
		// keeps sending RTCP reports: they count as liveness for the media timeout. The
		// endpoint only passes on RTCP from the peer's host once RTP has latched.
		RTCP: func(pkts []rtcp.Packet) {
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.SenderReport, *rtcp.ReceiverReport:
					l.last.Store(time.Now().UnixNano())
					return
				}
			}
		},
	})
	if err != nil {
		ep.Close()
		return nil, err
	}
	return l, nil
}

func plainMedia(d *plainrtp.Description) *sdpMedia {
	m := &sdpMedia{hasAudio: true}
	for _, c := range d.Codecs {
		m.audio = append(m.audio, fromPlain(c))
	}
	return m
}

// setNegotiated records the result of an offer/answer exchange and points the endpoint at
// the peer.
func (l *rtpLeg) setNegotiated(offer, answer, remote *plainrtp.Description) {
	l.neg.Store(negotiatedFrom(plainMedia(answer), plainMedia(offer)))
	l.ep.SetRemoteFromSDP(remote)
}

func (l *rtpLeg) kind() Kind              { return KindRTP }
func (l *rtpLeg) negotiated() *negotiated { return l.neg.Load() }
func (l *rtpLeg) lastRTP() time.Time      { return time.Unix(0, l.last.Load()) }
func (l *rtpLeg) touch()                  { l.last.Store(time.Now().UnixNano()) }
func (l *rtpLeg) requestKeyframe()        {}
func (l *rtpLeg) ready(k mediaKind) bool  { return k == kindAudio && l.ep.Stats().Remote.IsValid() }
func (l *rtpLeg) sendREMB(uint64)         {}
func (l *rtpLeg) close()                  { l.ep.Close() }

func (l *rtpLeg) counters() (uint64, uint64) {
	st := l.ep.Stats()
	return st.PacketsIn, st.PacketsOut
}

func (l *rtpLeg) write(k mediaKind, h *rtp.Header, payload []byte) error {
	if k != kindAudio {
		return nil
	}
	p := rtp.Packet{Header: *h, Payload: payload}
	return l.ep.WriteRTP(&p)
}
