package media

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// TestEdgeRTPHijackStranger is issue 13.8's attack on the real engine: a browser (pion PCMU
// peer) calls a SIP phone (plain RTP); a stranger on the same host sends RTP to the phone
// leg's port before the phone does and keeps sending while the phone is silent for longer than
// the old 2 s re-latch delay. With the default latch mode the stranger receives nothing and
// injects nothing: the browser hears only the phone's tone, the phone only the browser's.
func TestEdgeRTPHijackStranger(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 20 * time.Second })
	browser := peers.NewPCMUPeer(t, "browser")
	phone := newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: browser.Offer()}, KindRTP, SessionOptions{})
	must(t, err)
	defer s.Close()
	off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
	must(t, err)
	ans, err := plainrtp.Answer(off, loopback, phone.Port(), []plainrtp.Codec{plainrtp.PCMU}, nil)
	must(t, err)
	phone.use(off)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	must(t, err)
	browser.SetAnswer(callerAns.SDP)

	// The stranger: 2000 Hz from its own socket to the phone leg's port, all call long; it
	// counts whatever comes back.
	stranger := newRTPPeer(t)
	stranger.use(off)
	var wg sync.WaitGroup
	var phoneDone atomic.Bool
	wg.Add(3)
	go func() { // the stranger starts first and never stops before the phone is done
		defer wg.Done()
		for !phoneDone.Load() && ctx.Err() == nil {
			stranger.sendTone(ctx, plainrtp.PCMU, 2000, 500*time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		browser.SendToneFor(ctx, 1000, 6*time.Second)
	}()
	go func() {
		defer wg.Done()
		defer phoneDone.Store(true)
		time.Sleep(300 * time.Millisecond) // the scenario: the stranger sends first
		phone.sendTone(ctx, plainrtp.PCMU, 600, 1500*time.Millisecond)
		time.Sleep(2500 * time.Millisecond) // the phone is silent longer than the old re-latch delay
		phone.sendTone(ctx, plainrtp.PCMU, 600, 1500*time.Millisecond)
	}()
	wg.Wait()
	settle(t, phone.Heard)
	settle(t, browser.Heard)

	if n := stranger.Count(); n != 0 {
		t.Errorf("the stranger received %d packets of the call", n)
	}
	heard, _ := browser.Heard()
	assertTone(t, "browser", heard, 600, 2000, 1000)
	pf, _ := phone.Heard()
	assertTone(t, "phone", pf, 1000, 2000, 600)
	if st := s.Stats()[SideFar]; st.PacketsIn > 160 {
		t.Errorf("the phone leg took %d packets: more than the phone sent", st.PacketsIn)
	}
}

// TestEdgeRTPPortsNotSequential: the RTP ports of consecutive sessions do not follow each
// other, so one call's port does not give away the next one's.
func TestEdgeRTPPortsNotSequential(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ports []int
	for range 12 {
		phone := newRTPPeer(t)
		s, ans, err := e.StartEcho(ctx, Description{Kind: KindRTP, SDP: phone.description(plainrtp.PCMU).String()}, SessionOptions{})
		must(t, err)
		defer s.Close()
		d, err := plainrtp.ParseSDP([]byte(ans.SDP))
		must(t, err)
		ports = append(ports, d.Port)
	}
	next := 0
	for i := 1; i < len(ports); i++ {
		if ports[i]-ports[i-1] == 2 {
			next++
		}
	}
	// 100 pairs at random: one pair apart is rare (expected 0.1 of 11 steps).
	if next > 3 {
		t.Fatalf("ports of consecutive sessions in sequence: %v", ports)
	}
	t.Logf("ports %v", ports)
}
