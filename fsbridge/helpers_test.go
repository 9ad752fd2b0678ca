package fsbridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
	"go.uber.org/goleak"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/fsbridge"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/apitest"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const eslPassword = "nkbridge-esl-test"

func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	return peers.TestLoggerLevel(t, slog.LevelInfo)
}

// env is a whole nkbridge (core + control API + FreeSWITCH backend) in front of a fake
// FreeSWITCH (Event Socket + SIP stand-in), all on 127.0.0.1.
type env struct {
	t      testing.TB
	fs     *fakefs.Server
	sip    *fakefs.SIPAgent
	engine *media.Engine
	svc    *fsbridge.Service
	core   *signaling.Core
	url    string
}

type envOpts struct {
	// fake configures the fake FreeSWITCH (Password and Logger are set by newEnv).
	fake           fakefs.Options
	commandTimeout time.Duration
	channelTimeout time.Duration
	eventQueue     int
	mediaTimeout   time.Duration // default: none
	// gate, if set, blocks the Event Socket dispatcher on a room "started" event for the
	// room "gate" until the channel is closed (to overflow the event queue on purpose).
	gate chan struct{}
}

type gatedRooms struct {
	bus  *signaling.Bus
	gate chan struct{}
}

func (g gatedRooms) Publish(ev signaling.Event) {
	if g.gate != nil && ev.ObjID == "gate" && ev.Type == "started" {
		<-g.gate
	}
	g.bus.Publish(ev)
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	log := testLogger(t)
	fo := o.fake
	fo.Password, fo.Logger = eslPassword, log
	fs, err := fakefs.Start(fo)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := fakefs.StartSIP(fs, fakefs.SIPOptions{Logger: log})
	if err != nil {
		fs.Close()
		t.Fatal(err)
	}
	base := 30000 + 2*rand.IntN(9000)
	engine, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 200,
		Quarantine: -1, MediaTimeout: mediaTimeout(o.mediaTimeout), Logger: log})
	if err != nil {
		agent.Close()
		fs.Close()
		t.Fatal(err)
	}
	bus := signaling.NewBus()
	svc, err := fsbridge.Start(context.Background(), fsbridge.Config{
		ESLAddr: fs.Addr(), Password: eslPassword, SIPAddr: agent.Addr(), Engine: engine, Rooms: gatedRooms{bus, o.gate},
		CommandTimeout: o.commandTimeout, ChannelTimeout: o.channelTimeout, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		EventQueue: o.eventQueue, Logger: log,
	})
	if err != nil {
		engine.Close()
		agent.Close()
		fs.Close()
		t.Fatal(err)
	}
	backends := signaling.NewBackends()
	backends.Register("freeswitch", svc.Backend, fsbridge.Types()...)
	backends.RegisterRooms("freeswitch", svc.Backend, signaling.RoomMCU)
	core := signaling.New(signaling.Options{Logger: log, Bus: bus, Backends: backends})
	e := &env{t: t, fs: fs, sip: agent, engine: engine, svc: svc, core: core}
	t.Cleanup(func() {
		core.Close()
		svc.Close()
		engine.Close()
		agent.Close()
		fs.Close()
	})
	e.url = apitest.Serve(t, core, wsapi.Config{}, log) // stops before the cleanup above
	if err := fs.WaitSubscribed(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatalf("nkbridge did not subscribe to the fake's events: %v", err)
	}
	peers.WaitFor(t, 5*time.Second, "Event Socket client ready", func() bool {
		return svc.Client().Connected()
	})
	return e
}

func mediaTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitCommand waits for a command the fake received.
func (e *env) waitCommand(prefix string) fakefs.Command {
	e.t.Helper()
	c, err := e.fs.WaitCommand(ctxT(e.t, 5*time.Second), prefix)
	if err != nil {
		e.t.Fatalf("fake FreeSWITCH never received %q: %v", prefix, err)
	}
	return c
}

// countCommands counts the commands starting with prefix.
func (e *env) countCommands(prefix string) int {
	n := 0
	for _, c := range e.fs.Commands() {
		if strings.HasPrefix(c.Line, prefix) {
			n++
		}
	}
	return n
}

// channelOf returns the fake channel of session sid.
func (e *env) channelOf(sid string) fakefs.Channel {
	e.t.Helper()
	for _, c := range e.fs.Channels() {
		if c.Var("sip_h_X-NKB-Session") == sid {
			return c
		}
	}
	e.t.Fatalf("no FreeSWITCH channel for session %s", sid)
	return fakefs.Channel{}
}

// noLeaks waits until no call, channel, media session or tracked session is left.
func (e *env) noLeaks() {
	e.t.Helper()
	var left []string
	defer func() {
		if e.t.Failed() && len(left) > 0 {
			e.t.Logf("left behind: %s", strings.Join(left, ", "))
		}
	}()
	peers.WaitFor(e.t, 5*time.Second, "nothing left behind", func() bool {
		left = left[:0]
		if n := e.sip.Calls(); n > 0 {
			left = append(left, fmt.Sprintf("%d SIP calls on the FreeSWITCH side", n))
		}
		if n := len(e.fs.Channels()); n > 0 {
			left = append(left, fmt.Sprintf("%d FreeSWITCH channels", n))
		}
		if n := e.engine.Sessions(); n > 0 {
			left = append(left, fmt.Sprintf("%d media sessions", n))
		}
		if n := e.svc.Dialer().Legs(); n > 0 {
			left = append(left, fmt.Sprintf("%d SIP legs", n))
		}
		if n := e.svc.Sessions(); n > 0 {
			left = append(left, fmt.Sprintf("%d backend sessions", n))
		}
		if ids := e.core.ListSessions(); len(ids) > 0 {
			left = append(left, fmt.Sprintf("core sessions %v", ids))
		}
		return len(left) == 0
	})
}

