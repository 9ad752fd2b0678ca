package vertogw

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// TestVertoInfoInbandDTMFFromSIP: a Verto client calls a SIPp phone with no telephone-event
// (PCMU only) that plays digits as tones in its early media; the engine finds them in the
// phone's audio and the Verto client gets each as verto.info {dtmf}, in order.
func TestVertoInfoInbandDTMFFromSIP(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withSIP()
	c := e.dial("alice")
	ctx := testCtx(t, 40*time.Second)
	const digits = "1590*#"
	tones := filepath.Join(t.TempDir(), "dtmf.pcmu")
	pcm := append(make([]int16, 4000), audiotest.DTMF(digits, 8000, 100, 150, 7000)...)
	if err := os.WriteFile(tones, peers.EncodePCMU(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: sippScenario(t, "uas_early_tone.xml"), Calls: 1, Timeout: 30 * time.Second,
		Keys: map[string]string{"rtp_stream": tones + ",1,0"}})
	id := uuid.NewString()
	if m, err := c.Invite(ctx, id, "sip:bob@"+uas.Addr(), pionOffer(t)); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	var got strings.Builder
	for range digits {
		m := next(t, c, "verto.info")
		if m.Str("callID") != id {
			t.Fatalf("verto.info %+v", m.Params)
		}
		got.WriteString(m.Str("dtmf"))
	}
	if got.String() != digits {
		t.Errorf("verto.info digits %q, want %q", got.String(), digits)
	}
	next(t, c, "verto.answer")
	if _, err := c.Bye(ctx, id, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	e.idle()
}
