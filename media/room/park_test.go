package room

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/wav"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
)

func wavBytes(rate, channels int, pcm []int16) []byte {
	b := wav.Header(rate, uint32(2*len(pcm)))
	binary.LittleEndian.PutUint16(b[22:], uint16(channels))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2*channels))
	binary.LittleEndian.PutUint16(b[32:], uint16(2*channels))
	for _, v := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return b
}

func power(pcm []int16, freq float64, rate int) float64 {
	w := 2 * math.Pi * freq / float64(rate)
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s := float64(x) + c*s1 - s2
		s2, s1 = s1, s
	}
	return (s1*s1 + s2*s2 - c*s1*s2) / float64(len(pcm)) / float64(len(pcm))
}

// TestParkLoopsFile: a parked PCMU endpoint hears the configured 8 kHz announcement (400 Hz)
// in its own codec, continuing after a stop (position kept for the next writer).
func TestParkLoopsFile(t *testing.T) {
	pcm := make([]int16, 8000)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*400*float64(i)/8000))
	}
	path := filepath.Join(t.TempDir(), "hold.wav")
	if err := os.WriteFile(path, wavBytes(8000, 1, pcm), 0o600); err != nil {
		t.Fatal(err)
	}
	loop, err := LoadWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(loop) != 48000 {
		t.Fatalf("resampled to %d samples, want 48000", len(loop))
	}
	m := NewManager(Config{})
	defer m.Close()
	ep := newFake("parked")
	ep.audio = []media.Format{{PT: 0, Name: "pcmu", Rate: 8000}, {PT: 101, Name: "telephone-event", Rate: 8000}}
	pk, err := m.Park(ep, loop)
	if err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "25 packets of the parked file", func() bool {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		return len(ep.got) >= 25
	})
	pk.Stop()
	ep.mu.Lock()
	var heard []int16
	for i, h := range ep.got {
		if h.PayloadType != 0 {
			t.Fatalf("packet %d PT %d, want PCMU", i, h.PayloadType)
		}
		if i > 0 && (h.SequenceNumber != ep.got[i-1].SequenceNumber+1 || h.Timestamp != ep.got[i-1].Timestamp+160) {
			t.Fatalf("packet %d: seq %d ts %d after %d %d", i, h.SequenceNumber, h.Timestamp, ep.got[i-1].SequenceNumber, ep.got[i-1].Timestamp)
		}
		for _, b := range ep.pay[i] {
			heard = append(heard, codec.UlawToLinear(b))
		}
	}
	n := len(ep.got)
	last := ep.got[n-1]
	ep.mu.Unlock()
	if n < 15 {
		t.Fatalf("%d packets", n)
	}
	if p, q := power(heard, 400, 8000), power(heard, 1000, 8000); p < 1e6 || p < 100*q {
		t.Errorf("parked caller does not hear the 400 Hz file: %.0f (1 kHz %.0f)", p, q)
	}
	pos, ok := m.Position("parked")
	if !ok || pos.Seq != last.SequenceNumber || pos.TS != last.Timestamp || pos.Rate != 8000 {
		t.Errorf("position %+v %v, last packet %d %d", pos, ok, last.SequenceNumber, last.Timestamp)
	}
	// Refusals.
	if _, err := ParseWAV([]byte("RIFF....WAVEjunk")); err == nil {
		t.Error("junk accepted")
	}
	if _, err := ParseWAV(wavBytes(96000, 1, pcm[:10])); err == nil {
		t.Error("96 kHz accepted")
	}
}

func FuzzParseWAV(f *testing.F) {
	f.Add(wavBytes(8000, 1, []int16{1, 2, 3, 4}))
	f.Add(wavBytes(48000, 2, []int16{1, 2, 3, 4}))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt \xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := ParseWAV(b)
		if err == nil && len(pcm) == 0 {
			t.Fatal("no error and no audio")
		}
	})
}
