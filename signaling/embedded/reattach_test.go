package embedded_test

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/signaling"
)

// pcPeer is a loopback-only pion PeerConnection sending and receiving PCMU (a stand-in for
// the browser page of a Verto call).
type pcPeer struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	wg    sync.WaitGroup
	mu    sync.Mutex
	pcm   []int16
	pkts  int
}

func newPCPeer(t testing.TB) *pcPeer {
	t.Helper()
	var se webrtc.SettingEngine
	peers.LoopbackPion(&se)
	me := &webrtc.MediaEngine{}
	capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 0}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pcPeer{t: t, pc: pc}
	if p.track, err = webrtc.NewTrackLocalStaticRTP(capab, "audio", "page"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(p.track); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					if errors.Is(err, io.EOF) {
						return
					}
					continue
				}
				p.mu.Lock()
				p.pkts++
				for _, b := range pkt.Payload {
					p.pcm = append(p.pcm, codec.UlawToLinear(b))
				}
				p.mu.Unlock()
			}
		}()
	})
	t.Cleanup(p.close)
	return p
}

func (p *pcPeer) close() {
	_ = p.pc.GracefulClose()
	p.wg.Wait()
}

func (p *pcPeer) gather(d webrtc.SessionDescription) string {
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(d); err != nil {
		p.t.Fatal(err)
	}
	<-done
	return p.pc.LocalDescription().SDP
}

func (p *pcPeer) offer() string {
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.gather(o)
}

func (p *pcPeer) setAnswer(sdp string) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pcPeer) answer(offer string) string {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		p.t.Fatal(err)
	}
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.gather(a)
}

func (p *pcPeer) sendTone(ctx context.Context, freq float64, d time.Duration) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	for n := 0; n < int(d/(20*time.Millisecond)); n++ {
		payload := make([]byte, 160)
		for i := range payload {
			payload[i] = codec.LinearToUlaw(int16(8000 * math.Sin(2*math.Pi*freq*float64(n*160+i)/8000)))
		}
		_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: n == 0, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
		seq++
		ts += 160
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *pcPeer) heard() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}

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
		"offer": map[string]any{"sdp": page.offer(), "sdp_type": "webrtc"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	farOffer, _ := sdpOf(t, r, "offer")
	phone.use(farOffer)
	r, err = c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": phone.sdp(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := sdpOf(t, r, "answer")
	page.setAnswer(ans)
	m, ok := e.be.Media(id)
	if !ok {
		t.Fatal("no media")
	}
	if _, err := m.ReattachOffer(ctx, media.SideFar); codeOf2(err) != signaling.CodeInvalidOperation {
		t.Errorf("re-attach of the plain RTP side: %v, want 1045", err)
	}
	if err := m.ReattachAnswer(ctx, media.SideCaller, "v=0"); codeOf2(err) != signaling.CodeInvalidOperation {
		t.Errorf("answer without offer: %v, want 1045", err)
	}
	// The phone talks all along (a real phone keeps sending while the page is away).
	phoneCtx, phoneStop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); phone.sendTone(phoneCtx, 600, 20*time.Second) }()
	defer wg.Wait()
	defer phoneStop()
	page.sendTone(ctx, 1000, 1500*time.Millisecond)
	pcm, n := phone.waitHeard(8000)
	checkTone(t, "phone", pcm, n, 1000, 600)

	// The page's PeerConnection goes first; the signalling notices the reload a bit later.
	if err := m.DeferPeerClose(media.SideCaller, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	page.close()
	time.Sleep(500 * time.Millisecond)
	if err := m.Detach(media.SideCaller, 20*time.Second); err != nil || !m.Detached(media.SideCaller) {
		t.Fatalf("detach: %v", err)
	}
	time.Sleep(3 * time.Second) // past the peer-close delay and the media timeout
	select {
	case <-m.Done():
		t.Fatal("detached call stopped")
	default:
	}
	page2 := newPCPeer(t)
	off, err := m.ReattachOffer(ctx, media.SideCaller)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ReattachAnswer(ctx, media.SideCaller, page2.answer(off)); err != nil {
		t.Fatal(err)
	}
	phone.reset()
	page2.sendTone(ctx, 1400, 2*time.Second)
	pcm, n = phone.waitHeard(8000)
	checkTone(t, "phone after re-attach", pcm, n, 1400, 600)
	pcm, n = page2.heard()
	checkTone(t, "new page", pcm, n, 600, 1400)
	phoneStop()
	if _, err := c.media("session/stop", map[string]any{"session_id": id}); err != nil {
		t.Fatal(err)
	}
	e.waitIdle("after stop")
}
