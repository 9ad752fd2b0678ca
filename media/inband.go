package media

import (
	"sync"

	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
	"github.com/pion/rtp"
)

// In-band DTMF: a peer that negotiated no telephone-event (RFC 4733) can only send its digits
// as tones in its audio. The audio such a side sends is decoded to 8 kHz PCM and searched for
// DTMF tones (dtmf.Inband, Goertzel); each digit found is delivered like an RFC 4733 digit
// (SessionOptions.OnDTMF, in order with them) and sent as RFC 4733 events toward the other side
// when that side negotiated telephone-event (the tones themselves pass on as audio too). A side
// that negotiated telephone-event is not searched: its digits come as events.

// inbandState is a session's in-band detection: one detector per side and the queue of digits
// to relay as RFC 4733.
type inbandState struct {
	side  [2]inbandSide
	once  sync.Once
	relay chan dtmfEvent
}

type inbandSide struct {
	mu      sync.Mutex // the side's reader goroutine, or two of them briefly after a leg change
	name    string     // codec of dec
	dec     codec.Decoder
	det     dtmf.Inband
	pcm     []int16
	noCodec string // a codec it cannot decode (warned once)
}

// hasTE reports whether a leg's peer negotiated telephone-event.
func (n *negotiated) hasTE() bool {
	for _, f := range n.audio {
		if f.isTE() {
			return true
		}
	}
	return false
}

// inbandAudio searches one audio packet from side (whose peer negotiated no telephone-event)
// for DTMF tones.
func (s *Session) inbandAudio(side Side, f format, pkt *rtp.Packet) {
	st := &s.inband.side[side]
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.name != f.Name {
		if f.Name == st.noCodec {
			return
		}
		dec, err := codec.NewDecoder(f.Name, dtmf.InbandRate)
		if err != nil {
			st.noCodec = f.Name
			s.log.Info("in-band DTMF not searched: codec not decoded", "side", side, "codec", f.Name)
			return
		}
		st.name, st.dec = f.Name, dec
		st.det.Reset()
	}
	pcm, err := st.dec.Decode(st.pcm[:0], pkt.Payload)
	if err != nil {
		return
	}
	st.pcm = pcm
	st.det.Push(pcm, func(d rune) { s.inbandDigit(side, d) })
}

// inbandDigit delivers a digit found in side's audio.
func (s *Session) inbandDigit(side Side, d rune) {
	s.log.Debug("in-band DTMF digit", "side", side, "digit", string(d))
	if s.dtmfCh != nil {
		select {
		case s.dtmfCh <- dtmfEvent{side, d}:
		default:
			s.log.Warn("DTMF digit dropped: OnDTMF too slow", "digit", string(d))
		}
	}
	if s.typ == typeEcho {
		return
	}
	s.inband.once.Do(func() {
		s.inband.relay = make(chan dtmfEvent, 32)
		go s.inbandRelay(s.inband.relay)
	})
	select {
	case s.inband.relay <- dtmfEvent{side, d}:
	default:
		s.log.Warn("in-band DTMF digit not relayed: too many queued", "digit", string(d))
	}
}

// inbandRelay sends in-band digits as RFC 4733 events toward the other side, one at a time,
// until the session stops.
func (s *Session) inbandRelay(ch <-chan dtmfEvent) {
	for {
		select {
		case <-s.done:
			return
		case ev := <-ch:
			to := s.peerOf(ev.from)
			if l := s.curLeg(to); l == nil || l.negotiated() == nil || !l.negotiated().hasTE() {
				continue // the other side takes no events: the tones reach it as audio
			}
			if err := s.SendDTMF(s.ctx, to, string(ev.digit), 0); err != nil {
				s.log.Debug("in-band DTMF digit not relayed", "digit", string(ev.digit), "err", err)
			}
		}
	}
}
