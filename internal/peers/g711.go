package peers

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/media/codec"
)

// EncodePCMU encodes 16-bit linear samples as G.711 µ-law bytes (the raw format SIPp's
// rtp_stream plays with payload type 0).
func EncodePCMU(samples []int16) []byte {
	out := make([]byte, len(samples))
	for i, s := range samples {
		out[i] = codec.LinearToUlaw(s)
	}
	return out
}

// DecodePCMU decodes G.711 µ-law bytes to 16-bit linear samples.
func DecodePCMU(b []byte) []int16 {
	out := make([]int16, len(b))
	for i, u := range b {
		out[i] = codec.UlawToLinear(u)
	}
	return out
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
