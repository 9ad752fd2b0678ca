package vertogw

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// TestBrowserVertoEarlyMediaFromSIP: a Verto client (@signalwire/js in Chromium) calls a SIPp
// phone that answers 183 with SDP and streams a 600 Hz tone for 6 s before its 200. The early
// answer goes through the call router to the Verto caller's session and out as verto.media:
// the client is in state "early" and plays the tone before the call is answered, then goes
// "active". Twice: to a SIP URL (the phone gets the session's plain-RTP offer), and to user
// bob, whose registered phone gets an offer adapted from WebRTC to plain RTP (bob's calls ring
// with a WebRTC offer here), so the 183 answer is applied to the auxiliary session first.
func TestBrowserVertoEarlyMediaFromSIP(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, addr := e.withSIP()
	e.withAssets()
	base := peers.FreeUDPRange(t, 200)
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
		Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: e.log.With("component", "media-adapt")})
	if err != nil {
		t.Fatal(err)
	}
	auxB := embedded.New(aux, e.log)
	e.core.SetOfferAdapter(embedded.NewAdapter(auxB))
	t.Cleanup(func() { auxB.Close(); _ = aux.Close() })
	v := e.browser(vertoTone, "/page")
	v.vertoLogin("alice")
	ctx := testCtx(t, 150*time.Second)

	for _, adapted := range []bool{false, true} {
		uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: sippScenario(t, "uas_early_tone.xml"), Calls: 1, Timeout: 40 * time.Second,
			Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, apiTone, 5) + ",-1,0"}})
		dest := "sip:bob@" + uas.Addr()
		if adapted {
			reg, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{Scenario: sippScenario(t, "register_contact.xml"), Remote: addr,
				Service: "bob", Calls: 1, Keys: map[string]string{"contact_port": fmt.Sprint(uas.Port())},
				Args: []string{"-au", "bob", "-ap", sipBobPass}, Timeout: 20 * time.Second})
			if err != nil || reg.ExitCode != 0 {
				t.Fatalf("register: %v %+v", err, reg)
			}
			peers.WaitFor(t, 20*time.Second, "bob registered", func() bool { return len(srv.Registrar().Lookup("bob")) == 1 })
			e.gw.cfg.FarKind = func(Route) string { return "webrtc" }
			dest = "bob"
		}
		v.vertoCall(dest)
		v.waitState("early")
		v.hears(swMeasure, apiTone)
		var state string
		v.eval(`window.call.state`, &state)
		if state != "early" {
			t.Fatalf("adapted %v: the call is %q after the early media was measured, want early (machine too slow?)", adapted, state)
		}
		if adapted && auxB.Sessions() != 1 {
			t.Errorf("%d aux sessions, want 1 (the offer adapted for bob's phone)", auxB.Sessions())
		}
		v.waitState("active")
		v.hears(swMeasure, apiTone)
		v.eval(`window.call.hangup(), true`, nil)
		if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
			t.Fatalf("sipp uas: %v %+v", err, r)
		}
		e.idle()
		peers.WaitFor(t, 20*time.Second, "no aux session left", func() bool { return auxB.Sessions() == 0 })
	}
}
