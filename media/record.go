package media

import (
	"fmt"
	"math"
	"sync"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/wav"
	"github.com/nkbridge/nkbridge/media/codec"
)

// recorder writes the audio one side sends into a 16-bit 8 kHz mono WAV file, up to max bytes
// of audio (Config.RecordMaxBytes).
type recorder struct {
	gen  uint64 // the session's recording number
	max  int64
	mu   sync.Mutex
	path string
	w    *wav.Writer // nil once closed
	n    int64       // audio bytes written
	dec  codec.Decoder
	decF format
	pcm  []int16
}

func newRecorder(path string, maxBytes int64, gen uint64) (*recorder, error) {
	maxBytes = max(min(maxBytes, math.MaxUint32-wav.HeaderLen), 2) &^ 1 // whole samples; the header's sizes are 32-bit
	w, err := wav.Create(path, pcmRate, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("media: record: %w", err)
	}
	return &recorder{gen: gen, max: maxBytes, path: path, w: w}, nil
}

// write appends pkt's audio. It reports true once, when the file has reached its size limit
// (the audio that would pass it is not written).
func (r *recorder) write(f format, pkt *rtp.Packet) (full bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil || r.w.Full() || r.n >= r.max {
		return false
	}
	if r.dec == nil || !r.decF.same(f) {
		d, err := codec.NewDecoder(f.Name, pcmRate)
		if err != nil {
			return false
		}
		r.dec, r.decF = d, f
	}
	var err error
	r.pcm, err = r.dec.Decode(r.pcm[:0], pkt.Payload)
	if err != nil {
		return false
	}
	if room := (r.max - r.n) / 2; int64(len(r.pcm)) > room {
		r.pcm = r.pcm[:room]
	}
	r.w.Write(r.pcm)
	r.n += int64(2 * len(r.pcm))
	return r.n >= r.max
}

func (r *recorder) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return nil
	}
	err := r.w.Close()
	r.w = nil
	return err
}
