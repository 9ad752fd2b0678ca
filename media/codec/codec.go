// Package codec holds the audio codecs nkbridge's media engine transcodes between: G.711
// µ-law (PCMU) and A-law (PCMA) in pure Go, and Opus through
// libopus (the project's own small cgo binding, opus.go).
//
// Every Decoder turns one RTP payload into 16-bit mono PCM at the rate it was created for;
// every Encoder turns such PCM into one RTP payload. Opus can be decoded to and encoded from
// 8, 12, 16, 24 or 48 kHz directly, so Opus⇄G.711 needs no separate resampler.
package codec

import (
	"errors"
	"fmt"
	"strings"
)

// Names of the supported codecs, as they appear (case-insensitively) in SDP rtpmap lines.
const (
	PCMU = "pcmu"
	PCMA = "pcma"
	Opus = "opus"
)

// ErrUnsupported is returned for a codec this package cannot handle.
var ErrUnsupported = errors.New("codec: unsupported codec")

// Decoder decodes one RTP payload into PCM samples (mono, at the decoder's rate).
type Decoder interface {
	// Decode appends the decoded samples of payload to dst and returns the result.
	Decode(dst []int16, payload []byte) ([]int16, error)
	// Rate is the PCM sample rate the decoder produces.
	Rate() int
}

// Encoder encodes PCM samples (mono, at the encoder's rate) into one RTP payload.
type Encoder interface {
	// Encode encodes pcm into dst (which must be large enough: 1500 bytes always is) and
	// returns the number of bytes written.
	Encode(dst []byte, pcm []int16) (int, error)
	// Rate is the PCM sample rate the encoder consumes.
	Rate() int
	// FrameSizes says which PCM frame lengths (in samples) the encoder accepts; nil means any.
	FrameSizes() []int
	// ClockRate is the RTP clock rate of the encoded stream.
	ClockRate() int
}

// Supported reports whether name (any case) is a codec this package transcodes.
func Supported(name string) bool {
	switch strings.ToLower(name) {
	case PCMU, PCMA, Opus:
		return true
	}
	return false
}

// NewDecoder returns a decoder for codec name producing PCM at pcmRate. G.711 decoders only
// produce 8000 Hz; Opus decoders accept 8000, 12000, 16000, 24000 or 48000.
func NewDecoder(name string, pcmRate int) (Decoder, error) {
	switch strings.ToLower(name) {
	case PCMU:
		if pcmRate != 8000 {
			return nil, fmt.Errorf("codec: PCMU decodes only to 8000 Hz, not %d", pcmRate)
		}
		return g711Dec{alaw: false}, nil
	case PCMA:
		if pcmRate != 8000 {
			return nil, fmt.Errorf("codec: PCMA decodes only to 8000 Hz, not %d", pcmRate)
		}
		return g711Dec{alaw: true}, nil
	case Opus:
		return newOpusDecoder(pcmRate)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupported, name)
}

// NewEncoder returns an encoder for codec name consuming PCM at pcmRate (see NewDecoder for the
// rates).
func NewEncoder(name string, pcmRate int) (Encoder, error) {
	switch strings.ToLower(name) {
	case PCMU:
		if pcmRate != 8000 {
			return nil, fmt.Errorf("codec: PCMU encodes only from 8000 Hz, not %d", pcmRate)
		}
		return g711Enc{alaw: false}, nil
	case PCMA:
		if pcmRate != 8000 {
			return nil, fmt.Errorf("codec: PCMA encodes only from 8000 Hz, not %d", pcmRate)
		}
		return g711Enc{alaw: true}, nil
	case Opus:
		return newOpusEncoder(pcmRate)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupported, name)
}

type g711Dec struct{ alaw bool }

func (d g711Dec) Rate() int { return 8000 }

func (d g711Dec) Decode(dst []int16, payload []byte) ([]int16, error) {
	for _, b := range payload {
		if d.alaw {
			dst = append(dst, AlawToLinear(b))
		} else {
			dst = append(dst, UlawToLinear(b))
		}
	}
	return dst, nil
}

type g711Enc struct{ alaw bool }

func (e g711Enc) Rate() int         { return 8000 }
func (e g711Enc) ClockRate() int    { return 8000 }
func (e g711Enc) FrameSizes() []int { return nil }

func (e g711Enc) Encode(dst []byte, pcm []int16) (int, error) {
	if len(dst) < len(pcm) {
		return 0, errors.New("codec: G.711 output buffer too small")
	}
	for i, s := range pcm {
		if e.alaw {
			dst[i] = LinearToAlaw(s)
		} else {
			dst[i] = LinearToUlaw(s)
		}
	}
	return len(pcm), nil
}
