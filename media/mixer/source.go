package mixer

import (
	"errors"
	"fmt"
	"math"

	"github.com/nkbridge/nkbridge/media/codec"
)

// maxConceal is how many frames in a row a source conceals before it goes silent.
const maxConceal = 5

// Source turns one participant's received packets into 20 ms frames at Rate: jitter buffer,
// decoding (Opus at 48 kHz, G.711 at 8 kHz upsampled) and loss concealment (Opus PLC, or a
// fading repeat of the last frame for G.711). It is not safe for concurrent use.
type Source struct {
	name    string // codec
	jb      *JitterBuffer
	opus    *codec.OpusDecoder
	fifo    []int16 // decoded at Rate, not yet mixed
	last    []int16 // last frame produced (G.711 concealment)
	pktDur  int     // samples at Rate of the last packet
	conceal int
	up      upsampler
	scratch []int16
	// Concealed counts concealed frames.
	Concealed uint64
}

// NewSource returns a Source for codec name (opus, pcmu or pcma) with a jitter buffer of
// target packets (at most max).
func NewSource(name string, target, max int) (*Source, error) {
	s := &Source{name: name, jb: NewJitterBuffer(target, max), pktDur: FrameSamples,
		last: make([]int16, FrameSamples), scratch: make([]int16, codec.OpusMaxFrame)}
	switch name {
	case codec.Opus:
		d, err := codec.NewOpusDecoder(Rate, 1)
		if err != nil {
			return nil, fmt.Errorf("mixer: opus decoder: %w", err)
		}
		s.opus = d
	case codec.PCMU, codec.PCMA:
	default:
		return nil, fmt.Errorf("mixer: codec %q: %w", name, codec.ErrUnsupported)
	}
	return s, nil
}

// Codec is the source's codec name.
func (s *Source) Codec() string { return s.name }

// Jitter returns the source's jitter buffer (for counters).
func (s *Source) Jitter() *JitterBuffer { return s.jb }

// Push queues a received packet.
func (s *Source) Push(p Packet) { s.jb.Push(p) }

// decode appends one packet's PCM at Rate to the FIFO.
func (s *Source) decode(payload []byte) error {
	switch s.name {
	case codec.Opus:
		n, err := s.opus.Decode(payload, s.scratch)
		if err != nil {
			return err
		}
		s.fifo = append(s.fifo, s.scratch[:n]...)
		s.pktDur = n
	default:
		if len(payload) > 960 {
			return errors.New("mixer: G.711 payload too long")
		}
		pcm := s.scratch[:len(payload)]
		for i, b := range payload {
			if s.name == codec.PCMU {
				pcm[i] = codec.UlawToLinear(b)
			} else {
				pcm[i] = codec.AlawToLinear(b)
			}
		}
		before := len(s.fifo)
		s.fifo = s.up.up6(s.fifo, pcm)
		s.pktDur = len(s.fifo) - before
	}
	return nil
}

// concealOne appends one packet's worth of concealment to the FIFO.
func (s *Source) concealOne() {
	s.Concealed++
	n := s.pktDur
	if n <= 0 || n > len(s.scratch) {
		n = FrameSamples
	}
	if s.opus != nil {
		if err := s.opus.DecodePLC(s.scratch[:n]); err == nil {
			s.fifo = append(s.fifo, s.scratch[:n]...)
			return
		}
	}
	// Repeat the last frame, fading: -6 dB per concealed frame.
	g := math.Pow(0.5, float64(s.conceal))
	for i := 0; i < n; i++ {
		s.fifo = append(s.fifo, int16(float64(s.last[i%len(s.last)])*g))
	}
}

// Frame fills out (FrameSamples long) with the source's next 20 ms and reports whether it
// carries audio (false: silence, out is zeroed).
func (s *Source) Frame(out []int16) bool {
	for len(s.fifo) < FrameSamples {
		p, st := s.jb.Pop()
		switch st {
		case PopOK:
			if err := s.decode(p.Payload); err != nil {
				s.concealOne()
			}
			s.conceal = 0
			continue
		case PopLost:
			if s.conceal < maxConceal {
				s.conceal++
				s.concealOne()
				continue
			}
			s.conceal++
			continue
		}
		// Empty: conceal a little, then silence.
		if s.conceal < maxConceal && len(s.fifo) == 0 && s.jb.started {
			s.conceal++
			s.concealOne()
			continue
		}
		break
	}
	if len(s.fifo) < FrameSamples {
		// Underrun: what is left is played next time with more; this frame is silent.
		clear(out[:FrameSamples])
		if len(s.fifo) > 0 && !s.jb.started {
			s.fifo = s.fifo[:0]
		}
		return false
	}
	copy(out, s.fifo[:FrameSamples])
	copy(s.last, out[:FrameSamples])
	rest := copy(s.fifo, s.fifo[FrameSamples:])
	s.fifo = s.fifo[:rest]
	if len(s.fifo) > 6*FrameSamples { // never lag more than 120 ms behind
		s.fifo = s.fifo[:0]
	}
	return true
}

// upsampler converts 8 kHz to 48 kHz by linear interpolation.
type upsampler struct{ prev int16 }

func (u *upsampler) up6(dst, in []int16) []int16 {
	for _, x := range in {
		a, b := int32(u.prev), int32(x)
		for k := int32(1); k <= 6; k++ {
			dst = append(dst, int16(a+(b-a)*k/6))
		}
		u.prev = x
	}
	return dst
}

// Down6 converts 48 kHz to 8 kHz (a 6-tap average as low-pass, then decimation), appending to
// dst. len(in) must be a multiple of 6.
func Down6(dst, in []int16) []int16 {
	for i := 0; i+6 <= len(in); i += 6 {
		s := int32(in[i]) + int32(in[i+1]) + int32(in[i+2]) + int32(in[i+3]) + int32(in[i+4]) + int32(in[i+5])
		dst = append(dst, int16(s/6))
	}
	return dst
}
