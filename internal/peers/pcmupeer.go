package peers

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

	"github.com/nkbridge/nkbridge/media/codec"
)

// PCMUPeer is a loopback-only pion PeerConnection sending and receiving PCMU: a stand-in for
// a WebRTC page in tests that need no browser. It records what it hears, decoded to 8 kHz.
type PCMUPeer struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	wg    sync.WaitGroup
	mu    sync.Mutex
	pcm   []int16
	pkts  int
}

// NewPCMUPeer makes a PCMU peer whose audio track belongs to the media stream streamID. It is
// closed when the test ends.
func NewPCMUPeer(t testing.TB, streamID string) *PCMUPeer {
	t.Helper()
	var se webrtc.SettingEngine
	LoopbackPion(&se)
	me := &webrtc.MediaEngine{}
	capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 0}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &PCMUPeer{t: t, pc: pc}
	if p.track, err = webrtc.NewTrackLocalStaticRTP(capab, "audio", streamID); err != nil {
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
	t.Cleanup(p.Close)
	return p
}

// Close closes the PeerConnection and waits for its track reader.
func (p *PCMUPeer) Close() {
	_ = p.pc.GracefulClose()
	p.wg.Wait()
}

func (p *PCMUPeer) gather(d webrtc.SessionDescription) string {
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(d); err != nil {
		p.t.Fatal(err)
	}
	<-done
	return p.pc.LocalDescription().SDP
}

// Offer returns a complete (gathered) SDP offer.
func (p *PCMUPeer) Offer() string {
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.gather(o)
}

// SetAnswer applies the far end's SDP answer.
func (p *PCMUPeer) SetAnswer(sdp string) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		p.t.Fatal(err)
	}
}

// Answer applies the far end's SDP offer and returns a complete (gathered) answer.
func (p *PCMUPeer) Answer(offer string) string {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		p.t.Fatal(err)
	}
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.gather(a)
}

// SendTone sends d/20ms packets of a freq Hz tone, one every 20 ms, or fewer if ctx ends.
func (p *PCMUPeer) SendTone(ctx context.Context, freq float64, d time.Duration) {
	p.sendTone(ctx, freq, func(n int) bool { return n < int(d/(20*time.Millisecond)) })
}

// SendToneFor sends a freq Hz tone every 20 ms for d of wall-clock time (packets a late tick
// misses are not made up) or until ctx ends.
func (p *PCMUPeer) SendToneFor(ctx context.Context, freq float64, d time.Duration) {
	end := time.Now().Add(d)
	p.sendTone(ctx, freq, func(int) bool { return time.Now().Before(end) })
}

func (p *PCMUPeer) sendTone(ctx context.Context, freq float64, more func(n int) bool) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	for n := 0; more(n); n++ {
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

// Heard returns a copy of what the peer heard so far and the number of packets.
func (p *PCMUPeer) Heard() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}
