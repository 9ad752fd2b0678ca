package peers_test

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

func TestPCMURoundTrip(t *testing.T) {
	in := audiotest.Tone(1000, 8000, 800, 8000)
	out := peers.DecodePCMU(peers.EncodePCMU(in))
	for i := range in {
		// µ-law keeps about 12 bits: the error grows with the magnitude.
		if d := math.Abs(float64(in[i]) - float64(out[i])); d > 16+math.Abs(float64(in[i]))/32 {
			t.Fatalf("sample %d: %d -> %d", i, in[i], out[i])
		}
	}
	for _, s := range []int16{0, 1, -1, 32767, -32768} {
		if got := peers.DecodePCMU(peers.EncodePCMU([]int16{s}))[0]; math.Abs(float64(got)-float64(s)) > 1100 {
			t.Errorf("%d -> %d", s, got)
		}
	}
	if b := peers.EncodePCMU([]int16{0}); b[0] != 0xff {
		t.Errorf("silence encodes to %#x, want 0xff", b[0])
	}
}

// TestSIPpRTPToBaresip: SIPp calls baresip and streams a PCMU tone with rtp_stream; baresip's
// recording must hold that tone. The template for SIP tests that need plain RTP audio.
func TestSIPpRTPToBaresip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: "pcmu", ToneHz: 600})
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"),
		Remote:   "127.0.0.1:" + strconv.Itoa(bob.SIPPort()),
		Service:  "bob",
		Calls:    1,
		Keys:     map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
		Args:     []string{"-d", "3000"},
		Timeout:  30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp: exit %d, %+v\n%s\n%s", res.ExitCode, res.Stats, res.Errors, res.Output)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // baresip flushes its recording after CALL_CLOSED, with no event to wait on
	heard, rate, err := bob.Heard()
	if err != nil {
		t.Fatal(err)
	}
	f, ratio := audiotest.Dominant(heard, float64(rate), 1000, 600)
	t.Logf("baresip heard %.2f s from SIPp: %v Hz (ratio %.0f), rms %.0f", float64(len(heard))/float64(rate), f, ratio, audiotest.RMS(heard))
	if f != 1000 || ratio < 100 || audiotest.RMS(heard) < 1000 {
		t.Errorf("baresip heard %v Hz (ratio %.1f, rms %.0f), want SIPp's 1000 Hz tone", f, ratio, audiotest.RMS(heard))
	}
}
