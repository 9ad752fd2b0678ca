package codec

import (
	"fmt"

	"gopkg.in/hraban/opus.v2"
)

type opusDec struct {
	d    *opus.Decoder
	rate int
	buf  []int16
}

func newOpusDecoder(rate int) (*opusDec, error) {
	d, err := opus.NewDecoder(rate, 1)
	if err != nil {
		return nil, fmt.Errorf("codec: opus decoder: %w", err)
	}
	// 120 ms is the longest Opus packet.
	return &opusDec{d: d, rate: rate, buf: make([]int16, rate*120/1000)}, nil
}

func (d *opusDec) Rate() int { return d.rate }

func (d *opusDec) Decode(dst []int16, payload []byte) ([]int16, error) {
	if len(payload) == 0 {
		return dst, nil
	}
	n, err := d.d.Decode(payload, d.buf)
	if err != nil {
		return dst, fmt.Errorf("codec: opus decode: %w", err)
	}
	return append(dst, d.buf[:n]...), nil
}

type opusEnc struct {
	e      *opus.Encoder
	rate   int
	frames []int
}

func newOpusEncoder(rate int) (*opusEnc, error) {
	e, err := opus.NewEncoder(rate, 1, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("codec: opus encoder: %w", err)
	}
	if err := e.SetInBandFEC(true); err != nil {
		return nil, fmt.Errorf("codec: opus encoder: %w", err)
	}
	ms := rate / 1000
	return &opusEnc{e: e, rate: rate, frames: []int{ms * 10, ms * 20, ms * 40, ms * 60}}, nil
}

func (e *opusEnc) Rate() int         { return e.rate }
func (e *opusEnc) ClockRate() int    { return 48000 }
func (e *opusEnc) FrameSizes() []int { return e.frames }

func (e *opusEnc) Encode(dst []byte, pcm []int16) (int, error) {
	n, err := e.e.Encode(pcm, dst)
	if err != nil {
		return 0, fmt.Errorf("codec: opus encode: %w", err)
	}
	return n, nil
}

// SetBitrate caps the bit rate of an Opus encoder (bits/s); it is a no-op for other encoders.
func SetBitrate(e Encoder, bps int) error {
	if o, ok := e.(*opusEnc); ok {
		return o.e.SetBitrate(bps)
	}
	return nil
}
