package embedded_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// newPCPeer is a PCMU pion peer standing in for the browser page of a Verto call.
func newPCPeer(t testing.TB) *peers.PCMUPeer { return peers.NewPCMUPeer(t, "page") }

// TestReattachWebRTCCaller: a WebRTC page calls a plain-RTP phone through a proxy session;
// the page reloads (its PeerConnection closes, then the caller side is detached), a new
// PeerConnection is re-attached through Media.ReattachOffer / ReattachAnswer, and both
// parties hear each other again; the phone's leg is never renegotiated.
func TestReattachWebRTCCaller(t *testing.T) {
	e := newEnv(t, func(c *media.Config) { c.MediaTimeout = time.Second })
	c := dialAPI(t, e, "alice")
	page, phone := newPCPeer(t), newRTPPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
		"offer": map[string]any{"sdp": page.Offer(), "sdp_type": "webrtc"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	farOffer, _ := sdpOf(t, r, "offer")
	phone.UseSDP(farOffer)
	r, err = c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": phone.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := sdpOf(t, r, "answer")
	page.SetAnswer(ans)
	m, ok := e.be.Media(id)
	if !ok {
		t.Fatal("no media")
	}
	if err := m.CanReattach(signaling.SideFar); codeOf2(err) != signaling.CodeInvalidOperation {
		t.Errorf("CanReattach of the plain RTP side: %v, want 1045", err)
	}
	if err := m.CanReattach(signaling.SideCaller); err != nil {
		t.Errorf("CanReattach of the WebRTC side: %v", err)
	}
	if _, err := m.ReattachOffer(ctx, signaling.SideFar); codeOf2(err) != signaling.CodeInvalidOperation {
		t.Errorf("re-attach of the plain RTP side: %v, want 1045", err)
	}
	if err := m.ReattachAnswer(ctx, signaling.SideCaller, "v=0"); codeOf2(err) != signaling.CodeInvalidOperation {
		t.Errorf("answer without offer: %v, want 1045", err)
	}
	// The phone talks all along (a real phone keeps sending while the page is away).
	phoneCtx, phoneStop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); phone.SendToneFor(phoneCtx, 0, "pcmu", 600, 20*time.Second) }()
	defer wg.Wait()
	defer phoneStop()
	page.SendTone(ctx, 1000, 1500*time.Millisecond)
	pcm, n := phone.WaitHeard(8000, 10*time.Second)
	checkTone(t, "phone", pcm, n, 1000, 600)

	// The page's PeerConnection goes first; the signalling notices the reload a bit later.
	if err := m.DeferPeerClose(signaling.SideCaller, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	page.Close()
	time.Sleep(500 * time.Millisecond) // the subject: the signalling notices the reload a bit later
	if err := m.Detach(signaling.SideCaller, 20*time.Second); err != nil || !m.Detached(signaling.SideCaller) {
		t.Fatalf("detach: %v", err)
	}
	time.Sleep(3 * time.Second) // the subject: past the peer-close delay and the media timeout
	select {
	case <-m.Done():
		t.Fatal("detached call stopped")
	default:
	}
	page2 := newPCPeer(t)
	off, err := m.ReattachOffer(ctx, signaling.SideCaller)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ReattachAnswer(ctx, signaling.SideCaller, page2.Answer(off)); err != nil {
		t.Fatal(err)
	}
	phone.Reset()
	page2.SendTone(ctx, 1400, 2*time.Second)
	pcm, n = phone.WaitHeard(8000, 10*time.Second)
	checkTone(t, "phone after re-attach", pcm, n, 1400, 600)
	pcm, n = page2.Heard()
	checkTone(t, "new page", pcm, n, 600, 1400)
	phoneStop()
	if _, err := c.media("session/stop", map[string]any{"session_id": id}); err != nil {
		t.Fatal(err)
	}
	e.waitIdle("after stop")
}
