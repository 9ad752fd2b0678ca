package peers

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
)

// EncodePCMU encodes 16-bit linear samples as G.711 µ-law bytes (the raw format SIPp's
// rtp_stream plays with payload type 0).
func EncodePCMU(samples []int16) []byte {
	out := make([]byte, len(samples))
	for i, s := range samples {
		out[i] = linearToULaw(s)
	}
	return out
}

// DecodePCMU decodes G.711 µ-law bytes to 16-bit linear samples.
func DecodePCMU(b []byte) []int16 {
	out := make([]int16, len(b))
	for i, u := range b {
		out[i] = ulawToLinear(u)
	}
	return out
}

const (
	ulawBias = 0x84
	ulawClip = 32635
)

func linearToULaw(s int16) byte {
	x := int(s)
	var sign byte
	if x < 0 {
		x, sign = -x, 0x80
	}
	x = min(x, ulawClip) + ulawBias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := byte(x>>(exp+3)) & 0x0f
	return ^(sign | byte(exp)<<4 | mant)
}

func ulawToLinear(u byte) int16 {
	u = ^u
	exp := (u >> 4) & 7
	x := ((int(u&0x0f) << 3) + ulawBias) << exp
	x -= ulawBias
	if u&0x80 != 0 {
		x = -x
	}
	return int16(x)
}

// PCMUToneFile writes seconds of a hz sine (8 kHz, amplitude 8000) as raw µ-law to a file in
// the test's temporary directory and returns its path: the file for a SIPp rtp_stream.
func PCMUToneFile(t testing.TB, hz float64, seconds int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tone.pcmu")
	if err := os.WriteFile(p, EncodePCMU(audiotest.Tone(hz, 8000, seconds*8000, 8000)), 0o644); err != nil {
		t.Fatalf("peers.PCMUToneFile: %v", err)
	}
	return p
}

// Scenario returns the absolute path of one of the SIPp scenarios kept in
// internal/peers/testdata/sipp (see the files there; e.g. "uac-pcmu-tone.xml").
func Scenario(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "internal", "peers", "testdata", "sipp", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("peers.Scenario: %v", err)
	}
	return p
}
