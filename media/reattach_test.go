package media

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A WebRTC caller of an echo session closes its PeerConnection (a page reload) while the
// side is detached: the session survives its peer_closed and a media timeout, then a new
// PeerConnection is re-attached with ReofferWebRTC/SetReofferAnswer and hears its own tone.
func TestReattachEchoWebRTC(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 800 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopped := make(chan StopInfo, 1)
	c1 := newRTCClient(t, "opus", false)
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c1.offer()}, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c1.setAnswer(ans.SDP)
	c1.sendTone(ctx, 1000, time.Second)
	pcm, _ := c1.heard()
	assertTone(t, "first client", pcm, 1000)

	if _, err := s.ReofferWebRTC(ctx, SideFar); !errors.Is(err, ErrState) {
		t.Fatalf("re-offer of a missing leg: %v", err)
	}
	if err := s.SetReofferAnswer(ctx, SideCaller, Description{Kind: KindWebRTC, SDP: "v=0"}); !errors.Is(err, ErrState) {
		t.Fatalf("answer without a re-offer: %v", err)
	}
	if err := s.Detach(SideCaller, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	c1.close() // the page goes away: DTLS close and no more RTP
	select {
	case i := <-stopped:
		t.Fatalf("detached session stopped: %+v", i)
	case <-time.After(3 * time.Second): // > the 0.8 s media timeout, and the peer close has come
	}
	if !s.Detached(SideCaller) {
		t.Fatal("not detached")
	}
	before := s.Stats()[SideCaller].PacketsIn

	// A bad answer leaves the session detached and working.
	if _, err := s.ReofferWebRTC(ctx, SideCaller); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReofferAnswer(ctx, SideCaller, Description{Kind: KindWebRTC, SDP: "garbage"}); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("bad answer: %v", err)
	}

	c2 := newRTCClient(t, "opus", false)
	off, err := s.ReofferWebRTC(ctx, SideCaller)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReofferAnswer(ctx, SideCaller, Description{Kind: KindWebRTC, SDP: c2.answer(off.SDP)}); err != nil {
		t.Fatal(err)
	}
	if s.Detached(SideCaller) {
		t.Fatal("still detached after re-attach")
	}
	c2.sendTone(ctx, 600, 1500*time.Millisecond)
	pcm, n := c2.heard()
	if n < 25 {
		t.Fatalf("second client got %d packets", n)
	}
	assertTone(t, "second client", pcm, 600, 1000)
	st := s.Stats()[SideCaller]
	if st.PacketsIn < before+50 {
		t.Fatalf("packets in: %d before, %+v after", before, st)
	}
	select {
	case i := <-stopped:
		t.Fatalf("stopped: %+v", i)
	default:
	}
	// Re-attached: the media timeout applies again.
	c2.close()
	select {
	case i := <-stopped:
		if i.Cause != CausePeerClosed && i.Cause != CauseMediaTimeout && i.Cause != CauseICEFailed {
			t.Fatalf("stop %+v", i)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("re-attached session did not stop when its new peer left")
	}
}

// In a WebRTC⇄WebRTC proxy the caller's PeerConnection is replaced; the far peer keeps its
// PeerConnection and hears the new caller's tone, and the new caller hears the far peer.
func TestReattachProxyFarUntouched(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caller := newRTCClient(t, "opus", false)
	far := newRTCClient(t, "pcmu", false)
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
	if err != nil {
		t.Fatal(err)
	}
	caller.setAnswer(callerAns.SDP)
	// The far peer talks all along, in one RTP stream (a restarted sequence would be an SRTP
	// replay from the same SSRC).
	farCtx, farStop := context.WithCancel(ctx)
	farDone := make(chan struct{})
	go func() { defer close(farDone); far.sendTone(farCtx, 600, 15*time.Second) }()
	defer func() { farStop(); <-farDone }()
	caller.sendTone(ctx, 1000, time.Second)
	settle(t, far.heard)
	pf, farPkts := far.heard()
	assertTone(t, "far", pf, 1000, 600)

	if err := s.Detach(SideCaller, time.Minute); err != nil {
		t.Fatal(err)
	}
	caller.close()
	caller2 := newRTCClient(t, "opus", false)
	off, err := s.ReofferWebRTC(ctx, SideCaller)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReofferAnswer(ctx, SideCaller, Description{Kind: KindWebRTC, SDP: caller2.answer(off.SDP)}); err != nil {
		t.Fatal(err)
	}
	caller2.sendTone(ctx, 1400, 1500*time.Millisecond)
	settle(t, far.heard) // the far side hears only the caller; the caller hears the far's endless tone
	pc2, n2 := caller2.heard()
	t.Logf("new caller: %d packets; stats %+v", n2, s.Stats())
	assertTone(t, "new caller", pc2, 600, 1400)
	pf, farPkts2 := far.heard()
	if farPkts2 < farPkts+50 {
		t.Fatalf("far got %d packets before, %d after the re-attach", farPkts, farPkts2)
	}
	assertTone(t, "far after re-attach", pf[len(pf)-8000:], 1400, 600)
	select {
	case <-s.Done():
		t.Fatal("session stopped")
	default:
	}
}

// A detached side that is not re-attached within its grace period stops the session.
func TestDetachGraceExpires(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopped := make(chan StopInfo, 1)
	c := newRTCClient(t, "opus", false)
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.setAnswer(ans.SDP)
	if err := s.Detach(SideCaller, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.close()
	select {
	case i := <-stopped:
		if i.Cause != CausePeerClosed || time.Since(start) < time.Second {
			t.Fatalf("stop %+v after %s", i, time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("grace period did not end the session")
	}
	if _, err := s.ReofferWebRTC(ctx, SideCaller); err == nil {
		t.Fatal("re-offer on a stopped session")
	}
}

// DeferPeerClose: the page's PeerConnection closes before the signalling notices; a Detach
// within the delay keeps the session; without one the session stops after the delay.
func TestDeferPeerClose(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func() (*Session, *rtcClient, chan StopInfo) {
		stopped := make(chan StopInfo, 1)
		c := newRTCClient(t, "opus", false)
		s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		c.setAnswer(ans.SDP)
		if err := s.DeferPeerClose(SideCaller, 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		c.sendTone(ctx, 1000, 300*time.Millisecond)
		return s, c, stopped
	}
	// Detached late: kept.
	s1, c1, stopped1 := start()
	c1.close()
	time.Sleep(500 * time.Millisecond) // the peer close has reached the engine
	if err := s1.Detach(SideCaller, time.Minute); err != nil {
		t.Fatal(err)
	}
	// Not detached: stopped after the delay.
	_, c2, stopped2 := start()
	closed := time.Now()
	c2.close()
	select {
	case i := <-stopped2:
		if i.Cause != CausePeerClosed && i.Cause != CauseICEFailed || time.Since(closed) < time.Second {
			t.Fatalf("stop %+v after %s", i, time.Since(closed))
		}
	case <-time.After(8 * time.Second):
		t.Fatal("peer close never stopped the session")
	}
	select {
	case i := <-stopped1:
		t.Fatalf("detached session stopped: %+v", i)
	case <-time.After(500 * time.Millisecond):
	}
}
