package media

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// A WebRTC peer must never be told we send on a section we have no track for (issue 14.1):
// Chromium fires ontrack with no stream for it and @signalwire/js, which keeps the last
// event's stream, loses the caller's audio.

// withVideoDir returns offer with its video section's direction replaced by d.
func withVideoDir(t *testing.T, offer, d string) string {
	t.Helper()
	i := strings.Index(offer, "m=video")
	if i < 0 {
		t.Fatal("no video section in the offer")
	}
	v := offer[i:]
	for _, old := range []string{"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"} {
		v = strings.Replace(v, old, "a="+d, 1)
	}
	return offer[:i] + v
}

// TestAnswerVideoDirections: the answer builder (webrtcLeg.answer) for every video direction
// a peer can offer, with and without video of ours to send. A section is never answered as
// sending unless our track is behind it (msid and ssrc), and all our tracks are one stream.
func TestAnswerVideoDirections(t *testing.T) {
	e := newTestEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client := newRTCClient(t, "opus", true)
	base := client.offerPeek()
	for _, c := range []struct {
		offer     string
		sendVideo bool
		want      string
	}{
		{"sendrecv", true, "sendrecv"},
		{"sendrecv", false, "recvonly"},
		{"recvonly", true, "sendonly"},
		{"recvonly", false, "inactive"}, // issue 14: was sendonly without msid
		{"sendonly", true, "recvonly"},
		{"sendonly", false, "recvonly"},
		{"inactive", true, "inactive"},
		{"inactive", false, "inactive"},
	} {
		t.Run(fmt.Sprintf("offer %s, video to send %v", c.offer, c.sendVideo), func(t *testing.T) {
			s, err := e.newSession(typeProxy, SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			l, err := newWebRTCLeg(s, SideCaller)
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			m, err := l.setRemoteOffer(withVideoDir(t, base, c.offer))
			if err != nil {
				t.Fatal(err)
			}
			ans, err := l.answer(ctx, m, nil, c.sendVideo, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkVideo(t, "answer", ans, c.want)
			if got := browsertest.Direction(ans, "audio"); got != "sendrecv" {
				t.Errorf("audio %s, want sendrecv", got)
			}
			if got, want := l.negotiated().videoDir.String(), c.want; got != want {
				t.Errorf("negotiated video %s, want %s", got, want)
			}
		})
	}
}

// recvOnlyVideo makes c offer audio sendrecv and video recvonly, as @signalwire/js does
// (offerToReceiveVideo with no camera track).
func recvOnlyVideo(t *testing.T, c *rtcClient) {
	t.Helper()
	for _, s := range c.pc.GetSenders() {
		if tr := s.Track(); tr != nil && tr.Kind() == webrtc.RTPCodecTypeVideo {
			must(t, c.pc.RemoveTrack(s))
		}
	}
	if d := browsertest.Direction(c.offerPeek(), "video"); d != "recvonly" {
		t.Fatalf("client offers video %s, want recvonly", d)
	}
}

// offerPeek returns the offer c would make, without applying it.
func (c *rtcClient) offerPeek() string {
	o, err := c.pc.CreateOffer(nil)
	must(c.t, err)
	return o.SDP
}

func checkVideo(t *testing.T, who, sdp, want string) {
	t.Helper()
	if got := browsertest.Direction(sdp, "video"); got != want {
		t.Errorf("%s: video %q, want %q\n%s", who, got, want, sdp)
	}
	if err := browsertest.CheckSources(sdp); err != nil {
		t.Errorf("%s: %v\n%s", who, err, sdp)
	}
}

func TestSourcelessVideoProxyToRTP(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := newRTCClient(t, "opus", true)
	recvOnlyVideo(t, caller)
	peer := newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindRTP, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fo, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
	if err != nil {
		t.Fatal(err)
	}
	ans := peer.description(plainrtp.PCMU, plainrtp.TelEvent8)
	peer.use(fo)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	if err != nil {
		t.Fatal(err)
	}
	checkVideo(t, "caller answer", callerAns.SDP, "inactive")
	caller.setAnswer(callerAns.SDP)
	bothTones(t, func() { caller.sendTone(ctx, 1000, 2*time.Second) }, func() { peer.sendTone(ctx, plainrtp.PCMU, 600, 2*time.Second) }, caller.heard, peer.Heard)
	pc, _ := caller.heard()
	pf, _ := peer.Heard()
	assertTone(t, "caller", pc, 600, 1000)
	assertTone(t, "far", pf, 1000, 600)
}

func TestSourcelessVideoProxyToWebRTC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("far without video", func(t *testing.T) {
		e := newTestEngine(t, nil)
		caller := newRTCClient(t, "opus", true)
		recvOnlyVideo(t, caller)
		far := newRTCClient(t, "opus", false)
		s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		checkVideo(t, "far offer", farOffer.SDP, "recvonly")
		callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
		if err != nil {
			t.Fatal(err)
		}
		checkVideo(t, "caller answer", callerAns.SDP, "inactive")
		caller.setAnswer(callerAns.SDP)
		bothTones(t, func() { caller.sendTone(ctx, 1000, 2*time.Second) }, func() { far.sendTone(ctx, 600, 2*time.Second) }, caller.heard, far.heard)
		pc, _ := caller.heard()
		pf, _ := far.heard()
		assertTone(t, "caller", pc, 600, 1000)
		assertTone(t, "far", pf, 1000, 600)
	})
	t.Run("far sends video", func(t *testing.T) {
		e := newTestEngine(t, nil)
		caller := newRTCClient(t, "opus", true)
		recvOnlyVideo(t, caller)
		far := newRTCClient(t, "opus", true)
		s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, KindWebRTC, SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		checkVideo(t, "far offer", farOffer.SDP, "recvonly") // the caller has no video to send
		callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: far.answer(farOffer.SDP)})
		if err != nil {
			t.Fatal(err)
		}
		checkVideo(t, "caller answer", callerAns.SDP, "sendonly") // the far side's video, same stream as audio
		caller.setAnswer(callerAns.SDP)
		// The far peer talks all along, in one RTP stream (a restarted sequence would be an
		// SRTP replay from the same SSRC).
		farCtx, farStop := context.WithCancel(ctx)
		farDone := make(chan struct{})
		go func() { defer close(farDone); far.sendTone(farCtx, 600, 15*time.Second) }()
		defer func() { farStop(); <-farDone }()
		go far.sendVideo(farCtx, 50)
		caller.sendTone(ctx, 1000, 2*time.Second)
		pc, _ := caller.heard()
		assertTone(t, "caller", pc, 600, 1000)
		peers.WaitFor(t, 5*time.Second, "the far side's video at the caller", func() bool {
			caller.mu.Lock()
			defer caller.mu.Unlock()
			return caller.videoIn > 10
		})

		// A re-attach offers the caller's new PeerConnection what the old one had.
		off, err := s.ReofferWebRTC(ctx, SideCaller)
		if err != nil {
			t.Fatal(err)
		}
		checkVideo(t, "re-offer", off.SDP, "sendonly")
		caller2 := newRTCClient(t, "opus", true)
		if err := s.SetReofferAnswer(ctx, SideCaller, Description{Kind: KindWebRTC, SDP: caller2.answer(off.SDP)}); err != nil {
			t.Fatal(err)
		}
		caller2.sendTone(ctx, 1400, 2*time.Second)
		pc2, _ := caller2.heard()
		assertTone(t, "caller after re-attach", pc2, 600, 1400)
	})
}

func TestSourcelessVideoEcho(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		name    string
		sending bool
		want    string
	}{{"caller receives video only", false, "inactive"}, {"caller sends video", true, "sendrecv"}} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEngine(t, nil)
			caller := newRTCClient(t, "opus", true)
			if !c.sending {
				recvOnlyVideo(t, caller)
			}
			s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: caller.offer()}, SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkVideo(t, "echo answer", ans.SDP, c.want)
			caller.setAnswer(ans.SDP)
			caller.sendTone(ctx, 1000, 2*time.Second)
			settle(t, caller.heard)
			pc, _ := caller.heard()
			assertTone(t, "caller", pc, 1000)
			if strings.Contains(ans.SDP, "a=sendonly") && !c.sending {
				t.Fatal("echo answers sendonly to a caller sending no video")
			}
		})
	}
}
