package media

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

func ptr[T any](v T) *T { return &v }

// startRTPEcho starts an echo session for a plain RTP peer offering PCMU.
func startRTPEcho(t *testing.T, e *Engine, p *rtpPeer, opts SessionOptions) *Session {
	t.Helper()
	s, ans, err := e.StartEcho(context.Background(), Description{Kind: KindRTP, SDP: p.description(plainrtp.PCMU, plainrtp.TelEvent8).String()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := plainrtp.ParseSDP([]byte(ans.SDP))
	if err != nil {
		t.Fatal(err)
	}
	p.use(ad)
	return s
}

func TestEchoMuteAndRecord(t *testing.T) {
	e := newTestEngine(t, nil)
	p := newRTPPeer(t)
	ctx := context.Background()
	s := startRTPEcho(t, e, p, SessionOptions{ID: "rec/../1", Media: MediaOptions{UseAudio: ptr(false), Record: ptr(true)}})
	defer s.Close()
	p.sendTone(ctx, plainrtp.PCMU, 1000, 600*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the subject: the echo of the last packets would be back by now
	if _, n := p.Heard(); n != 0 {
		t.Fatalf("muted echo returned %d packets", n)
	}
	if err := s.Update(MediaOptions{UseAudio: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	p.sendTone(ctx, plainrtp.PCMU, 1000, time.Second)
	settle(t, p.Heard)
	pcm, _ := p.Heard()
	assertTone(t, "unmuted echo", pcm, 1000, 600)
	if err := s.Update(MediaOptions{Record: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	paths := s.RecordPaths()
	if len(paths) != 1 || !strings.HasPrefix(paths[0], e.cfg.RecordDir+"/rec____1-caller-") {
		t.Fatalf("record paths %v", paths)
	}
	rec, rate, err := audiotest.ReadWAV(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	// Both tones (muted and not: recording is of what the caller sends) are in the file.
	if rate != 8000 || len(rec) < 12000 {
		t.Fatalf("recording: %d samples at %d Hz", len(rec), rate)
	}
	assertTone(t, "recording", rec, 1000, 600)
}

func TestRecordRefusedWithoutDir(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.RecordDir = "" })
	p := newRTPPeer(t)
	s := startRTPEcho(t, e, p, SessionOptions{})
	defer s.Close()
	if err := s.Update(MediaOptions{Record: ptr(true)}); err != ErrNoRecordDir {
		t.Fatalf("record without dir: %v", err)
	}
	if err := s.Update(MediaOptions{Bitrate: ptr(-5)}); err == nil {
		t.Fatal("negative bitrate accepted")
	}
}

func TestMediaTimeoutAndHold(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 300 * time.Millisecond })
	p := newRTPPeer(t)
	stopped := make(chan StopInfo, 1)
	start := time.Now()
	s := startRTPEcho(t, e, p, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	select {
	case i := <-stopped:
		if i.Cause != CauseMediaTimeout || !strings.Contains(i.Reason, "no RTP") {
			t.Fatalf("stop %+v", i)
		}
		t.Logf("stopped after %v: %s", time.Since(start), i.Reason)
	case <-time.After(3 * time.Second):
		t.Fatal("no media timeout")
	}
	<-s.Done()
	if e.Sessions() != 0 || e.Pool().InUse() != 0 {
		t.Fatalf("sessions %d ports %d after timeout", e.Sessions(), e.Pool().InUse())
	}

	// On hold: no timeout.
	s2 := startRTPEcho(t, e, newRTPPeer(t), SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	s2.SetHold(true)
	select {
	case i := <-stopped:
		t.Fatalf("held session stopped: %+v", i)
	case <-time.After(time.Second):
	}
	s2.SetHold(false)
	select {
	case i := <-stopped:
		if i.Cause != CauseMediaTimeout {
			t.Fatalf("stop %+v", i)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no media timeout after resume")
	}
}

func TestMediaKeepsSessionAlive(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 300 * time.Millisecond })
	p := newRTPPeer(t)
	stopped := make(chan StopInfo, 1)
	s := startRTPEcho(t, e, p, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	defer s.Close()
	p.sendTone(context.Background(), plainrtp.PCMU, 1000, time.Second)
	select {
	case i := <-stopped:
		t.Fatalf("session with media stopped: %+v", i)
	default:
	}
}

func TestEchoVideoPLIAndREMB(t *testing.T) {
	e := newTestEngine(t, nil)
	c := newRTCClient(t, "opus", true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{Media: MediaOptions{Bitrate: ptr(300000)}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(ans.SDP, "m=video") || !strings.Contains(ans.SDP, "VP8/90000") {
		t.Fatalf("answer has no VP8 video:\n%s", ans.SDP)
	}
	c.setAnswer(ans.SDP)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.sendVideo(ctx, 75) }()
	c.sendTone(ctx, 600, 1500*time.Millisecond)
	wg.Wait()
	settle(t, c.heard)
	pcm, _ := c.heard()
	assertTone(t, "echo with video", pcm, 600, 1000)
	peers.WaitFor(t, 3*time.Second, "REMB", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.remb) > 0 })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.videoIn < 50 {
		t.Fatalf("video echoed: %d packets", c.videoIn)
	}
	if c.pli == 0 {
		t.Fatal("no PLI asked of the video sender")
	}
	if len(c.remb) == 0 {
		t.Fatal("no REMB cap sent")
	}
	for _, b := range c.remb {
		if b > 300000 {
			t.Fatalf("REMB %d above the 300000 cap", b)
		}
	}
	t.Logf("video %d packets, PLI %d, REMB %v", c.videoIn, c.pli, c.remb)
	if err := s.Update(MediaOptions{UseVideo: ptr(false)}); err != nil {
		t.Fatal(err)
	}
}

func TestTrickleICE(t *testing.T) {
	e := newTestEngine(t, nil)
	c := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var cands []webrtc.ICECandidateInit
	gathered := make(chan struct{})
	c.pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic == nil {
			close(gathered)
			return
		}
		mu.Lock()
		cands = append(cands, ic.ToJSON())
		mu.Unlock()
	})
	o, err := c.pc.CreateOffer(nil)
	must(t, err)
	must(t, c.pc.SetLocalDescription(o))
	if strings.Contains(o.SDP, "a=candidate") {
		t.Fatal("offer already has candidates")
	}
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: o.SDP}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.setAnswer(ans.SDP)
	<-gathered
	mu.Lock()
	if len(cands) == 0 {
		t.Fatal("client gathered no candidates")
	}
	for _, ci := range cands {
		must(t, s.AddCandidate(SideCaller, Candidate{Candidate: ci.Candidate, SDPMid: ci.SDPMid, SDPMLineIndex: ci.SDPMLineIndex}))
	}
	mu.Unlock()
	must(t, s.CandidatesEnd(SideCaller))
	if err := s.AddCandidate(SideCaller, Candidate{Candidate: "candidate:garbage"}); err == nil {
		t.Fatal("garbage candidate accepted")
	}
	c.sendTone(ctx, 1000, 1500*time.Millisecond)
	settle(t, c.heard)
	pcm, _ := c.heard()
	assertTone(t, "trickle echo", pcm, 1000, 600)
}

func TestICELiteAndNAT(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.ICELite = true })
	c := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(ans.SDP, "a=ice-lite") {
		t.Fatalf("answer is not ICE-lite:\n%s", ans.SDP)
	}
	c.setAnswer(ans.SDP)
	c.sendTone(ctx, 1000, 1500*time.Millisecond)
	settle(t, c.heard)
	pcm, _ := c.heard()
	assertTone(t, "ice-lite echo", pcm, 1000, 600)

	// NAT 1:1: the advertised address replaces the bound one (no media is sent to it).
	pub := "192.0.2.77"
	e2 := newTestEngine(t, func(c *Config) { c.PublicIP = mustAddr(pub) })
	c2 := newRTCClient(t, "opus", false)
	s2, ans2, err := e2.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c2.offer()}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if !strings.Contains(ans2.SDP, pub+" ") || strings.Contains(ans2.SDP, "127.0.0.1 ") {
		t.Fatalf("NAT answer candidates:\n%s", ans2.SDP)
	}
	p := newRTPPeer(t)
	s3, ans3, err := e2.StartEcho(ctx, Description{Kind: KindRTP, SDP: p.description(plainrtp.PCMU).String()}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s3.Close()
	if !strings.Contains(ans3.SDP, "c=IN IP4 "+pub) {
		t.Fatalf("RTP answer:\n%s", ans3.SDP)
	}
}

