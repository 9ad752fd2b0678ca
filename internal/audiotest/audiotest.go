// Package audiotest generates and measures test audio: sine tones, WAV files, and the
// Goertzel filter that tests use to prove which tone a peer really heard.
package audiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/nkbridge/nkbridge/internal/wav"
)

// Tone returns n samples of a sine at freq Hz sampled at rate Hz with peak amplitude amp
// (0..32767).
func Tone(freq, rate float64, n int, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/rate))
	}
	return out
}

// Goertzel returns the power of freq in samples (sampled at rate), normalised so that a
// full-block sine of amplitude A yields about (A/2)^2.
func Goertzel(samples []int16, rate, freq float64) float64 {
	n := len(samples)
	if n == 0 {
		return 0
	}
	k := math.Round(float64(n) * freq / rate)
	w := 2 * math.Pi * k / float64(n)
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return p / float64(n*n)
}

// RMS returns the root mean square of samples.
func RMS(samples []int16) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum float64
	for _, x := range samples {
		sum += float64(x) * float64(x)
	}
	return math.Sqrt(sum / float64(len(samples)))
}

// Dominant reports which of the candidate frequencies is strongest in samples, and the ratio
// of its power to the next strongest (a large ratio means a clean identification).
func Dominant(samples []int16, rate float64, candidates ...float64) (freq, ratio float64) {
	best, second := -1.0, -1.0
	for _, f := range candidates {
		p := Goertzel(samples, rate, f)
		switch {
		case p > best:
			second, best, freq = best, p, f
		case p > second:
			second = p
		}
	}
	if second <= 0 {
		return freq, math.Inf(1)
	}
	return freq, best / second
}

// WriteWAV writes 16-bit mono PCM samples at rate Hz as a RIFF/WAVE file.
func WriteWAV(path string, samples []int16, rate int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := EncodeWAV(f, samples, rate); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// EncodeWAV writes 16-bit mono PCM samples at rate Hz as RIFF/WAVE to w.
func EncodeWAV(w io.Writer, samples []int16, rate int) error {
	hdr := wav.Header(rate, uint32(2*len(samples)))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	return binary.Write(w, binary.LittleEndian, samples)
}

// ReadWAV reads a 16-bit PCM WAV file and returns its first channel and sample rate.
func ReadWAV(path string) ([]int16, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	return DecodeWAV(b)
}

// DecodeWAV parses a 16-bit PCM RIFF/WAVE image and returns its first channel and rate.
func DecodeWAV(b []byte) ([]int16, int, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, errors.New("audiotest: not a RIFF/WAVE file")
	}
	var rate, channels, bits int
	for p := 12; p+8 <= len(b); {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4:]))
		body := b[p+8:]
		if size > len(body) {
			size = len(body) // tolerate recorders that never patched the length
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, 0, errors.New("audiotest: short fmt chunk")
			}
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
		case "data":
			if bits != 16 || channels < 1 {
				return nil, 0, fmt.Errorf("audiotest: unsupported WAV format (%d bits, %d channels)", bits, channels)
			}
			frame := 2 * channels
			out := make([]int16, size/frame)
			for i := range out {
				out[i] = int16(binary.LittleEndian.Uint16(body[i*frame:]))
			}
			return out, rate, nil
		}
		p += 8 + size + size%2
	}
	return nil, 0, errors.New("audiotest: no data chunk")
}
