package codec

import (
	"testing"

	"github.com/nkbridge/nkbridge/internal/audiotest"
)

func TestG711RoundTrip(t *testing.T) {
	for _, name := range []string{PCMU, PCMA} {
		enc, err := NewEncoder(name, 8000)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecoder(name, 8000)
		if err != nil {
			t.Fatal(err)
		}
		for s := -32768; s <= 32767; s += 7 {
			var b [1]byte
			if _, err := enc.Encode(b[:], []int16{int16(s)}); err != nil {
				t.Fatal(err)
			}
			out, _ := dec.Decode(nil, b[:])
			diff := int(out[0]) - s
			if diff < 0 {
				diff = -diff
			}
			mag := s
			if mag < 0 {
				mag = -mag
			}
			// G.711 keeps about 4 significant bits: error below 1/16 of the magnitude + 16.
			if diff > mag/16+40 {
				t.Fatalf("%s: %d -> %d (diff %d)", name, s, out[0], diff)
			}
		}
	}
	if UlawToLinear(0xFF) != 0 || LinearToUlaw(0) != 0xFF {
		t.Fatalf("µ-law silence: %d %x", UlawToLinear(0xFF), LinearToUlaw(0))
	}
	if LinearToAlaw(0) != 0xD5 {
		t.Fatalf("A-law silence: %x", LinearToAlaw(0))
	}
}

func TestOpusToneSurvives(t *testing.T) {
	enc, err := NewEncoder(Opus, 8000)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(Opus, 8000)
	if err != nil {
		t.Fatal(err)
	}
	tone := audiotest.Tone(1000, 8000, 8000, 8000)
	var out []int16
	buf := make([]byte, 1500)
	for i := 0; i+160 <= len(tone); i += 160 {
		n, err := enc.Encode(buf, tone[i:i+160])
		if err != nil {
			t.Fatal(err)
		}
		if out, err = dec.Decode(out, buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != len(tone) {
		t.Fatalf("decoded %d samples, want %d", len(out), len(tone))
	}
	f, ratio := audiotest.Dominant(out[2000:], 8000, 1000, 600, 1500)
	if f != 1000 || ratio < 20 {
		t.Fatalf("dominant %v ratio %v", f, ratio)
	}
	if _, err := NewDecoder("g729", 8000); err == nil {
		t.Fatal("g729 accepted")
	}
	if _, err := NewEncoder(PCMU, 48000); err == nil {
		t.Fatal("PCMU at 48k accepted")
	}
}
