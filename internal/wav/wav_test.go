package wav_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/wav"
)

// A written file reads back as the same samples and rate; the size bound drops what would
// pass it; an existing file is never overwritten.
func TestWriterRoundTripAndBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.wav")
	tone := audiotest.Tone(440, 8000, 800, 8000)
	w, err := wav.Create(path, 8000, 1000) // 500 samples
	if err != nil {
		t.Fatal(err)
	}
	w.Write(tone[:400])
	if w.Full() {
		t.Fatal("full after 800 of 1000 bytes")
	}
	w.Write(tone[400:]) // would pass the bound: dropped
	w.Write(tone[400:500])
	if !w.Full() {
		t.Fatal("not full at the bound")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, rate, err := audiotest.ReadWAV(path)
	if err != nil || rate != 8000 || !slices.Equal(got, tone[:500]) {
		t.Fatalf("read back %d samples at %d Hz (%v), want the first 500 at 8000", len(got), rate, err)
	}
	b, _ := os.ReadFile(path)
	if len(b) != wav.HeaderLen+1000 || string(b[:4]) != "RIFF" {
		t.Fatalf("file of %d bytes", len(b))
	}
	if _, err := wav.Create(path, 8000, 1000); err == nil {
		t.Fatal("an existing file was overwritten")
	}
}
