package stream

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/media/codec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMedia stands in for a session: a goroutine feeds tones as each side's audio every
// 20 ms, and what the stream plays to the caller is decoded (PCMU) and kept.
type fakeMedia struct {
	mu      sync.Mutex
	sinks   map[int]sinkAt
	next    int
	played  []int16
	packets int
	lastSeq uint16
	gaps    int
}

type sinkAt struct {
	rate int
	s    media.AudioSink
}

func (f *fakeMedia) AddAudioSink(rate int, s media.AudioSink) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sinks == nil {
		f.sinks = map[int]sinkAt{}
	}
	n := f.next
	f.next++
	f.sinks[n] = sinkAt{rate, s}
	return func() { f.mu.Lock(); delete(f.sinks, n); f.mu.Unlock() }, nil
}

func (f *fakeMedia) CallerFormats() ([]media.Format, []media.Format) {
	return []media.Format{{PT: 0, Name: "pcmu", Rate: 8000, Channels: 1}, {PT: 101, Name: "telephone-event", Rate: 8000}}, nil
}

func (f *fakeMedia) WriteCaller(_ bool, h *rtp.Header, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.packets > 0 && h.SequenceNumber != f.lastSeq+1 {
		f.gaps++
	}
	f.lastSeq = h.SequenceNumber
	f.packets++
	for _, b := range payload {
		f.played = append(f.played, codec.UlawToLinear(b))
	}
	return nil
}

func (f *fakeMedia) Played() []int16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int16(nil), f.played...)
}

func (f *fakeMedia) Sinks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sinks)
}

// feed sends callerHz from the caller and farHz from the far side (0: none) until ctx ends.
func (f *fakeMedia) feed(ctx context.Context, callerHz, farHz float64) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var phase int
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		sinks := make([]sinkAt, 0, len(f.sinks))
		for _, s := range f.sinks {
			sinks = append(sinks, s)
		}
		f.mu.Unlock()
		for _, s := range sinks {
			n := s.rate / 50
			for side, hz := range []float64{callerHz, farHz} {
				if hz == 0 {
					continue
				}
				all := audiotest.Tone(hz, float64(s.rate), (phase+1)*n, 8000)
				s.s.Audio(media.Side(side), all[phase*n:])
			}
		}
		phase = (phase + 1) % 50
	}
}

func newManager(t *testing.T, app *streamtest.App, mod func(*Config)) *Manager {
	t.Helper()
	c := Config{AllowedHosts: []string{app.Host()}, AllowedUsers: []string{"alice"}, Logger: peers.TestLogger(t)}
	if mod != nil {
		mod(&c)
	}
	m, err := NewManager(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func startFed(t *testing.T, ctx context.Context, m *Manager, o Options, callerHz, farHz float64, ev Events) (*Stream, *fakeMedia) {
	t.Helper()
	fm := &fakeMedia{}
	s, err := m.Start(ctx, fm, o, Call{SessionID: "s1", CallID: "c1", From: "alice", To: "bot-test"}, ev)
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fm.feed(fctx, callerHz, farHz) }()
	t.Cleanup(func() { cancel(); <-done; s.Stop("test over"); <-s.Done() })
	return s, fm
}

func wantTone(t *testing.T, c *streamtest.Conn, ch, rate int, want float64, candidates ...float64) {
	t.Helper()
	f, ratio, rms := c.Tone(ch, rate, 500*time.Millisecond, candidates...)
	if f != want || ratio < 10 || rms < 1000 {
		t.Fatalf("channel %d: heard %.0f Hz (ratio %.1f, rms %.0f), want %.0f Hz", ch, f, ratio, rms, want)
	}
	t.Logf("channel %d: %.0f Hz, ratio %.1f, rms %.0f", ch, f, ratio, rms)
}

// TestMonoStream: the start message describes the call and the format; the caller's tone
// arrives as 20 ms frames of 16-bit PCM; the stop message ends it.
func TestMonoStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, nil)
	s, _ := startFed(t, ctx, m, Options{URL: app.URL("/bot"), Metadata: map[string]any{"tenant": "t1"}}, 700, 1300, Events{})
	c, ok := app.WaitConn(ctx, 1)
	if !ok {
		t.Fatal("no connection")
	}
	peers.WaitFor(t, 10*time.Second, "a second of audio", func() bool { return c.Frames() >= 50 })
	st := c.EventsOf("start")[0]
	f := st["format"].(map[string]any)
	if f["encoding"] != "pcm_s16le" || f["sample_rate"].(float64) != 8000 || f["channels"].(float64) != 1 || f["frame_ms"].(float64) != 20 {
		t.Fatalf("start format %v", f)
	}
	if st["metadata"].(map[string]any)["tenant"] != "t1" || st["call"].(map[string]any)["call_id"] != "c1" || st["stream_id"] != s.ID() {
		t.Fatalf("start %v", st)
	}
	if n := len(c.Audio(0)); n != 160*c.Frames() {
		t.Fatalf("%d samples in %d frames: want 160 a frame", n, c.Frames())
	}
	wantTone(t, c, 0, 8000, 700, 700, 1300)
	s.Stop("call ended")
	peers.WaitFor(t, 5*time.Second, "stop message and close", func() bool { return c.Closed() })
	stop := c.EventsOf("stop")
	if len(stop) != 1 || stop[0]["reason"] != "call ended" {
		t.Fatalf("stop messages %v", stop)
	}
}

