package media

import (
	"testing"
	"time"
)

// With TalkspurtMarkers a plain-RTP leg marks the first audio packet and those after a
// pause (in timestamps or in time), never a steady stream, whatever the source marked.
func TestTalkspurtMarks(t *testing.T) {
	var sp talkspurts
	t0 := time.Unix(1000, 0)
	const f = 160 // 20 ms at 8 kHz
	wrap, base := uint32(0xFFFFFF00), uint32(1000)
	steps := []struct {
		name string
		ts   uint32
		at   time.Duration
		want bool
	}{
		{"first packet", 1000, 0, true},
		{"next frame", 1000 + f, 20 * time.Millisecond, false},
		{"next frame", 1000 + 2*f, 40 * time.Millisecond, false},
		{"late but in sequence", 1000 + 3*f, 150 * time.Millisecond, false},
		{"reordered, older", 1000 + 2*f, 151 * time.Millisecond, false},
		{"3 frames on (no pause)", 1000 + 6*f, 160 * time.Millisecond, false},
		{"silence skipped in timestamps (DTX)", 1000 + 20*f, 180 * time.Millisecond, true},
		{"continues", 1000 + 21*f, 200 * time.Millisecond, false},
		{"nothing sent for 200 ms", 1000 + 22*f, 400 * time.Millisecond, true},
		{"new timeline, over a second back", base + 22*f - 8001, 405 * time.Millisecond, true},
		{"new timeline, far on", wrap, 420 * time.Millisecond, true},
		{"next frame", wrap + f, 440 * time.Millisecond, false},
		{"across zero", wrap + 2*f, 460 * time.Millisecond, false},
		{"across zero again", wrap + 3*f, 480 * time.Millisecond, false},
		{"a second back", wrap + 3*f - 9000, 500 * time.Millisecond, true},
	}
	for i, s := range steps {
		if got := sp.mark(s.ts, 8000, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%s): marker %v, want %v", i, s.name, got, s.want)
		}
	}
}
