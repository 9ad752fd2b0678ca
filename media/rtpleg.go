package media

import (
	"sync"
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
	// spurts, with SessionOptions.TalkspurtMarkers, decides the audio marker bits.
	spurts *talkspurts
}

func newRTPLeg(s *Session, side Side) (*rtpLeg, error) {
	ep, err := s.e.pool.OpenFor(s.opts.Owner)
	if err != nil {
		return nil, s.e.portErr(s.opts.Owner, err)
	}
	l := &rtpLeg{s: s, side: side, ep: ep}
	if s.opts.TalkspurtMarkers {
		l.spurts = &talkspurts{}
	}
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
// the peer (remote is offer or answer: the peer's); SDES keys in them turn SRTP on (srtp.go).
func (l *rtpLeg) setNegotiated(offer, answer, remote *plainrtp.Description) error {
	if err := l.setSRTP(offer, answer, remote != offer); err != nil {
		return err
	}
	l.neg.Store(negotiatedFrom(plainMedia(answer), plainMedia(offer)))
	l.ep.SetRemoteFromSDP(remote)
	return nil
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
	if l.spurts != nil {
		if f, ok := l.sendFormat(h.PayloadType); !ok || !f.isTE() {
			p.Marker = l.spurts.mark(h.Timestamp, f.Rate, time.Now())
		}
	}
	return l.ep.WriteRTP(&p)
}

// sendFormat is the negotiated format the leg sends as payload type pt.
func (l *rtpLeg) sendFormat(pt uint8) (format, bool) {
	if n := l.neg.Load(); n != nil {
		for _, f := range n.audio {
			if f.PT == pt {
				return f, true
			}
		}
	}
	return format{}, false
}

// A talk spurt starts on the first audio packet and after a pause: no audio for
// talkspurtPause, or a timestamp jump of more than talkspurtFrames 20 ms frames (the
// source stopped sending in silence, e.g. Opus DTX) or back by more than a second (a new
// timeline). A change of source stream without
// a pause continues the output timeline (the pipe re-anchors it), so it is no new spurt
// for the receiver.
const (
	talkspurtPause  = 200 * time.Millisecond
	talkspurtFrames = 3
)

// talkspurts decides the marker bit of a plain-RTP leg's audio packets.
type talkspurts struct {
	mu      sync.Mutex
	started bool
	lastTS  uint32
	lastAt  time.Time
}

// mark reports whether the audio packet with timestamp ts (clock rate rate, 0 if
// unknown), sent at now, starts a talk spurt.
func (t *talkspurts) mark(ts, rate uint32, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := int32(ts - t.lastTS)
	// a jump back of more than a second is a new timeline; less, a late packet
	jump := rate > 0 && (d > int32(talkspurtFrames*rate/50) || d < -int32(rate))
	m := !t.started || now.Sub(t.lastAt) >= talkspurtPause || jump
	if !t.started || d > 0 || jump {
		t.lastTS = ts
	}
	t.started, t.lastAt = true, now
	return m
}
