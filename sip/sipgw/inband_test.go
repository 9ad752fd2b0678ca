package sipgw_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// TestSIPpInbandDTMFToBaresip: SIPp (alice) calls baresip through nkbridge (sip- prefix) with a
// PCMU-only offer, no telephone-event, and sends digits as tones in its audio. The media
// engine finds them in the decoded audio and delivers them like any other DTMF: baresip, which
// negotiated telephone-event, gets each one as RFC 4733 (CALL_DTMF_START), and the session's
// subscribers (the API) get media/session/info {dtmf, side: caller} for each, in order.
func TestSIPpInbandDTMFToBaresip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	info := newRecorder(e.core, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: "info"})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600})
	const digits = "1590*#"
	tones := filepath.Join(t.TempDir(), "dtmf.pcmu")
	pcm := append(make([]int16, 4000), audiotest.DTMF(digits, 8000, 100, 150, 7000)...)
	if err := os.WriteFile(tones, peers.EncodePCMU(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_inband_dtmf.xml"), Remote: e.addr, Calls: 1,
		Service: fmt.Sprintf("sip-bob%%40127.0.0.1%%3A%d", bob.SIPPort()),
		Keys:    map[string]string{"rtp_stream": tones + ",1,0"},
		Args:    []string{"-au", "alice", "-ap", alicePass}, Timeout: 45 * time.Second,
	})
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	from := 0
	for range digits {
		ev, i, err := bob.WaitEvent(ctx, "CALL_DTMF_START", from)
		if err != nil {
			t.Fatalf("baresip got %q so far: %v", got.String(), err)
		}
		got.WriteString(ev.Param)
		from = i + 1
	}
	if got.String() != digits {
		t.Errorf("baresip got RFC 4733 digits %q, want %q", got.String(), digits)
	}
	(<-done).check(t, 1)
	var api strings.Builder
	info.mu.Lock()
	for _, ev := range info.evs {
		if in, _ := ev.Body["info"].(map[string]any); in != nil && in["side"] == "caller" {
			api.WriteString(fmt.Sprint(in["dtmf"]))
		}
	}
	info.mu.Unlock()
	if api.String() != digits {
		t.Errorf("media/session/info dtmf events %q, want %q", api.String(), digits)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

// TestSIPpInbandDTMFToSIPInfo: SIPp (alice, PCMU only, no telephone-event) sends digits as
// tones through nkbridge to another SIPp phone that has no telephone-event either: the digits
// found in alice's audio reach it by SIP INFO (application/dtmf-relay), in order (the phone's
// scenario fails on a missing, extra or wrong digit).
func TestSIPpInbandDTMFToSIPInfo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_info_digits.xml"), Calls: 1, Timeout: 40 * time.Second})
	tones := filepath.Join(t.TempDir(), "dtmf.pcmu")
	pcm := append(make([]int16, 4000), audiotest.DTMF("1590*#", 8000, 100, 150, 7000)...)
	if err := os.WriteFile(tones, peers.EncodePCMU(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_inband_dtmf.xml"), Remote: e.addr, Calls: 1,
		Service: fmt.Sprintf("sip-bob%%40%s", strings.ReplaceAll(uas.Addr(), ":", "%3A")),
		Keys:    map[string]string{"rtp_stream": tones + ",1,0"},
		Args:    []string{"-au", "alice", "-ap", alicePass}, Timeout: 45 * time.Second,
	})
	(<-done).check(t, 1)
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas (digits by INFO): %v %+v\n%s", err, r, r.Errors)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}
