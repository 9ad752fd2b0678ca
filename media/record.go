package media

import (
	"fmt"
	"sync"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/wav"
	"github.com/nkbridge/nkbridge/media/codec"
)

// maxRecordBytes bounds one recording (about 18 hours of 8 kHz audio).
const maxRecordBytes = 1 << 30

// recorder writes the audio one side sends into a 16-bit 8 kHz mono WAV file.
type recorder struct {
	mu   sync.Mutex
	path string
	w    *wav.Writer // nil once closed
	dec  codec.Decoder
	decF format
	pcm  []int16
}

func newRecorder(path string) (*recorder, error) {
	w, err := wav.Create(path, pcmRate, maxRecordBytes)
	if err != nil {
		return nil, fmt.Errorf("media: record: %w", err)
	}
	return &recorder{path: path, w: w}, nil
}

func (r *recorder) write(f format, pkt *rtp.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil || r.w.Full() {
		return
	}
	if r.dec == nil || !r.decF.same(f) {
		d, err := codec.NewDecoder(f.Name, pcmRate)
		if err != nil {
			return
		}
		r.dec, r.decF = d, f
	}
	var err error
	r.pcm, err = r.dec.Decode(r.pcm[:0], pkt.Payload)
	if err != nil {
		return
	}
	r.w.Write(r.pcm)
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
