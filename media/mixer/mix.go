package mixer

import (
	"fmt"
	"math"

	"github.com/nkbridge/nkbridge/media/codec"
)

func clip(v int32) int16 {
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}

// Mix computes, for every participant i, the sum of every other participant's frame (never
// its own), saturating at the int16 limits. in[i] nil means participant i is silent this
// frame; out[i] must be FrameSamples long. sum (FrameSamples long) is scratch space; after Mix
// it holds the full mix, everyone included (e.g. for a recording).
func Mix(in [][]int16, out [][]int16, sum []int32) {
	clear(sum[:FrameSamples])
	for _, f := range in {
		if f == nil {
			continue
		}
		for k, v := range f[:FrameSamples] {
			sum[k] += int32(v)
		}
	}
	for i, o := range out {
		f := in[i]
		if f == nil {
			for k := range o[:FrameSamples] {
				o[k] = clip(sum[k])
			}
			continue
		}
		for k := range o[:FrameSamples] {
			o[k] = clip(sum[k] - int32(f[k]))
		}
	}
}

// LevelDB is the RMS level of a frame in dBFS (-100 for digital silence).
func LevelDB(f []int16) float64 {
	var acc float64
	for _, v := range f {
		acc += float64(v) * float64(v)
	}
	if acc == 0 || len(f) == 0 {
		return -100
	}
	return 10 * math.Log10(acc/float64(len(f))/(32768.0*32768.0))
}

// Talk detection thresholds.
const (
	TalkOnDB     = -40.0 // louder than this for TalkOnFrames starts talking
	TalkOffDB    = -45.0 // quieter than this for TalkOffFrames stops it
	TalkOnFrames = 3
	TalkOffFrame = 25
)

// TalkDetector reports talking/stopped transitions from frame levels, with hysteresis.
type TalkDetector struct {
	talking  bool
	on, off  int
	Level    float64 // last frame's level, dBFS
	PeakTalk float64
}

// Push takes one frame's level and reports whether the talking state changed, and the new
// state.
func (d *TalkDetector) Push(levelDB float64) (changed, talking bool) {
	d.Level = levelDB
	if !d.talking {
		if levelDB > TalkOnDB {
			d.on++
		} else {
			d.on = 0
		}
		if d.on >= TalkOnFrames {
			d.talking, d.off, d.on = true, 0, 0
			return true, true
		}
		return false, false
	}
	if levelDB < TalkOffDB {
		d.off++
	} else {
		d.off = 0
	}
	if d.off >= TalkOffFrame {
		d.talking, d.off, d.on = false, 0, 0
		return true, false
	}
	return false, true
}

// Talking reports the current state.
func (d *TalkDetector) Talking() bool { return d.talking }

// Sink encodes 20 ms frames at Rate for one participant's codec.
type Sink struct {
	name string
	enc  codec.Encoder
	down []int16
	// ClockRate is the RTP clock rate of the encoded stream and Step the RTP timestamp
	// increment of one frame.
	ClockRate, Step uint32
}

// NewSink returns an encoder for codec name (opus, pcmu, pcma).
func NewSink(name string) (*Sink, error) {
	switch name {
	case codec.Opus:
		enc, err := codec.NewEncoder(name, Rate)
		if err != nil {
			return nil, err
		}
		return &Sink{name: name, enc: enc, ClockRate: 48000, Step: FrameSamples}, nil
	case codec.PCMU, codec.PCMA:
		enc, err := codec.NewEncoder(name, 8000)
		if err != nil {
			return nil, err
		}
		return &Sink{name: name, enc: enc, ClockRate: 8000, Step: 160, down: make([]int16, 0, 160)}, nil
	}
	return nil, fmt.Errorf("mixer: codec %q: %w", name, codec.ErrUnsupported)
}

// Codec is the sink's codec name.
func (s *Sink) Codec() string { return s.name }

// SetBitrate caps an Opus sink's bit rate.
func (s *Sink) SetBitrate(bps int) { _ = codec.SetBitrate(s.enc, bps) }

// Encode encodes one frame (FrameSamples at Rate) into dst (1500 bytes is enough) and returns
// the payload length.
func (s *Sink) Encode(dst []byte, frame []int16) (int, error) {
	if s.down != nil {
		s.down = Down6(s.down[:0], frame[:FrameSamples])
		return s.enc.Encode(dst, s.down)
	}
	return s.enc.Encode(dst, frame[:FrameSamples])
}
