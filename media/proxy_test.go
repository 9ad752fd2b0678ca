package media

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// bothTones runs two senders at once, then waits for the last packets the sides hear.
func bothTones(t testing.TB, a, b func(), heard ...func() ([]int16, int)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a() }()
	go func() { defer wg.Done(); b() }()
	wg.Wait()
	for _, h := range heard {
		settle(t, h)
	}
}

func TestProxyWebRTCToWebRTC(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := newRTCClient(t, "opus", false)
	far := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if farOffer.Kind != KindWebRTC {
		t.Fatalf("far offer kind %q", farOffer.Kind)
	}
	if err := s.Update(MediaOptions{}); err != ErrState {
		t.Fatalf("update before answer: %v", err)
	}
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
	if err != nil {
		t.Fatal(err)
	}
	caller.setAnswer(callerAns.SDP)
	if _, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: farOffer.SDP}); err != ErrState {
		t.Fatalf("second SetAnswer: %v", err)
	}
	bothTones(t, func() { caller.sendTone(ctx, 1000, 2*time.Second) }, func() { far.sendTone(ctx, 600, 2*time.Second) }, caller.heard, far.heard)
	pc, _ := caller.heard()
	pf, _ := far.heard()
	assertTone(t, "caller", pc, 600, 1000)
	assertTone(t, "far", pf, 1000, 600)
	st := s.Stats()
	if st[SideCaller].Transcoded != 0 || st[SideFar].Transcoded != 0 || st[SideFar].Forwarded < 50 {
		t.Fatalf("opus/opus should be passthrough: %+v", st)
	}
}

