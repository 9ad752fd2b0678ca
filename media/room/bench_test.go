package room_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/room"
)

// benchPC is a loopback-only pion peer with Opus.
func benchPC(b testing.TB) *webrtc.PeerConnection {
	var se webrtc.SettingEngine
	peers.LoopbackPion(&se)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		b.Fatal(err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8,
		ClockRate: 90000, RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		b.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pc.Close() })
	return pc
}

func gathered(b testing.TB, pc *webrtc.PeerConnection, d webrtc.SessionDescription) string {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		b.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSFUFanout: one pion publisher sends Opus-sized packets into an SFU room of the real
// engine, N pion listeners receive them (SRTP decrypt + fan-out + rewrite + SRTP encrypt per
// listener). Reported: delivered packets per CPU-second of the whole process (publisher and
// listener peers included, so the engine's own figure is better than this).
func BenchmarkSFUFanout(b *testing.B) {
	for _, n := range []int{1, 10, 30} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), MediaTimeout: -1, RTPPortMin: 41000, RTPPortMax: 41100})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	m := room.NewManager(room.Config{EmptyGrace: -1})
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pub := benchPC(b)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pub.AddTrack(track); err != nil {
		b.Fatal(err)
	}
	off, _ := pub.CreateOffer(nil)
	offer := gathered(b, pub, off)
	var ans media.Description
	r, _, err := m.Publish(ctx, "", true, room.Options{}, "pub", func(t media.Tap) (room.Endpoint, error) {
		s, a, err := eng.StartPublish(ctx, media.Description{Kind: media.KindWebRTC, SDP: offer}, media.SessionOptions{ID: "pub"}, t)
		ans = a
		return s, err
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	seen := make([]atomic.Bool, n)
	for i := 0; i < n; i++ {
		pc := benchPC(b)
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			go func() {
				buf := make([]byte, 1500)
				for {
					if _, _, err := tr.Read(buf); err != nil {
						return
					}
					seen[i].Store(true)
					got.Add(1)
				}
			}()
		})
		id := fmt.Sprintf("l%d", i)
		var sess *media.Session
		var loff media.Description
		if _, _, err := m.Listen(ctx, r.ID(), "pub", id, func(a, v []media.Format, t media.Tap) (room.Endpoint, error) {
			s, o, err := eng.StartListen(ctx, a, v, media.SessionOptions{ID: id}, t)
			sess, loff = s, o
			return s, err
		}); err != nil {
			b.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: loff.SDP}); err != nil {
			b.Fatal(err)
		}
		a, _ := pc.CreateAnswer(nil)
		if err := sess.SetListenAnswer(ctx, media.Description{Kind: media.KindWebRTC, SDP: gathered(b, pc, a)}); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 120) // a 20 ms Opus voice frame is about this size
	seq, ts := uint16(1), uint32(1)
	send := func() {
		seq++
		ts += 960
		_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
	}
	// Warm up until every listener receives.
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := true
		for i := range seen {
			if !seen[i].Load() {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("listeners never received")
		}
		send()
		time.Sleep(20 * time.Millisecond) // benchmark warm-up: resend until the listeners receive (poll interval)
	}
	time.Sleep(100 * time.Millisecond) // benchmark: let the warm-up packets drain before counting
	got.Store(0)
	b.ResetTimer()
	c0, w0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		send()
		if i%20 == 19 {
			time.Sleep(time.Millisecond) // about 20k packets/s offered: bounded, loopback-friendly
		}
	}
	// Let the last packets arrive.
	last := int64(-1)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && got.Load() != last; {
		last = got.Load()
		time.Sleep(50 * time.Millisecond) // benchmark: poll interval of the settle loop
	}
	cpu, wall := cpuTime()-c0, time.Since(w0)
	b.StopTimer()
	delivered := got.Load()
	b.ReportMetric(float64(delivered)/cpu.Seconds(), "delivered/cpu-s")
	b.ReportMetric(float64(delivered)/wall.Seconds(), "delivered/s")
	b.ReportMetric(100*(1-float64(delivered)/float64(b.N*n)), "loss-%")
}