// TestStereoAndMixed: stereo at 16 kHz has the caller left and the far side right; mixed
// has both in one channel.
func TestStereoAndMixed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, nil)
	startFed(t, ctx, m, Options{URL: app.URL("/stereo"), Mix: MixStereo, SampleRate: 16000}, 700, 1300, Events{})
	c, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "a second of audio", func() bool { return c.Frames() >= 50 })
	if n := len(c.Audio(1)); n != 320*c.Frames() {
		t.Fatalf("%d right samples in %d frames: want 320 a frame", n, c.Frames())
	}
	wantTone(t, c, 0, 16000, 700, 700, 1300)
	wantTone(t, c, 1, 16000, 1300, 700, 1300)

	startFed(t, ctx, m, Options{URL: app.URL("/mixed"), Mix: MixMixed}, 700, 1300, Events{})
	c2, _ := app.WaitConn(ctx, 2)
	peers.WaitFor(t, 10*time.Second, "a second of audio", func() bool { return c2.Frames() >= 50 })
	a := c2.Audio(0)
	a = a[len(a)-4000:]
	p7, p13 := audiotest.Goertzel(a, 8000, 700), audiotest.Goertzel(a, 8000, 1300)
	if p7 < 10*audiotest.Goertzel(a, 8000, 1000) || p13 < 10*audiotest.Goertzel(a, 8000, 1000) {
		t.Fatalf("mixed: 700 Hz %.0f, 1300 Hz %.0f, 1000 Hz %.0f: want both tones", p7, p13, audiotest.Goertzel(a, 8000, 1000))
	}
}

