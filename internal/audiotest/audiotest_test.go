package audiotest

import (
	"path/filepath"
	"testing"
)

func TestToneRoundTripAndDetect(t *testing.T) {
	s := Tone(1000, 8000, 8000, 10000)
	path := filepath.Join(t.TempDir(), "t.wav")
	if err := WriteWAV(path, s, 8000); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ReadWAV(path)
	if err != nil || rate != 8000 || len(got) != len(s) {
		t.Fatalf("read back: rate=%d len=%d err=%v", rate, len(got), err)
	}
	f, ratio := Dominant(got, 8000, 600, 1000, 1400)
	if f != 1000 || ratio < 100 {
		t.Fatalf("dominant = %v (ratio %.1f), want 1000", f, ratio)
	}
	if r := RMS(got); r < 6000 || r > 8000 {
		t.Fatalf("rms %.0f, want about 7071", r)
	}
	if _, _, err := DecodeWAV([]byte("nonsense")); err == nil {
		t.Fatal("garbage decoded without error")
	}
}