// proxyToRTP runs a WebRTC caller (clientCodec) against a plain RTP far peer that only
// accepts farCodec, and checks both directions by tone.
func proxyToRTP(t *testing.T, clientCodec string, farCodec plainrtp.Codec) [2]LegStats {
	e := newTestEngine(t, nil)
	caller := newRTCClient(t, clientCodec, false)
	peer := newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindRTP, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
	if err != nil {
		t.Fatalf("far offer: %v\n%s", err, farOffer.SDP)
	}
	ans, err := plainrtp.Answer(off, loopback, peer.Port(), []plainrtp.Codec{farCodec, plainrtp.TelEvent8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer.use(off)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	if err != nil {
		t.Fatal(err)
	}
	caller.setAnswer(callerAns.SDP)
	bothTones(t, func() { caller.sendTone(ctx, 1000, 2*time.Second) }, func() { peer.sendTone(ctx, farCodec, 600, 2*time.Second) }, caller.heard, peer.Heard)
	pc, _ := caller.heard()
	pf, _ := peer.Heard()
	assertTone(t, "webrtc caller", pc, 600, 1000)
	assertTone(t, "rtp far", pf, 1000, 600)
	return s.Stats()
}

func TestProxyWebRTCToRTPPassthroughPCMU(t *testing.T) {
	st := proxyToRTP(t, "pcmu", plainrtp.PCMU)
	if st[SideFar].Transcoded != 0 || st[SideCaller].Transcoded != 0 || st[SideFar].Forwarded < 50 {
		t.Fatalf("PCMU both sides must be passthrough: %+v", st)
	}
}

func TestProxyWebRTCToRTPTranscodeOpusPCMU(t *testing.T) {
	st := proxyToRTP(t, "opus", plainrtp.PCMU)
	if st[SideFar].Transcoded < 50 || st[SideCaller].Transcoded < 50 {
		t.Fatalf("opus caller vs PCMU far must transcode both ways: %+v", st)
	}
}

func TestProxyWebRTCToRTPTranscodeOpusPCMA(t *testing.T) {
	st := proxyToRTP(t, "opus", plainrtp.PCMA)
	if st[SideFar].Transcoded < 50 {
		t.Fatalf("must transcode: %+v", st)
	}
}

// RTP caller (a SIP call) to a WebRTC far side.
func TestProxyRTPToWebRTC(t *testing.T) {
	e := newTestEngine(t, nil)
	peer := newRTPPeer(t)
	far := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []rune
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: peer.description(plainrtp.PCMU, plainrtp.TelEvent8).String()},
		KindWebRTC, SessionOptions{OnDTMF: func(from Side, d rune) {
			mu.Lock()
			defer mu.Unlock()
			if from == SideCaller {
				got = append(got, d)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := plainrtp.ParseSDP([]byte(callerAns.SDP))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ad.MainCodec(); c.Name != "PCMU" {
		t.Fatalf("caller answer codec %v", c)
	}
	peer.use(ad)
	bothTones(t, func() { peer.sendTone(ctx, plainrtp.PCMU, 1000, 2*time.Second) }, func() { far.sendTone(ctx, 600, 2*time.Second) }, peer.Heard, far.heard)
	pc, _ := peer.Heard()
	pf, _ := far.heard()
	assertTone(t, "rtp caller", pc, 600, 1000)
	assertTone(t, "webrtc far", pf, 1000, 600)

	// DTMF from the RTP caller (PT 101, 8 kHz) reaches the Opus WebRTC side as
	// telephone-event/48000 (PT 110 in the engine's offer), and is reported.
	peer.sendDigit('7', plainrtp.TelEvent8)
	peer.sendDigit('#', plainrtp.TelEvent8)
	peers.WaitFor(t, 3*time.Second, "digits at the WebRTC side", func() bool { d, _ := far.digits(); return len(d) == 2 })
	d, pts := far.digits()
	if d != "7#" {
		t.Fatalf("webrtc side got digits %q", d)
	}
	for _, pt := range pts {
		if pt != 110 {
			t.Fatalf("telephone-event arrived with PT %d, want 110", pt)
		}
	}
	mu.Lock()
	if string(got) != "7#" {
		t.Fatalf("OnDTMF got %q", string(got))
	}
	mu.Unlock()

	// DTMF generated by the engine toward the RTP caller.
	if err := s.SendDTMF(ctx, SideCaller, "19", 80); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 2*time.Second, "digits at the RTP side", func() bool {
		return len(peer.Digits()) == 2
	})
	if digits, pts := peer.Digits(), peer.EventPTs(); digits != "19" || pts[0] != 101 {
		t.Fatalf("rtp side got %q pts %v", digits, pts)
	}
}

// TestProxyRTPToRTPConcurrentAnswers: two SetAnswer calls at once — exactly one wins, and the
// call then carries audio both ways (PCMA caller, PCMU-only far side: transcoded).
func TestProxyRTPToRTPConcurrentAnswers(t *testing.T) {
	e := newTestEngine(t, nil)
	a, b := newRTPPeer(t), newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: a.description(plainrtp.PCMA).String()}, KindRTP, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off, _ := plainrtp.ParseSDP([]byte(farOffer.SDP))
	ans, _ := plainrtp.Answer(off, loopback, b.Port(), []plainrtp.Codec{plainrtp.PCMU}, nil)
	b.use(off)
	var wg sync.WaitGroup
	results := make([]error, 2)
	answers := make([]Description, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], results[i] = s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range results {
		switch {
		case err == nil:
			if won >= 0 {
				t.Fatal("both SetAnswer calls succeeded")
			}
			won = i
		case err != ErrState:
			t.Fatalf("losing SetAnswer: %v", err)
		}
	}
	if won < 0 {
		t.Fatalf("no SetAnswer succeeded: %v", results)
	}
	ad, err := plainrtp.ParseSDP([]byte(answers[won].SDP))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ad.MainCodec(); c.Name != "PCMA" {
		t.Fatalf("caller answer codec %v (only PCMA was offered)", c)
	}
	a.use(ad)
	bothTones(t, func() { a.sendTone(ctx, plainrtp.PCMA, 1000, time.Second) }, func() { b.sendTone(ctx, plainrtp.PCMU, 600, time.Second) }, a.Heard, b.Heard)
	pa, _ := a.Heard()
	pb, _ := b.Heard()
	assertTone(t, "PCMA caller", pa, 600, 1000)
	assertTone(t, "PCMU far", pb, 1000, 600)
	if st := s.Stats(); st[SideFar].Transcoded < 40 || st[SideCaller].Transcoded < 40 {
		t.Fatalf("PCMA⇄PCMU must transcode: %+v", st)
	}
}
