package browsertest

import (
	"fmt"
	"math"
	"testing"
)

// Heard is what a page's measure step returns: nkb.measureAudio on the remote stream and
// nkb.audioStats on its PeerConnection.
type Heard struct {
	Audio struct {
		DominantHz float64            `json:"dominantHz"`
		RmsDb      float64            `json:"rmsDb"`
		BinHz      float64            `json:"binHz"`
		Levels     map[string]float64 `json:"levels"`
	} `json:"audio"`
	Stats struct {
		PacketsReceived int    `json:"packetsReceived"`
		PacketsSent     int    `json:"packetsSent"`
		Codec           string `json:"codec"`
	} `json:"stats"`
}

// CheckHeard fails t unless who heard want as the dominant tone, at least 20 dB above other,
// with a real level and packet count.
func CheckHeard(t testing.TB, who string, r Heard, want, other float64) {
	t.Helper()
	t.Logf("%s: hears %.1f Hz, rms %.1f dBFS, levels %v, stats %+v", who, r.Audio.DominantHz, r.Audio.RmsDb, r.Audio.Levels, r.Stats)
	if math.Abs(r.Audio.DominantHz-want) > 2*r.Audio.BinHz {
		t.Errorf("%s hears %.1f Hz, want %v Hz", who, r.Audio.DominantHz, want)
	}
	if d := r.Audio.Levels[fmt.Sprint(want)] - r.Audio.Levels[fmt.Sprint(other)]; d < 20 {
		t.Errorf("%s: %v Hz only %.1f dB above %v Hz", who, want, d, other)
	}
	if r.Audio.RmsDb < -40 || r.Stats.PacketsReceived < 50 {
		t.Errorf("%s: rms %.1f dBFS, %d packets received", who, r.Audio.RmsDb, r.Stats.PacketsReceived)
	}
}
