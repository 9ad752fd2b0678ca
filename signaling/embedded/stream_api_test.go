package embedded_test

import (
	"context"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
	"github.com/nkbridge/nkbridge/media/stream"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// streamEnv is the API env with audio streams: alice may start them, to 127.0.0.1.
func streamEnv(t *testing.T, bots map[string]stream.Options) *env {
	t.Helper()
	return streamEnvWith(t, bots, nil)
}

func streamEnvWith(t *testing.T, bots map[string]stream.Options, mod func(*stream.Config)) *env {
	t.Helper()
	sc := stream.Config{AllowedHosts: []string{"127.0.0.1"}, AllowedUsers: []string{"alice"}, Logger: testLogger(t)}
	if mod != nil {
		mod(&sc)
	}
	mgr, err := stream.NewManager(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	e := newEnv(t, nil)
	if err := e.be.EnableStreams(mgr, bots); err != nil {
		t.Fatal(err)
	}
	e.core.Backends().Register(embedded.Name, e.be, append(embedded.Types(), signaling.TypeBot)...)
	e.core.AddResolver(signaling.CallTypeBot, signaling.BotResolver(e.core))
	return e
}

// TestStreamThroughAPI: a proxy call between two plain-RTP peers is streamed in stereo by
// media/session/update {stream}: the caller's 1000 Hz left, the far side's 600 Hz right; a
// DTMF digit arrives as a dtmf message; stream: false sends stop. Who may stream, where to
// and bidirectional on a proxy are refused naming the setting or field.
func TestStreamThroughAPI(t *testing.T) {
	app := streamtest.Start(t)
	e := streamEnv(t, nil)
	c := dialAPI(t, e, "alice")
	caller, far := newRTPPeer(t), newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
		"offer": map[string]any{"sdp": caller.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := r["session_id"].(string)
	farOffer, _ := sdpOf(t, r, "offer")
	far.UseSDP(farOffer)
	r, err = c.media("session/set_answer", map[string]any{"session_id": id, "answer": map[string]any{"sdp": far.SDP("")}})
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := sdpOf(t, r, "answer")
	caller.UseSDP(ans)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go caller.SendToneFor(ctx, 0, "pcmu", 1000, 30*time.Second)
	go far.SendToneFor(ctx, 0, "pcmu", 600, 30*time.Second)

	for _, bad := range []struct {
		stream map[string]any
		code   int
		want   string
	}{
		{map[string]any{"url": "ws://10.1.2.3/x"}, signaling.CodeUnauthorized, "streams.allowed_hosts"},
		{map[string]any{"url": app.URL("/x"), "bidirectional": true}, signaling.CodeInvalidOperation, "bidirectional"},
		{map[string]any{"url": app.URL("/x"), "mix": "quad"}, signaling.CodeInvalidParameters, "mix"},
		{map[string]any{"url": app.URL("/x"), "colour": "red"}, signaling.CodeInvalidParameters, "colour"},
	} {
		_, err := c.media("session/update", map[string]any{"session_id": id, "type": "media", "stream": bad.stream})
		if codeOf(err) != bad.code || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("stream %v: %v, want %d naming %s", bad.stream, err, bad.code, bad.want)
		}
	}
	// the Go client's StartStream (media/session/update {stream})
	sid, err := c.C.StartStream(ctx, id, nkclient.StreamOptions{URL: app.URL("/listen"), Mix: "stereo", SampleRate: 16000, Metadata: map[string]any{"k": "v"}})
	if err != nil || sid == "" {
		t.Fatalf("StartStream: %q, %v", sid, err)
	}
	if ev := c.waitEvent("info", id); ev.Body["info"].(map[string]any)["stream"] != "started" {
		t.Fatalf("info %v", ev.Body)
	}
	conn, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "a second of stereo", func() bool { return conn.Frames() >= 50 })
	if st := conn.EventsOf("start")[0]; st["stream_id"] != sid || st["call"].(map[string]any)["session_id"] != id {
		t.Fatalf("start %v", st)
	}
	for ch, want := range []float64{1000, 600} {
		f, ratio, rms := conn.Tone(ch, 16000, time.Second, 1000, 600)
		t.Logf("channel %d: %.0f Hz ratio %.1f rms %.0f", ch, f, ratio, rms)
		if f != want || ratio < 10 || rms < 1000 {
			t.Fatalf("channel %d: %.0f Hz (ratio %.1f, rms %.0f), want %.0f", ch, f, ratio, rms, want)
		}
	}
	caller.SendDigit('5', 101, 8000)
	peers.WaitFor(t, 10*time.Second, "the dtmf message", func() bool { return len(conn.EventsOf("dtmf")) > 0 })
	if d := conn.EventsOf("dtmf")[0]; d["digit"] != "5" || d["side"] != "caller" {
		t.Fatalf("dtmf %v", d)
	}
	// bob may not stream alice's session (not his) nor his own (not in streams.allowed_users)
	bob := dialAPI(t, e, "bob")
	rb, err := bob.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": newRTPPeer(t).SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.media("session/update", map[string]any{"session_id": rb["session_id"], "type": "media",
		"stream": map[string]any{"url": app.URL("/b")}}); codeOf(err) != signaling.CodeUnauthorized || !strings.Contains(err.Error(), "streams.allowed_users") {
		t.Fatalf("bob's stream: %v", err)
	}
	if err := c.C.StopStream(ctx, id); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "stop message", func() bool { return len(conn.EventsOf("stop")) == 1 && conn.Closed() })
	cancel()
	_, _ = c.media("session/stop", map[string]any{"session_id": id})
	_, _ = bob.media("session/stop", map[string]any{"session_id": rb["session_id"]})
	e.waitIdle("after stop")
}

