package sipgw_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// TestEarlyMediaToSIPCaller: alice (baresip) calls user bob, whose registered SIP phone is a
// SIPp UAS. With user_far_side rtp the phone gets the caller session's plain-RTP offer; with
// webrtc bob's calls ring with a WebRTC offer, so the phone gets an offer adapted to plain RTP
// by an auxiliary proxy session. The phone answers 183 with SDP and
// streams a 600 Hz tone for 6 s before its 200: the router applies the 183 answer (to the aux
// session first when adapted, then) to alice's proxy session, and the SIP gateway sends alice a 183 with the
// session's SDP, so alice hears the tone while the call still rings (no CALL_ESTABLISHED yet).
// Before early media went through the router, an adapted call dropped it: alice heard nothing
// until the 200.
func TestEarlyMediaToSIPCaller(t *testing.T) {
	for _, far := range []string{"rtp", "webrtc"} {
		t.Run("user_far_side-"+far, func(t *testing.T) { earlyMediaToSIPCaller(t, far) })
	}
}

func earlyMediaToSIPCaller(t *testing.T, far string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{gw: func(g *sipgw.Config) { g.UserFarSide = far }})
	base := peers.FreeUDPRange(t, 200)
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
		Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: e.log.With("component", "media-adapt")})
	if err != nil {
		t.Fatal(err)
	}
	auxB := embedded.New(aux, e.log)
	e.core.SetOfferAdapter(embedded.NewAdapter(auxB))
	t.Cleanup(func() { e.close(); auxB.Close(); _ = aux.Close() })

	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_early_tone.xml"), Calls: 1, Timeout: 40 * time.Second,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 600, 5) + ",-1,0"}})
	registerAt(t, ctx, e, "bob", bobPass, uas.Port())
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=0;answermode=manual;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	if err := alice.Dial(ctx, "sip:bob@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, ev := range alice.Events() {
		if ev.Type == "CALL_ESTABLISHED" {
			t.Fatal("the call was established before the early media was measured (machine too slow?)")
		}
	}
	if n, want := auxB.Sessions(), map[string]int{"rtp": 0, "webrtc": 1}[far]; n != want {
		t.Errorf("%d aux sessions, want %d", n, want)
	}
	samples, rate, err := alice.Heard()
	if err != nil {
		t.Fatal(err)
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), 600, 1000)
	t.Logf("alice heard %.1f s of early media: %.0f Hz (ratio %.1f), rms %.0f", float64(len(samples))/float64(rate), f, ratio, audiotest.RMS(tail))
	if f != 600 || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Errorf("alice heard %.0f Hz (ratio %.1f, rms %.0f) while ringing, want 600 Hz", f, ratio, audiotest.RMS(tail))
	}
	if _, _, err := alice.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	if err := alice.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && auxB.Sessions() == 0
	})
}