// TestBidirectional: the application's audio is played to the caller in order and paced,
// a mark comes back once the audio before it has played, and clear flushes what is queued.
func TestBidirectional(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, nil)
	_, fm := startFed(t, ctx, m, Options{URL: app.URL("/bidi"), Bidirectional: true, SampleRate: 16000}, 700, 0, Events{})
	c, _ := app.WaitConn(ctx, 1)
	if err := c.PlayTone(900, 16000, time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SendJSON(map[string]any{"event": "mark", "name": "greeting-done"}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "the mark back", func() bool { return len(c.EventsOf("mark")) == 1 })
	played := fm.Played()
	if len(played) < 7600 || len(played) > 8400 {
		t.Fatalf("%d samples played before the mark, want a second (8000)", len(played))
	}
	f, ratio := audiotest.Dominant(played[1000:7000], 8000, 700, 900, 1300)
	if f != 900 || ratio < 10 {
		t.Fatalf("played %.0f Hz (ratio %.1f), want the application's 900 Hz", f, ratio)
	}
	// barge-in: 20 s queued, then clear
	if err := c.PlayTone(500, 16000, 20*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "playing again", func() bool { return len(fm.Played()) > len(played)+1600 })
	if err := c.SendJSON(map[string]any{"event": "mark", "name": "long"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SendJSON(map[string]any{"event": "clear"}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "the cleared mark back", func() bool { return len(c.EventsOf("mark")) == 2 })
	peers.WaitFor(t, 5*time.Second, "nothing more played", peers.Settled(func() int { return len(fm.Played()) }))
	n := len(fm.Played())
	if n > len(played)+10*8000 {
		t.Fatalf("%d samples played after clear: the queue was not flushed", n-len(played))
	}
	fm.mu.Lock()
	gaps := fm.gaps
	fm.mu.Unlock()
	if gaps != 0 {
		t.Fatalf("%d RTP sequence gaps", gaps)
	}
}

// TestTwilioFraming: connected, start (customParameters, mediaFormat µ-law 8 kHz), media
// events carrying the caller's tone, dtmf, the application's media played, mark, stop.
func TestTwilioFraming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, nil)
	s, fm := startFed(t, ctx, m, Options{URL: app.URL("/twilio"), Framing: FramingTwilio, Bidirectional: true,
		Metadata: map[string]any{"agent": "a1"}}, 700, 0, Events{})
	c, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "a second of media events", func() bool { return c.Frames() >= 50 })
	if len(c.EventsOf("connected")) != 1 || c.Events[0]["event"] != "connected" {
		t.Fatalf("first event %v, want connected", c.Events[0])
	}
	start := c.EventsOf("start")[0]["start"].(map[string]any)
	mf := start["mediaFormat"].(map[string]any)
	if mf["encoding"] != "audio/x-mulaw" || mf["sampleRate"].(float64) != 8000 || start["streamSid"] != s.ID() ||
		start["callSid"] != "c1" || start["customParameters"].(map[string]any)["agent"] != "a1" {
		t.Fatalf("start %v", start)
	}
	wantTone(t, c, 0, 8000, 700, 700, 1300)
	seqs := map[string]bool{}
	for _, e := range c.EventsOf("media") {
		seq := e["sequenceNumber"].(string)
		if seqs[seq] || e["streamSid"] != s.ID() {
			t.Fatalf("media event %v: repeated sequenceNumber or wrong streamSid", e)
		}
		seqs[seq] = true
	}
	s.DTMF(media.SideCaller, '7')
	peers.WaitFor(t, 5*time.Second, "dtmf event", func() bool { return len(c.EventsOf("dtmf")) == 1 })
	if d := c.EventsOf("dtmf")[0]["dtmf"].(map[string]any); d["digit"] != "7" || d["track"] != "inbound_track" {
		t.Fatalf("dtmf %v", d)
	}
	if err := c.PlayTone(1100, 8000, time.Second, true, s.ID()); err != nil {
		t.Fatal(err)
	}
	if err := c.SendJSON(map[string]any{"event": "mark", "streamSid": s.ID(), "mark": map[string]any{"name": "m1"}}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "mark back", func() bool { return len(c.EventsOf("mark")) == 1 })
	if mk := c.EventsOf("mark")[0]; mk["mark"].(map[string]any)["name"] != "m1" {
		t.Fatalf("mark %v", mk)
	}
	played := fm.Played()
	if f, ratio := audiotest.Dominant(played[800:], 8000, 700, 1100); f != 1100 || ratio < 10 {
		t.Fatalf("played %.0f Hz (ratio %.1f), want 1100", f, ratio)
	}
	s.Stop("hangup")
	peers.WaitFor(t, 5*time.Second, "stop", func() bool { return len(c.EventsOf("stop")) == 1 && c.Closed() })
}

