package room_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/room"
)

// TestSFUVideoAndPLI: a pion publisher's VP8 reaches a pion listener through an SFU room of the
// real engine, and a keyframe request (PLI) the listener sends reaches the publisher.
func TestSFUVideoAndPLI(t *testing.T) {
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), MediaTimeout: -1, RTPPortMin: 41200, RTPPortMax: 41300})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m := room.NewManager(room.Config{EmptyGrace: -1})
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pub := benchPC(t)
	atrack, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	vtrack, _ := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if _, err := pub.AddTrack(atrack); err != nil {
		t.Fatal(err)
	}
	vs, err := pub.AddTrack(vtrack)
	if err != nil {
		t.Fatal(err)
	}
	var plis atomic.Int64
	go func() {
		for {
			pkts, _, err := vs.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					plis.Add(1)
				}
			}
		}
	}()
	off, _ := pub.CreateOffer(nil)
	offer := gathered(t, pub, off)
	var ans media.Description
	r, _, err := m.Publish(ctx, "", true, room.Options{}, "pub", func(tp media.Tap) (room.Endpoint, error) {
		s, a, err := eng.StartPublish(ctx, media.Description{Kind: media.KindWebRTC, SDP: offer}, media.SessionOptions{ID: "pub"}, tp)
		ans = a
		return s, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		t.Fatal(err)
	}

	lis := benchPC(t)
	var videoIn atomic.Int64
	var vssrc atomic.Uint32
	lis.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			vssrc.Store(uint32(tr.SSRC()))
		}
		go func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					videoIn.Add(1)
				}
			}
		}()
	})
	var sess *media.Session
	var loff media.Description
	if _, _, err := m.Listen(ctx, r.ID(), "pub", "lis", func(a, v []media.Format, tp media.Tap) (room.Endpoint, error) {
		if len(v) == 0 {
			t.Error("the listener offer has no video")
		}
		s, o, err := eng.StartListen(ctx, a, v, media.SessionOptions{ID: "lis"}, tp)
		sess, loff = s, o
		return s, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := lis.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: loff.SDP}); err != nil {
		t.Fatal(err)
	}
	a, _ := lis.CreateAnswer(nil)
	if err := sess.SetListenAnswer(ctx, media.Description{Kind: media.KindWebRTC, SDP: gathered(t, lis, a)}); err != nil {
		t.Fatal(err)
	}
	seq, ts := uint16(7), uint32(9)
	deadline := time.Now().Add(15 * time.Second)
	for videoIn.Load() < 20 && time.Now().Before(deadline) {
		seq++
		ts += 3000
		payload := append([]byte{0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 100)...)
		_ = vtrack.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
		time.Sleep(20 * time.Millisecond) // real-time pacing: 50 frames a second
	}
	if videoIn.Load() < 20 {
		t.Fatalf("listener received %d video packets", videoIn.Load())
	}
	// Control: no keyframe requests arrive on their own in steady state.
	before := plis.Load()
	time.Sleep(500 * time.Millisecond) // the subject: a window in which no PLI may come
	if plis.Load() != before {
		t.Fatalf("PLIs arrive without the listener asking (%d -> %d): the check below would prove nothing", before, plis.Load())
	}
	for i := 0; i < 3; i++ {
		if err := lis.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: vssrc.Load()}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // three PLIs spread as a receiver would send them
	}
	peers.WaitFor(t, 3*time.Second, "the listener's PLI at the publisher", func() bool { return plis.Load() > before })
	if plis.Load() <= before {
		t.Errorf("the listener's PLI did not reach the publisher (%d before, %d after)", before, plis.Load())
	}
	m.Leave("lis")
	sess.Close()
}