// TestStreamOnCallStart: media/call/start with stream connects before ringing (the start
// message has the call id); an application that is down hangs the call up with 2001.
func TestStreamOnCallStart(t *testing.T) {
	app := streamtest.Start(t)
	down := streamtest.Start(t)
	downURL := down.URL("/x")
	down.Close()
	e := streamEnv(t, nil)
	c := dialAPI(t, e, "alice")
	dialAPI(t, e, "bob") // the callee: rings (the test client answers invites ok)
	start := func() string {
		caller := newRTPPeer(t)
		r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
			"offer": map[string]any{"sdp": caller.SDP(""), "sdp_type": "rtp"}})
		if err != nil {
			t.Fatal(err)
		}
		return r["session_id"].(string)
	}
	id := start()
	r, err := c.media("call/start", map[string]any{"type": "user", "user": "bob", "session_id": id,
		"stream": map[string]any{"url": app.URL("/call"), "mix": "mixed"}})
	if err != nil {
		t.Fatal(err)
	}
	callID := r["call_id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, ok := app.WaitConn(ctx, 1)
	if !ok {
		t.Fatal("no stream connection")
	}
	peers.WaitFor(t, 5*time.Second, "start message", func() bool { return len(conn.EventsOf("start")) == 1 })
	if call := conn.EventsOf("start")[0]["call"].(map[string]any); call["call_id"] != callID || call["to"] != "bob" {
		t.Fatalf("start call %v", call)
	}
	if _, err := c.media("call/hangup", map[string]any{"call_id": callID}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "stop message", func() bool { return len(conn.EventsOf("stop")) == 1 && conn.Closed() })

	id = start()
	r, err = c.media("call/start", map[string]any{"type": "user", "user": "bob", "session_id": id, "stream": map[string]any{"url": downURL}})
	if err != nil {
		t.Fatal(err)
	}
	ev := c.waitEvent("hangup", r["call_id"].(string))
	if code, _ := ev.Body["code"].(float64); int(code) != signaling.CodeNoMediaserver {
		t.Fatalf("hangup %v, want 2001", ev.Body)
	}
	// without a session there is no audio to stream
	if _, err := c.media("call/start", map[string]any{"type": "user", "user": "bob", "stream": map[string]any{"url": app.URL("/y")}}); codeOf(err) != signaling.CodeMissingField {
		t.Fatalf("stream without session_id: %v", err)
	}
	e.waitIdle("after the calls")
}