func TestICETCP(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.TCPPort = -1 })
	if e.TCPPort() == 0 {
		t.Fatal("no TCP port")
	}
	// A client that can only do TCP (active), so media must use the engine's TCP port.
	c := newRTCClientWith(t, "opus", false, func(se *webrtc.SettingEngine) {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(ans.SDP, "tcptype passive") {
		t.Fatalf("answer has no passive TCP candidate:\n%s", ans.SDP)
	}
	c.setAnswer(ans.SDP)
	c.sendTone(ctx, 1000, 1500*time.Millisecond)
	settle(t, c.heard)
	pcm, _ := c.heard()
	assertTone(t, "ICE-TCP echo", pcm, 1000, 600)
	pair, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected pair: %v", err)
	}
	t.Logf("selected pair %s", pair)
	if pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("selected pair is not TCP: %s", pair)
	}
}

func TestPeerCloseStops(t *testing.T) {
	e := newTestEngine(t, nil)
	c := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan StopInfo, 1)
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	if err != nil {
		t.Fatal(err)
	}
	c.setAnswer(ans.SDP)
	c.sendTone(ctx, 1000, 400*time.Millisecond)
	c.close()
	select {
	case i := <-stopped:
		if i.Cause != CausePeerClosed && i.Cause != CauseICEFailed {
			t.Fatalf("stop %+v", i)
		}
		t.Logf("stopped: %+v", i)
	case <-time.After(5 * time.Second):
		t.Fatal("session did not stop when the peer closed")
	}
	<-s.Done()
}