// TestAppDisconnect: the application closing ends the stream and tells the owner (hangup
// with hangup_on_close); with reconnect a new connection gets a start message with the
// attempt and the audio goes on.
func TestAppDisconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, func(c *Config) { c.ReconnectDelay = 50 * time.Millisecond; c.ReconnectAttempts = 2 })
	type end struct {
		reason string
		hangup bool
	}
	ended := make(chan end, 1)
	s, fm := startFed(t, ctx, m, Options{URL: app.URL("/a"), HangupOnClose: true}, 700, 0,
		Events{Ended: func(r string, h bool) { ended <- end{r, h} }})
	c, _ := app.WaitConn(ctx, 1)
	c.Close()
	select {
	case e := <-ended:
		if !e.hangup || !strings.Contains(e.reason, "gone") {
			t.Fatalf("ended %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("not ended")
	}
	<-s.Done()
	peers.WaitFor(t, 5*time.Second, "sink removed", func() bool { return fm.Sinks() == 0 })
	if m.Counters().Disconnects != 1 {
		t.Fatalf("counters %+v", m.Counters())
	}

	var reconnected atomic.Int32
	_, _ = startFed(t, ctx, m, Options{URL: app.URL("/b"), Reconnect: true}, 700, 0,
		Events{Reconnected: func(int) { reconnected.Add(1) }})
	c2, _ := app.WaitConn(ctx, 2)
	peers.WaitFor(t, 5*time.Second, "audio", func() bool { return c2.Frames() > 5 })
	c2.Close()
	c3, ok := app.WaitConn(ctx, 3)
	if !ok {
		t.Fatal("no reconnection")
	}
	peers.WaitFor(t, 5*time.Second, "audio again", func() bool { return c3.Frames() >= 30 })
	if st := c3.EventsOf("start"); len(st) != 1 || st[0]["reconnect"].(float64) != 1 {
		t.Fatalf("start after reconnect: %v", st)
	}
	wantTone(t, c3, 0, 8000, 700, 700, 1300)
	if reconnected.Load() != 1 {
		t.Fatal("Reconnected not called")
	}
	// the server gone for good: attempts run out, the stream ends
	ended2 := make(chan string, 1)
	app2 := streamtest.Start(t)
	m2 := newManager(t, app2, func(c *Config) { c.ReconnectDelay = 20 * time.Millisecond; c.ReconnectAttempts = 2 })
	startFed(t, ctx, m2, Options{URL: app2.URL("/c"), Reconnect: true}, 700, 0, Events{Ended: func(r string, _ bool) { ended2 <- r }})
	app2.Close()
	select {
	case r := <-ended2:
		if !strings.Contains(r, "streams.reconnect_attempts") {
			t.Fatalf("reason %q", r)
		}
	case <-ctx.Done():
		t.Fatal("not ended after the reconnect attempts")
	}
}

// TestStalledApp: an application that stops reading makes frames drop (counted), the media
// side never waits, and once it reads again the audio comes back.
func TestStalledApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	app.ReadBuffer = 4096
	m := newManager(t, app, func(c *Config) { c.QueueFrames = 10 })
	s, _ := startFed(t, ctx, m, Options{URL: app.URL("/slow"), Mix: MixStereo, SampleRate: 16000}, 700, 1300, Events{})
	c, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "audio", func() bool { return c.Frames() > 10 })
	c.Stall()
	peers.WaitFor(t, 20*time.Second, "frames dropped", func() bool { return s.Stats().FramesDropped > 20 })
	before := c.Frames()
	c.Resume()
	peers.WaitFor(t, 10*time.Second, "audio again", func() bool { return c.Frames() > before+50 })
	wantTone(t, c, 0, 16000, 700, 700, 1300)
	if c.Closed() {
		t.Fatal("the stalled connection was closed")
	}
	t.Logf("stats %+v, counters %+v", s.Stats(), m.Counters())
}