// TestBotSessionThroughAPI: media/session/start {type: bot, bot} answers a plain-RTP caller
// and connects the bot; the bot's audio is heard by the caller; the bot's hangup message
// stops the session.
func TestBotSessionThroughAPI(t *testing.T) {
	app := streamtest.Start(t)
	e := streamEnv(t, map[string]stream.Options{"greeter": {URL: app.URL("/greeter"), Bidirectional: true}})
	c := dialAPI(t, e, "carol") // not in streams.allowed_users: a configured bot needs no permission
	peer := newRTPPeer(t)
	if _, err := c.media("session/start", map[string]any{"type": "bot", "bot": "nobody", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}}); codeOf(err) != signaling.CodeNoDestination {
		t.Fatalf("unknown bot: %v", err)
	}
	if _, err := c.media("session/start", map[string]any{"type": "bot", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"},
		"stream": map[string]any{"url": app.URL("/mine")}}); codeOf(err) != signaling.CodeUnauthorized {
		t.Fatalf("carol's own bot URL: %v", err)
	}
	r, err := c.media("session/start", map[string]any{"type": "bot", "bot": "greeter", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	ans, _ := sdpOf(t, r, "answer")
	peer.UseSDP(ans)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go peer.SendToneFor(ctx, 0, "pcmu", 1000, 15*time.Second)
	conn, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "the caller's audio", func() bool { return conn.Frames() >= 50 })
	if f, ratio, _ := conn.Tone(0, 8000, time.Second, 1000, 600); f != 1000 || ratio < 10 {
		t.Fatalf("bot heard %.0f Hz (ratio %.1f)", f, ratio)
	}
	if err := conn.PlayTone(600, 8000, 2*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	pcm, n := peer.WaitHeard(12000, 10*time.Second)
	checkTone(t, "bot caller", pcm, n, 600, 1000)
	if err := conn.SendJSON(map[string]any{"event": "hangup"}); err != nil {
		t.Fatal(err)
	}
	ev := c.waitEvent("stop", id)
	if reason, _ := ev.Body["reason"].(string); !strings.Contains(reason, "hung up") {
		t.Fatalf("stop %v", ev.Body)
	}
	cancel()
	e.waitIdle("after the bot hung up")
}

// TestStalledAppCallUnharmed: the stream application of an echo call stops reading; frames
// are dropped and counted while every packet of the caller's tone still comes back echoed;
// when the application reads again the stream goes on.
func TestStalledAppCallUnharmed(t *testing.T) {
	app := streamtest.Start(t)
	app.ReadBuffer = 4096
	e := streamEnvWith(t, nil, func(c *stream.Config) { c.QueueFrames = 25 })
	c := dialAPI(t, e, "alice")
	peer := newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	id := r["session_id"].(string)
	ans, _ := sdpOf(t, r, "answer")
	peer.UseSDP(ans)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bg, stopBG := context.WithCancel(ctx)
	go peer.SendToneFor(bg, 0, "pcmu", 1000, time.Minute)
	if _, err := c.media("session/update", map[string]any{"session_id": id, "type": "media",
		"stream": map[string]any{"url": app.URL("/slow"), "mix": "stereo", "sample_rate": 16000}}); err != nil {
		t.Fatal(err)
	}
	conn, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "audio", func() bool { return conn.Frames() > 20 })
	m, _ := e.be.Media(id)
	conn.Stall()
	dropped := func() uint64 {
		var n uint64
		for _, st := range m.Streams() {
			n += st.FramesDropped
		}
		return n
	}
	peers.WaitFor(t, 20*time.Second, "frames dropped", func() bool { return dropped() > 10 })
	stopBG()
	peer.Reset()
	peer.SendTone(ctx, 0, "pcmu", 1000, 3*time.Second) // 150 packets while the application stalls
	peers.WaitFor(t, 5*time.Second, "the echo settled", peers.Settled(peer.Count))
	pcm, n := peer.Heard()
	t.Logf("stalled: %d frames dropped; the caller got %d of 150 packets back", dropped(), n)
	if n < 147 {
		t.Fatalf("the caller got %d of 150 echoed packets while the stream application stalled", n)
	}
	checkTone(t, "echo during the stall", pcm, n, 1000, 600)
	if dropped() < 50 { // 150 frames were made during the 3 s (fewer if the machine skips ticks)
		t.Fatalf("only %d frames dropped during a 3 s stall", dropped())
	}
	before := conn.Frames()
	conn.Resume()
	go peer.SendToneFor(ctx, 0, "pcmu", 1000, time.Minute)
	peers.WaitFor(t, 10*time.Second, "the stream again", func() bool { return conn.Frames() > before+50 })
	if conn.Closed() {
		t.Fatal("the stalled connection was closed")
	}
	cancel()
	_, _ = c.media("session/stop", map[string]any{"session_id": id})
	e.waitIdle("after stop")
}

