package media

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

var dbg = false

var loopback = netip.MustParseAddr("127.0.0.1")

// tlog is a slog handler writing to t.Log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newTestEngine(t testing.TB, mod func(*Config)) *Engine {
	t.Helper()
	base := 30000 + 2*rand.IntN(10000)
	cfg := Config{BindIP: loopback, RTPPortMin: base, RTPPortMax: base + 200, Logger: testLogger(t),
		MediaTimeout: 10 * time.Second, Quarantine: time.Second, RecordDir: t.TempDir()}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// ---- a pion WebRTC client peer (loopback only) ----

type rtcClient struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	name  string // codec the client sends: "opus" or "pcmu"

	mu      sync.Mutex
	pcm     []int16 // received audio decoded to 8 kHz
	pkts    int
	te      []rune // digits received as telephone-events
	tePT    []uint8
	det     dtmf.Detector
	wg      sync.WaitGroup
	closed  bool
	videoIn int
	vtrack  *webrtc.TrackLocalStaticRTP
	pli     int
	remb    []uint64
}

// sendVideo sends n fake VP8 packets at about 50 packets/s.
func (c *rtcClient) sendVideo(ctx context.Context, n int) {
	seq := uint16(rand.Uint32())
	ts := rand.Uint32()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		payload := append([]byte{0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 200)...)
		_ = c.vtrack.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
		seq++
		ts += 3000
		time.Sleep(20 * time.Millisecond) // real-time pacing: 50 frames a second
	}
}

// newRTCClient makes a client that sends and accepts only the audio codec name (plus
// telephone-event); video adds VP8.
func newRTCClient(t testing.TB, name string, video bool) *rtcClient {
	t.Helper()
	return newRTCClientWith(t, name, video, nil)
}

func newRTCClientWith(t testing.TB, name string, video bool, mod func(*webrtc.SettingEngine)) *rtcClient {
	t.Helper()
	var se webrtc.SettingEngine
	peers.LoopbackPion(&se)
	if mod != nil {
		mod(&se)
	}
	me := &webrtc.MediaEngine{}
	var capab webrtc.RTPCodecCapability
	switch name {
	case "opus":
		capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 111}, webrtc.RTPCodecTypeAudio))
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 48000}, PayloadType: 110}, webrtc.RTPCodecTypeAudio))
	case "pcmu":
		capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 0}, webrtc.RTPCodecTypeAudio))
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: 101}, webrtc.RTPCodecTypeAudio))
	case "pcmu+opus": // sends PCMU, also accepts Opus
		capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio))
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 0}, webrtc.RTPCodecTypeAudio))
	default:
		t.Fatalf("client codec %q", name)
	}
	if video {
		must(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo))
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	must(t, err)
	c := &rtcClient{t: t, pc: pc, name: name}
	c.track, err = webrtc.NewTrackLocalStaticRTP(capab, "audio", "client")
	must(t, err)
	_, err = pc.AddTrack(c.track)
	must(t, err)
	if video {
		c.vtrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "client")
		must(t, err)
		vs, err := pc.AddTrack(c.vtrack)
		must(t, err)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				pkts, _, err := vs.ReadRTCP()
				if err != nil {
					return
				}
				c.mu.Lock()
				for _, p := range pkts {
					switch p := p.(type) {
					case *rtcp.PictureLossIndication:
						c.pli++
					case *rtcp.ReceiverEstimatedMaximumBitrate:
						c.remb = append(c.remb, uint64(p.Bitrate))
					}
				}
				c.mu.Unlock()
			}
		}()
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.wg.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.wg.Done()
			c.readTrack(tr)
		}()
	})
	t.Cleanup(c.close)
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (c *rtcClient) readTrack(tr *webrtc.TrackRemote) {
	decs := map[string]codec.Decoder{}
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			continue
		}
		mime := strings.ToLower(tr.Codec().MimeType)
		c.mu.Lock()
		c.pkts++
		switch {
		case strings.HasSuffix(mime, "telephone-event"):
			c.tePT = append(c.tePT, p.PayloadType)
			if d, ok := c.det.Push(p.Timestamp, p.Payload); ok {
				c.te = append(c.te, d)
			}
		case strings.HasPrefix(mime, "video/"):
			c.videoIn++
		default:
			name := mime[strings.IndexByte(mime, '/')+1:]
			d := decs[name]
			if d == nil {
				d, err = codec.NewDecoder(name, 8000)
				if err != nil {
					c.mu.Unlock()
					continue
				}
				decs[name] = d
			}
			before := len(c.pcm)
			c.pcm, _ = d.Decode(c.pcm, p.Payload)
			if dbg && c.pkts < 60 {
				c.t.Logf("DBG pt %d seq %d ts %d len %d rms %.0f mime %s", p.PayloadType, p.SequenceNumber, p.Timestamp, len(p.Payload), audiotest.RMS(c.pcm[before:]), mime)
			}
		}
		c.mu.Unlock()
	}
}

