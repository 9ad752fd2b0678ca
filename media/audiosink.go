package media

// Audio sinks: a session's received audio, decoded to 16-bit mono PCM, for whoever streams it
// elsewhere (package media/stream). Like the recorder, a sink hears what each side sends,
// before mute.

import (
	"errors"
	"sync"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/codec"
)

// AudioSink receives the audio the sides of a session send, decoded to 16-bit mono PCM at the
// rate given to AddAudioSink.
type AudioSink interface {
	// Audio is one packet's audio from side from. It is called from that side's reader
	// goroutine: it must not block; pcm is only valid during the call.
	Audio(from Side, pcm []int16)
}

// sinkEntry is one registered sink with a decoder per side.
type sinkEntry struct {
	rate int
	sink AudioSink
	side [2]sinkDecoder
}

type sinkDecoder struct {
	mu   sync.Mutex
	dec  codec.Decoder
	decF format
	pcm  []int16
	out  []int16
}

// ErrBadRate is returned by AddAudioSink for a rate other than 8000 or 16000.
var ErrBadRate = errors.New("media: audio sink rate must be 8000 or 16000")

// AddAudioSink registers sink for the session's audio at rate (8000 or 16000 Hz) and returns
// the function that removes it. It may be called before the session has its answer: audio
// reaches the sink once media flows.
func (s *Session) AddAudioSink(rate int, sink AudioSink) (remove func(), err error) {
	if rate != 8000 && rate != 16000 {
		return nil, ErrBadRate
	}
	e := &sinkEntry{rate: rate, sink: sink}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrClosed
	}
	old := s.sinks.Load()
	var list []*sinkEntry
	if old != nil {
		list = append(list, *old...)
	}
	list = append(list, e)
	s.sinks.Store(&list)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		cur := s.sinks.Load()
		if cur == nil {
			return
		}
		var next []*sinkEntry
		for _, x := range *cur {
			if x != e {
				next = append(next, x)
			}
		}
		if len(next) == 0 {
			s.sinks.Store(nil)
			return
		}
		s.sinks.Store(&next)
	}, nil
}

// toSinks decodes pkt (audio of format f from side) for every sink.
func (s *Session) toSinks(side Side, f format, pkt *rtp.Packet) {
	list := s.sinks.Load()
	if list == nil {
		return
	}
	for _, e := range *list {
		d := &e.side[side]
		d.mu.Lock()
		if pcm, ok := d.decode(f, pkt.Payload, e.rate); ok {
			e.sink.Audio(side, pcm)
		}
		d.mu.Unlock()
	}
}

// decode turns payload into PCM at rate: Opus is decoded at rate directly, G.711 at 8 kHz and
// doubled by linear interpolation for 16 kHz.
func (d *sinkDecoder) decode(f format, payload []byte, rate int) ([]int16, bool) {
	if d.dec == nil || !d.decF.same(f) {
		dr := rate
		if f.Name != codec.Opus {
			dr = 8000
		}
		dec, err := codec.NewDecoder(f.Name, dr)
		if err != nil {
			return nil, false
		}
		d.dec, d.decF = dec, f
	}
	var err error
	d.pcm, err = d.dec.Decode(d.pcm[:0], payload)
	if err != nil || len(d.pcm) == 0 {
		return nil, false
	}
	if d.dec.Rate() == rate {
		return d.pcm, true
	}
	d.out = Upsample2(d.out[:0], d.pcm)
	return d.out, true
}

// Upsample2 appends in at twice its rate to dst (linear interpolation).
func Upsample2(dst, in []int16) []int16 {
	for i, v := range in {
		next := v
		if i+1 < len(in) {
			next = in[i+1]
		}
		dst = append(dst, v, int16((int32(v)+int32(next))/2))
	}
	return dst
}

// Downsample2 appends in at half its rate to dst (pairs averaged).
func Downsample2(dst, in []int16) []int16 {
	for i := 0; i+1 < len(in); i += 2 {
		dst = append(dst, int16((int32(in[i])+int32(in[i+1]))/2))
	}
	return dst
}
