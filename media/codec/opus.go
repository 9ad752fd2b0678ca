package codec

/*
#cgo pkg-config: opus
#include <opus.h>

static int nkb_opus_set_bitrate(OpusEncoder *st, opus_int32 bps) {
	return opus_encoder_ctl(st, OPUS_SET_BITRATE(bps));
}
static int nkb_opus_set_inband_fec(OpusEncoder *st, opus_int32 on) {
	return opus_encoder_ctl(st, OPUS_SET_INBAND_FEC(on));
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// This file is the project's own binding of the few libopus calls it uses: a decoder (with
// packet-loss concealment) and a VoIP encoder. The codec states live in Go memory (they hold
// no pointers), so nothing needs freeing. libopus is found with pkg-config (package
// libopus-dev, plus pkg-config, on Debian; scripts/run.sh installs both).

// OpusMaxFrame is the longest Opus packet in samples per channel: 120 ms at 48 kHz. A PCM
// buffer this long (times the channels) always holds a decoded packet.
const OpusMaxFrame = 5760

// OpusError is an error code returned by libopus.
type OpusError int

func (e OpusError) Error() string {
	return "opus: " + C.GoString(C.opus_strerror(C.int(e)))
}

func checkOpusArgs(rate, channels int) error {
	switch rate {
	case 8000, 12000, 16000, 24000, 48000:
	default:
		return fmt.Errorf("opus: unsupported sample rate %d (want 8000, 12000, 16000, 24000 or 48000)", rate)
	}
	if channels != 1 && channels != 2 {
		return fmt.Errorf("opus: unsupported channel count %d (want 1 or 2)", channels)
	}
	return nil
}

// OpusDecoder decodes Opus packets into 16-bit PCM. It is not safe for concurrent use.
type OpusDecoder struct {
	mem      []byte // the OpusDecoder state
	channels int
}

// NewOpusDecoder returns a decoder producing PCM at rate (8000, 12000, 16000, 24000 or 48000)
// with channels (1 or 2) interleaved channels.
func NewOpusDecoder(rate, channels int) (*OpusDecoder, error) {
	if err := checkOpusArgs(rate, channels); err != nil {
		return nil, err
	}
	d := &OpusDecoder{mem: make([]byte, C.opus_decoder_get_size(C.int(channels))), channels: channels}
	if rc := C.opus_decoder_init(d.st(), C.opus_int32(rate), C.int(channels)); rc != C.OPUS_OK {
		return nil, OpusError(rc)
	}
	return d, nil
}

func (d *OpusDecoder) st() *C.OpusDecoder { return (*C.OpusDecoder)(unsafe.Pointer(&d.mem[0])) }

// Decode decodes one packet into pcm and returns the number of samples per channel written.
// pcm must hold the whole packet (OpusMaxFrame samples per channel always do). An empty payload is an
// error: use DecodePLC for a lost packet.
func (d *OpusDecoder) Decode(payload []byte, pcm []int16) (int, error) {
	if len(payload) == 0 {
		return 0, errors.New("opus: empty packet")
	}
	frame := len(pcm) / d.channels
	if frame == 0 {
		return 0, errors.New("opus: no room for the decoded samples")
	}
	n := C.opus_decode(d.st(), (*C.uchar)(unsafe.Pointer(&payload[0])), C.opus_int32(len(payload)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frame), 0)
	if n < 0 {
		return 0, OpusError(n)
	}
	return int(n), nil
}

// DecodePLC fills pcm (a multiple of 2.5 ms of samples per channel) with the decoder's
// concealment of a lost packet.
func (d *OpusDecoder) DecodePLC(pcm []int16) error {
	frame := len(pcm) / d.channels
	if frame == 0 {
		return errors.New("opus: no room for the concealed samples")
	}
	n := C.opus_decode(d.st(), nil, 0, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frame), 0)
	if n < 0 {
		return OpusError(n)
	}
	return nil
}

// OpusEncoder encodes 16-bit PCM into Opus packets, tuned for voice (OPUS_APPLICATION_VOIP).
// It is not safe for concurrent use.
type OpusEncoder struct {
	mem      []byte // the OpusEncoder state
	channels int
}

// NewOpusEncoder returns a VoIP encoder consuming PCM at rate (as for NewOpusDecoder) with
// channels interleaved channels.
func NewOpusEncoder(rate, channels int) (*OpusEncoder, error) {
	if err := checkOpusArgs(rate, channels); err != nil {
		return nil, err
	}
	e := &OpusEncoder{mem: make([]byte, C.opus_encoder_get_size(C.int(channels))), channels: channels}
	if rc := C.opus_encoder_init(e.st(), C.opus_int32(rate), C.int(channels), C.OPUS_APPLICATION_VOIP); rc != C.OPUS_OK {
		return nil, OpusError(rc)
	}
	return e, nil
}

func (e *OpusEncoder) st() *C.OpusEncoder { return (*C.OpusEncoder)(unsafe.Pointer(&e.mem[0])) }

// Encode encodes one frame of pcm (2.5, 5, 10, 20, 40 or 60 ms of interleaved samples) into
// data and returns the packet's length.
func (e *OpusEncoder) Encode(pcm []int16, data []byte) (int, error) {
	if len(pcm) == 0 || len(pcm)%e.channels != 0 {
		return 0, fmt.Errorf("opus: %d samples is not a whole frame of %d channel(s)", len(pcm), e.channels)
	}
	if len(data) == 0 {
		return 0, errors.New("opus: no room for the packet")
	}
	n := C.opus_encode(e.st(), (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)/e.channels),
		(*C.uchar)(unsafe.Pointer(&data[0])), C.opus_int32(len(data)))
	if n < 0 {
		return 0, OpusError(n)
	}
	return int(n), nil
}

// SetBitrate sets the target bit rate in bits per second.
func (e *OpusEncoder) SetBitrate(bps int) error {
	if rc := C.nkb_opus_set_bitrate(e.st(), C.opus_int32(bps)); rc != C.OPUS_OK {
		return OpusError(rc)
	}
	return nil
}

// SetInBandFEC turns in-band forward error correction on or off.
func (e *OpusEncoder) SetInBandFEC(on bool) error {
	v := C.opus_int32(0)
	if on {
		v = 1
	}
	if rc := C.nkb_opus_set_inband_fec(e.st(), v); rc != C.OPUS_OK {
		return OpusError(rc)
	}
	return nil
}

type opusDec struct {
	d    *OpusDecoder
	rate int
	buf  []int16
}

func newOpusDecoder(rate int) (*opusDec, error) {
	d, err := NewOpusDecoder(rate, 1)
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
	e      *OpusEncoder
	rate   int
	frames []int
}

func newOpusEncoder(rate int) (*opusEnc, error) {
	e, err := NewOpusEncoder(rate, 1)
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