func TestDTLSFingerprintMismatchStops(t *testing.T) {
	e := newTestEngine(t, nil)
	c := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan StopInfo, 1)
	off := c.offer()
	i := strings.Index(off, "a=fingerprint:sha-256 ") + len("a=fingerprint:sha-256 ")
	bad := off[:i] + strings.Repeat("AB:", 31) + "AB" + off[i+95:]
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: bad}, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.setAnswer(ans.SDP)
	select {
	case i := <-stopped:
		if i.Cause != CauseDTLSFailed {
			t.Fatalf("stop %+v", i)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("no DTLS failure")
	}
}

// TestReofferRTP: a SIP re-INVITE moves the RTP peer to a new address (media follows) and
// puts the call on hold (no media timeout) and back.
func TestReofferRTP(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MediaTimeout = 400 * time.Millisecond })
	p1 := newRTPPeer(t)
	stopped := make(chan StopInfo, 1)
	s := startRTPEcho(t, e, p1, SessionOptions{OnStop: func(i StopInfo) { stopped <- i }})
	defer s.Close()
	ctx := context.Background()
	p1.sendTone(ctx, plainrtp.PCMU, 1000, 300*time.Millisecond)
	port := p1.Remote().Port()

	p2 := newRTPPeer(t)
	ans, err := s.ReofferRTP(SideCaller, Description{Kind: KindRTP, SDP: p2.description(plainrtp.PCMU, plainrtp.TelEvent8).String()})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := plainrtp.ParseSDP([]byte(ans.SDP))
	if err != nil {
		t.Fatal(err)
	}
	if ad.Port != int(port) {
		t.Fatalf("re-answer moved our port %d -> %d", port, ad.Port)
	}
	p2.use(ad)
	// The tone goes on until the hold is in place: a pause longer than the
	// media timeout (400 ms, easily reached on a loaded machine) would end
	// the call before the hold.
	sendCtx, stopSending := context.WithCancel(ctx)
	sending := make(chan struct{})
	go func() { defer close(sending); p2.sendTone(sendCtx, plainrtp.PCMU, 600, 20*time.Second) }()
	peers.WaitFor(t, 5*time.Second, "a second of the moved peer's echo", func() bool { pcm, _ := p2.Heard(); return len(pcm) >= 8000 })
	pcm, _ := p2.Heard()
	assertTone(t, "moved peer", pcm, 600, 1000)

	hold := p2.description(plainrtp.PCMU)
	hold.Direction = plainrtp.SendOnly
	_, err = s.ReofferRTP(SideCaller, Description{Kind: KindRTP, SDP: hold.String()})
	stopSending()
	<-sending
	if err != nil {
		t.Fatal(err)
	}
	if !s.Held() {
		t.Fatal("sendonly re-offer did not hold the call")
	}
	select {
	case i := <-stopped:
		t.Fatalf("held call stopped: %+v", i)
	case <-time.After(time.Second):
	}
	if _, err := s.ReofferRTP(SideCaller, Description{Kind: KindRTP, SDP: p2.description(plainrtp.PCMU).String()}); err != nil {
		t.Fatal(err)
	}
	if s.Held() {
		t.Fatal("sendrecv re-offer did not resume")
	}
	select {
	case i := <-stopped:
		if i.Cause != CauseMediaTimeout {
			t.Fatalf("stop %+v", i)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no media timeout after resume")
	}
	if _, err := s.ReofferRTP(SideFar, Description{Kind: KindRTP, SDP: hold.String()}); err == nil {
		t.Fatal("re-offer on a missing leg accepted")
	}
}

