package media

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dropAudioPT removes payload type pt from the audio m-line and its rtpmap/fmtp lines.
func dropAudioPT(t *testing.T, sdpText string, pt string) string {
	t.Helper()
	lines := strings.Split(strings.ReplaceAll(sdpText, "\r\n", "\n"), "\n")
	var out []string
	found := false
	for _, l := range lines {
		if strings.HasPrefix(l, "m=audio ") {
			f := strings.Fields(l)
			kept := f[:3]
			for _, p := range f[3:] {
				if p == pt {
					found = true
					continue
				}
				kept = append(kept, p)
			}
			l = strings.Join(kept, " ")
		}
		if strings.HasPrefix(l, "a=rtpmap:"+pt+" ") || strings.HasPrefix(l, "a=fmtp:"+pt+" ") || strings.HasPrefix(l, "a=rtcp-fb:"+pt+" ") {
			continue
		}
		out = append(out, l)
	}
	if !found {
		t.Fatalf("payload type %s not in the answer:\n%s", pt, sdpText)
	}
	return strings.Join(out, "\r\n")
}

// The far WebRTC peer answers our offer with Opus only but sends PCMU (as Chromium does with
// the first codec of an offer): the engine takes the PCMU (a payload type of its own offer),
// transcodes it, and the Opus caller hears the far tone; the far peer still gets Opus.
func TestAnswerOpusPeerSendsPCMU(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := newRTCClient(t, "opus", false)
	far := newRTCClient(t, "pcmu+opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !regexp.MustCompile(`(?m)^a=rtpmap:0 PCMU/8000`).MatchString(farOffer.SDP) {
		t.Fatalf("our offer has no PCMU:\n%s", farOffer.SDP)
	}
	farAns := dropAudioPT(t, far.answer(farOffer.SDP), "0") // the answer lists only Opus
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: farAns})
	if err != nil {
		t.Fatal(err)
	}
	caller.setAnswer(callerAns.SDP)
	bothTones(t, func() { caller.sendTone(ctx, 1000, 2*time.Second) }, func() { far.sendTone(ctx, 600, 2*time.Second) }, caller.heard, far.heard)
	pc, n := caller.heard()
	if n < 50 {
		t.Fatalf("caller got %d packets from a far peer sending PCMU", n)
	}
	assertTone(t, "caller", pc, 600, 1000)
	pf, _ := far.heard()
	assertTone(t, "far", pf, 1000, 600)
	st := s.Stats()
	if st[SideCaller].Transcoded < 50 {
		t.Fatalf("PCMU from the far side should be transcoded to the Opus caller: %+v", st)
	}
}