func (c *rtcClient) gather(desc webrtc.SessionDescription) string {
	done := webrtc.GatheringCompletePromise(c.pc)
	must(c.t, c.pc.SetLocalDescription(desc))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.t.Fatal("client gathering timed out")
	}
	return c.pc.LocalDescription().SDP
}

func (c *rtcClient) offer() string {
	o, err := c.pc.CreateOffer(nil)
	must(c.t, err)
	return c.gather(o)
}

func (c *rtcClient) answer(offer string) string {
	must(c.t, c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}))
	a, err := c.pc.CreateAnswer(nil)
	must(c.t, err)
	return c.gather(a)
}

func (c *rtcClient) setAnswer(ans string) {
	must(c.t, c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}))
}

// sendTone sends freq Hz for d in 20 ms packets (paced in real time) in the client's codec.
func (c *rtcClient) sendTone(ctx context.Context, freq float64, d time.Duration) {
	name, _, _ := strings.Cut(c.name, "+")
	sendTone(ctx, name, freq, d, func(p *rtp.Packet) { _ = c.track.WriteRTP(p) })
}

func (c *rtcClient) heard() ([]int16, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.pcm...), c.pkts
}

func (c *rtcClient) digits() (string, []uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.te), append([]uint8(nil), c.tePT...)
}

func (c *rtcClient) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.pc.GracefulClose()
	c.wg.Wait()
}

// sendTone paces a tone in codec name (opus at 48 kHz RTP clock, pcmu/pcma at 8 kHz).
func sendTone(ctx context.Context, name string, freq float64, d time.Duration, write func(*rtp.Packet)) {
	enc, err := codec.NewEncoder(name, 8000)
	if err != nil {
		panic(err)
	}
	clock := uint32(enc.ClockRate())
	tone := audiotest.Tone(freq, 8000, int(d.Seconds()*8000)+160, 12000)
	buf := make([]byte, 1500)
	seq := uint16(rand.Uint32())
	ts := rand.Uint32()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for i := 0; i+160 <= len(tone); i += 160 {
		n, err := enc.Encode(buf, tone[i:i+160])
		if err != nil {
			panic(err)
		}
		write(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == 0, SequenceNumber: seq, Timestamp: ts},
			Payload: append([]byte(nil), buf[:n]...)})
		seq++
		ts += clock / 50
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// ---- a plain RTP peer: peers.RTPPeer, with the engine's SDP types ----

type rtpPeer struct{ *peers.RTPPeer }

func newRTPPeer(t testing.TB) *rtpPeer {
	p := &rtpPeer{peers.NewRTPPeer(t)}
	p.SetAmplitude(12000) // what assertTone expects
	return p
}

// description returns the peer's SDP for codecs.
func (p *rtpPeer) description(codecs ...plainrtp.Codec) *plainrtp.Description {
	return plainrtp.Offer(loopback, p.Port(), codecs, 42)
}

// use points the peer at the engine side described by d and learns its payload types.
func (p *rtpPeer) use(d *plainrtp.Description) {
	p.SetRemote(netip.AddrPortFrom(d.Addr, uint16(d.Port)))
	for _, c := range d.Codecs {
		p.Learn(c.PT, c.Name)
	}
}

func (p *rtpPeer) sendTone(ctx context.Context, c plainrtp.Codec, freq float64, d time.Duration) {
	p.SendTone(ctx, c.PT, strings.ToLower(c.Name), freq, d)
}

func (p *rtpPeer) sendDigit(digit rune, te plainrtp.Codec) { p.SendDigit(digit, te.PT, te.Rate) }

// assertTone checks that pcm (8 kHz) holds want rather than the other candidate frequencies.
func assertTone(t testing.TB, who string, pcm []int16, want float64, others ...float64) {
	t.Helper()
	if len(pcm) < 4000 {
		t.Fatalf("%s heard only %d samples", who, len(pcm))
	}
	tail := pcm[len(pcm)/4:]
	f, ratio := audiotest.Dominant(tail, 8000, append([]float64{want}, others...)...)
	rms := audiotest.RMS(tail)
	t.Logf("%s: %d samples, dominant %.0f Hz (ratio %.1f), rms %.0f", who, len(pcm), f, ratio, rms)
	// The senders use amplitude 12000 (RMS 8485): much louder means corrupted audio.
	if f != want || ratio < 10 || rms < 1000 || rms > 11000 {
		t.Fatalf("%s: want %.0f Hz, got dominant %.0f Hz ratio %.1f rms %.0f", who, want, f, ratio, rms)
	}
}

// settle waits for the last echoed packets of what was sent: until the packet count
// heard stops moving.
func settle(t testing.TB, heard func() ([]int16, int)) {
	t.Helper()
	peers.WaitFor(t, 5*time.Second, "the last echoed packets", peers.Settled(func() int { _, n := heard(); return n }))
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
