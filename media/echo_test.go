package media

import (
	"context"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/media/plainrtp"
)

func TestEchoWebRTC(t *testing.T) {
	e := newTestEngine(t, nil)
	c := newRTCClient(t, "opus", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: c.offer()}, SessionOptions{ID: "echo1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.setAnswer(ans.SDP)
	c.sendTone(ctx, 1000, 2*time.Second)
	settle(t, c.heard)
	pcm, pkts := c.heard()
	if pkts < 50 {
		t.Fatalf("client received %d packets", pkts)
	}
	assertTone(t, "webrtc echo", pcm, 1000, 600, 1500)
}

func TestEchoRTP(t *testing.T) {
	e := newTestEngine(t, nil)
	p := newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	off := p.description(plainrtp.PCMA, plainrtp.TelEvent8)
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindRTP, SDP: off.String()}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ad, err := plainrtp.ParseSDP([]byte(ans.SDP))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ad.MainCodec(); c.Name != "PCMA" || ad.Port < 30000 {
		t.Fatalf("answer: %s", ans.SDP)
	}
	p.use(ad)
	p.sendTone(ctx, plainrtp.PCMA, 600, time.Second)
	settle(t, p.Heard)
	pcm, _ := p.Heard()
	assertTone(t, "rtp echo", pcm, 600, 1000)
}