// TestGarbageFromApp: text that is not JSON, unknown events, odd binary frames and Twilio
// events in nkbridge framing are counted and ignored; the stream goes on; a message over
// streams.max_message_bytes ends the connection.
func TestGarbageFromApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	m := newManager(t, app, func(c *Config) { c.MaxMessageBytes = 64 << 10 })
	ended := make(chan string, 1)
	s, _ := startFed(t, ctx, m, Options{URL: app.URL("/g")}, 700, 0, Events{Ended: func(r string, _ bool) { ended <- r }})
	c, _ := app.WaitConn(ctx, 1)
	for _, g := range []string{"not json", `{"event":"dance"}`, `{"no":"event"}`, `{"event":"mark"}`, `[1,2]`} {
		if err := c.Send(false, []byte(g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(true, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "garbage counted", func() bool { return s.Stats().AppGarbage == 6 })
	n := c.Frames()
	peers.WaitFor(t, 5*time.Second, "audio goes on", func() bool { return c.Frames() > n+25 })
	wantTone(t, c, 0, 8000, 700, 700, 1300)
	if err := c.Send(true, make([]byte, 128<<10)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ended:
		t.Logf("oversized message: %s", r)
	case <-ctx.Done():
		t.Fatal("an oversized message did not end the stream")
	}
}

// TestAllowLists: hosts, schemes, users and the stream limit are refused with the setting
// named; nothing is dialled for a refused URL.
func TestAllowLists(t *testing.T) {
	app := streamtest.Start(t)
	m := newManager(t, app, func(c *Config) { c.MaxStreams = 1 })
	for _, tc := range []struct {
		o       Options
		user    string
		want    string
		notAllo bool
	}{
		{Options{URL: "ws://10.0.0.1/x"}, "alice", "streams.allowed_hosts", true},
		{Options{URL: "http://127.0.0.1/x"}, "alice", "scheme", false},
		{Options{URL: app.URL("/x")}, "bob", "streams.allowed_users", true},
		{Options{URL: app.URL("/x"), Mix: "surround"}, "alice", "mix", false},
		{Options{URL: app.URL("/x"), SampleRate: 44100}, "alice", "sample_rate", false},
		{Options{URL: app.URL("/x"), Framing: FramingTwilio, SampleRate: 16000}, "alice", "twilio", false},
		{Options{URL: "ws://u:p@127.0.0.1/x"}, "alice", "credentials", false},
	} {
		err := m.Check(&tc.o, tc.user, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotAllowed) != tc.notAllo {
			t.Errorf("%+v by %s: %v, want an error naming %s", tc.o, tc.user, err, tc.want)
		}
	}
	if err := m.Check(&Options{URL: app.URL("/x")}, "", true); err != nil {
		t.Fatalf("configured bot: %v", err)
	}
	// a listed name resolving to an unlisted guarded address is refused at connection time
	if err := guardedAddr([]byte{169, 254, 169, 254}, []string{"metadata.example"}); err == nil || !strings.Contains(err.Error(), "streams.allowed_hosts") {
		t.Fatalf("link-local: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	startFed(t, ctx, m, Options{URL: app.URL("/one")}, 700, 0, Events{})
	if _, err := m.Start(ctx, &fakeMedia{}, Options{URL: app.URL("/two")}, Call{}, Events{}); err == nil || !strings.Contains(err.Error(), "streams.max_streams") {
		t.Fatalf("second stream: %v", err)
	}
}

// TestStopWhileStalled: stopping a stream whose application stalls does not wait for
// streams.write_timeout: the blocked write is cut after a second and the connection closed.
func TestStopWhileStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := streamtest.Start(t)
	app.ReadBuffer = 4096
	m := newManager(t, app, func(c *Config) { c.QueueFrames = 5; c.WriteTimeout = time.Minute })
	s, _ := startFed(t, ctx, m, Options{URL: app.URL("/stall"), Mix: MixStereo, SampleRate: 16000}, 700, 1300, Events{})
	c, _ := app.WaitConn(ctx, 1)
	c.Stall()
	peers.WaitFor(t, 20*time.Second, "frames dropped", func() bool { return s.Stats().FramesDropped > 20 })
	s.Stop("hangup")
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	peers.WaitFor(t, 10*time.Second, "the stream's goroutines gone (well before write_timeout)", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}