// ---- control API client over a real WebSocket ------------------------------------------

type msg = map[string]any

// dial opens a logged-in API connection.
func (e *env) dial() *apitest.Conn {
	e.t.Helper()
	c := apitest.Dial(e.t, e.url, nkclient.Options{})
	c.Login("tester@nkbridge", "x")
	return c
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// ---- a WebRTC client peer (pion, loopback only) -----------------------------------------

type rtcPeer struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	// sample, when set, is the track sendTone writes to instead: pion's sample track,
	// whose packetizer sets the marker bit on every audio packet.
	sample *webrtc.TrackLocalStaticSample

	mu   sync.Mutex
	pcm  []int16 // what it heard, decoded to 8 kHz
	pkts int
	wg   sync.WaitGroup
}

func newRTCPeer(t testing.TB) *rtcPeer {
	t.Helper()
	return newPeer(t, false)
}

// newSamplePeer is a peer that sends through a TrackLocalStaticSample (every audio
// packet marked).
func newSamplePeer(t testing.TB) *rtcPeer {
	t.Helper()
	return newPeer(t, true)
}

func newPeer(t testing.TB, sample bool) *rtcPeer {
	t.Helper()
	var se webrtc.SettingEngine
	peers.LoopbackPion(&se)
	me := &webrtc.MediaEngine{}
	capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capab, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &rtcPeer{t: t, pc: pc}
	var track webrtc.TrackLocal
	if sample {
		p.sample, err = webrtc.NewTrackLocalStaticSample(capab, "audio", "tester")
		track = p.sample
	} else {
		p.track, err = webrtc.NewTrackLocalStaticRTP(capab, "audio", "tester")
		track = p.track
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			dec, err := codec.NewDecoder("opus", 8000)
			if err != nil {
				return
			}
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					if errors.Is(err, io.EOF) {
						return
					}
					if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
						return
					}
					continue
				}
				p.mu.Lock()
				p.pkts++
				p.pcm, _ = dec.Decode(p.pcm, pkt.Payload)
				p.mu.Unlock()
			}
		}()
	})
	t.Cleanup(func() { _ = pc.Close(); p.wg.Wait() })
	return p
}

func (p *rtcPeer) offer() string {
	p.t.Helper()
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(o); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.t.Fatal("ICE gathering timed out")
	}
	return p.pc.LocalDescription().SDP
}

func (p *rtcPeer) setAnswer(sdp string) {
	p.t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		p.t.Fatal(err)
	}
}

// sendTone sends freq Hz in 20 ms Opus packets, paced in real time, until ctx ends.
func (p *rtcPeer) sendTone(ctx context.Context, freq float64) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		enc, err := codec.NewEncoder("opus", 8000)
		if err != nil {
			return
		}
		tone := audiotest.Tone(freq, 8000, 8000, 12000)
		buf := make([]byte, 1500)
		seq, ts := uint16(rand.Uint32()), rand.Uint32()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for pos := 0; ; pos += 160 {
			if pos+160 > len(tone) {
				pos = 0
			}
			n, err := enc.Encode(buf, tone[pos:pos+160])
			switch {
			case err != nil:
			case p.sample != nil:
				_ = p.sample.WriteSample(pionmedia.Sample{Data: append([]byte(nil), buf[:n]...), Duration: 20 * time.Millisecond})
			default:
				_ = p.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: append([]byte(nil), buf[:n]...)})
			}
			seq++
			ts += 960
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
}

// mark returns how many samples were heard so far.
func (p *rtcPeer) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pcm)
}

// heardSince waits for d worth of audio after sample mark and returns the dominant of
// the candidate tones and its ratio over the next one, plus the RMS level.
func (p *rtcPeer) heardSince(mark int, d time.Duration, candidates ...float64) (float64, float64, float64) {
	p.t.Helper()
	need := int(d.Seconds() * 8000)
	var got []int16
	peers.WaitFor(p.t, d+20*time.Second, fmt.Sprintf("%d samples heard", need), func() bool { // slow, shared CI machines
		p.mu.Lock()
		got = append(got[:0], p.pcm[min(mark, len(p.pcm)):]...)
		p.mu.Unlock()
		return len(got) >= need
	})
	got = got[len(got)-need/2:] // the last half: past any switch-over
	f, r := audiotest.Dominant(got, 8000, candidates...)
	return f, r, audiotest.RMS(got)
}

func (p *rtcPeer) waitConnected() {
	p.t.Helper()
	peers.WaitFor(p.t, 10*time.Second, "WebRTC connection", func() bool {
		if s := p.pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
			return false
		}
		return true
	})
}