// TestProxyVideoWebRTC: video passes through a WebRTC⇄WebRTC proxy.
func TestProxyVideoWebRTC(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := newRTCClient(t, "opus", true)
	far := newRTCClient(t, "opus", true)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(farOffer.SDP, "m=video") {
		t.Fatal("far offer has no video")
	}
	ans, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
	if err != nil {
		t.Fatal(err)
	}
	caller.setAnswer(ans.SDP)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); caller.sendVideo(ctx, 60) }()
	go func() { defer wg.Done(); far.sendVideo(ctx, 60) }()
	caller.sendTone(ctx, 1000, 1200*time.Millisecond)
	wg.Wait()
	var fv, cv, pli int
	peers.WaitFor(t, 5*time.Second, "video both ways and a PLI to the caller", func() bool {
		far.mu.Lock()
		fv = far.videoIn
		far.mu.Unlock()
		caller.mu.Lock()
		cv, pli = caller.videoIn, caller.pli
		caller.mu.Unlock()
		return fv >= 40 && cv >= 40 && pli > 0
	})
	settle(t, far.heard)
	t.Logf("video caller->far %d, far->caller %d, PLIs to caller %d", fv, cv, pli)
	pcm, _ := far.heard()
	assertTone(t, "far (with video)", pcm, 1000, 600)
}

// TestCloseFromCallbacks: OnDTMF may close the session (no deadlock with the media
// goroutine that saw the digit), and closing races with starting are clean.
func TestCloseFromCallbacks(t *testing.T) {
	e := newTestEngine(t, nil)
	p := newRTPPeer(t)
	var s *Session
	got := make(chan rune, 1)
	ready := make(chan struct{})
	s = startRTPEcho(t, e, p, SessionOptions{OnDTMF: func(_ Side, d rune) {
		<-ready
		s.Close()
		got <- d
	}})
	close(ready)
	p.sendDigit('4', plainrtp.TelEvent8)
	select {
	case d := <-got:
		if d != '4' {
			t.Fatalf("digit %q", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("OnDTMF did not run or Close deadlocked")
	}
	<-s.Done()
	if e.Sessions() != 0 || e.Pool().InUse() != 0 {
		t.Fatalf("sessions %d ports %d", e.Sessions(), e.Pool().InUse())
	}

	// Engine shutdown while sessions are being started: every start either succeeds (and is
	// then stopped) or fails cleanly; nothing stays open.
	e2 := newTestEngine(t, nil)
	offers := make([]Description, 8)
	for i := range offers {
		offers[i] = Description{Kind: KindRTP, SDP: newRTPPeer(t).description(plainrtp.PCMU).String()}
		if i%2 == 0 {
			offers[i] = Description{Kind: KindWebRTC, SDP: goodOffer(t)}
		}
	}
	var wg sync.WaitGroup
	var ok, failed atomic.Int32
	for i := range offers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 3 * time.Millisecond) // the subject: starts spread over the shutdown
			if s, _, err := e2.StartEcho(context.Background(), offers[i], SessionOptions{}); err == nil {
				ok.Add(1)
				<-s.Done()
			} else {
				failed.Add(1)
			}
		}()
	}
	time.Sleep(10 * time.Millisecond) // the subject: Close while the first starts are under way
	e2.Close()
	wg.Wait()
	t.Logf("starts racing shutdown: %d succeeded (then stopped), %d refused", ok.Load(), failed.Load())
	if e2.Sessions() != 0 || e2.Pool().InUse() != 0 {
		t.Fatalf("after racing close: sessions %d ports %d", e2.Sessions(), e2.Pool().InUse())
	}
}