// TestCallToBot: media/call/start {type: bot, callee} from a plain-RTP caller's proxy session
// (proxy_type rtp) rings the bot, which answers with a bot session: the application hears the
// caller's 1000 Hz, the caller hears the application's 600 Hz; hanging up stops the stream.
// An unknown bot hangs the call up.
func TestCallToBot(t *testing.T) {
	app := streamtest.Start(t)
	e := streamEnv(t, map[string]stream.Options{"greeter": {URL: app.URL("/greeter"), Bidirectional: true}})
	c := dialAPI(t, e, "carol")
	caller := newRTPPeer(t)
	r, err := c.media("session/start", map[string]any{"type": "proxy", "proxy_type": "rtp",
		"offer": map[string]any{"sdp": caller.SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	sid := r["session_id"].(string)
	r, err = c.media("call/start", map[string]any{"type": "bot", "callee": "greeter", "session_id": sid})
	if err != nil {
		t.Fatal(err)
	}
	callID := r["call_id"].(string)
	ev := c.waitEvent("answer", sid)
	ans, _ := ev.Body["answer"].(map[string]any)["sdp"].(string)
	caller.UseSDP(ans)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go caller.SendToneFor(ctx, 0, "pcmu", 1000, 20*time.Second)
	conn, ok := app.WaitConn(ctx, 1)
	if !ok {
		t.Fatal("no bot connection")
	}
	peers.WaitFor(t, 10*time.Second, "the caller's tone at the bot", func() bool {
		f, ratio, _ := conn.Tone(0, 8000, time.Second, 1000, 600)
		return f == 1000 && ratio >= 10
	})
	if err := conn.PlayTone(600, 8000, 2*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	caller.Reset()
	pcm, n := caller.WaitHeard(12000, 10*time.Second)
	checkTone(t, "caller of the bot", pcm, n, 600, 1000)
	if _, err := c.media("call/hangup", map[string]any{"call_id": callID}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "stop message", func() bool { return len(conn.EventsOf("stop")) == 1 && conn.Closed() })

	r, err = c.media("call/start", map[string]any{"callee": "bot-nobody", "offer": map[string]any{"sdp": newRTPPeer(t).SDP(""), "sdp_type": "rtp"}})
	if err != nil {
		t.Fatal(err)
	}
	hev := c.waitEvent("hangup", r["call_id"].(string))
	if reason, _ := hev.Body["reason"].(string); !strings.Contains(reason, "nobody") {
		t.Fatalf("hangup of a call to an unknown bot: %v", hev.Body)
	}
	cancel()
	e.waitIdle("after the calls")
}
