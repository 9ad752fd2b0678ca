package sipgw_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
	"github.com/nkbridge/nkbridge/media/stream"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// botEnv is the SIP side with audio streams: the embedded backend serves bot sessions of the
// given bots.
func botEnv(t *testing.T, bots map[string]stream.Options) *env {
	t.Helper()
	mgr, err := stream.NewManager(stream.Config{AllowedHosts: []string{"127.0.0.1"}, Logger: peers.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close) // after the env's cleanup (registered later, run first)
	e := newEnv(t, envOpts{})
	if err := e.be.EnableStreams(mgr, bots); err != nil {
		t.Fatal(err)
	}
	e.core.Backends().Register(embedded.Name, e.be, append(embedded.Types(), signaling.TypeBot)...)
	return e
}

// TestBaresipCallsBot: baresip calls bot-tone; the bot application (a Go WebSocket server)
// gets the start message and baresip's 600 Hz tone as 16-bit PCM, sends garbage (ignored),
// plays 1000 Hz back, and baresip's recording of what it heard holds it. Hanging up sends the stop message.
func TestBaresipCallsBot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := streamtest.Start(t)
	e := botEnv(t, map[string]stream.Options{"tone": {URL: app.URL("/bot"), Bidirectional: true, SampleRate: 16000,
		Metadata: map[string]any{"queue": "support"}}})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, "pcmu/8000/1")})
	if err := bob.Dial(ctx, "sip:bot-tone@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	c, ok := app.WaitConn(ctx, 1)
	if !ok {
		t.Fatal("the bot application got no connection")
	}
	peers.WaitFor(t, waitLimit, "1.5 s of the caller's audio", func() bool { return c.Frames() >= 75 })
	start := c.EventsOf("start")[0]
	if call := start["call"].(map[string]any); call["to"] != "bot-tone" || start["metadata"].(map[string]any)["queue"] != "support" ||
		start["format"].(map[string]any)["sample_rate"].(float64) != 16000 || start["bidirectional"] != true {
		t.Fatalf("start message %v", start)
	}
	f, ratio, rms := c.Tone(0, 16000, time.Second, 600, 1000)
	t.Logf("the bot heard %.0f Hz (ratio %.1f, rms %.0f)", f, ratio, rms)
	if f != 600 || ratio < 10 || rms < 300 {
		t.Fatalf("the bot heard %.0f Hz (ratio %.1f, rms %.0f), want baresip's 600 Hz", f, ratio, rms)
	}
	// garbage first: ignored, the call goes on
	for _, g := range [][]byte{[]byte("not json"), []byte(`{"event":"explode"}`)} {
		if err := c.Send(false, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(true, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.PlayTone(1000, 16000, 2*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.SendJSON(map[string]any{"event": "mark", "name": "played"}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, waitLimit, "the mark back", func() bool { return len(c.EventsOf("mark")) == 1 })
	if err := bob.WaitHeard(ctx, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n := len(bob.Events())
	if err := bob.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	heard, rate, err := bob.Heard()
	if err != nil {
		t.Fatal(err)
	}
	hf, hratio := audiotest.Dominant(heard, float64(rate), 600, 1000)
	t.Logf("baresip heard %.1f s: %.0f Hz (ratio %.1f), rms %.0f", float64(len(heard))/float64(rate), hf, hratio, audiotest.RMS(heard))
	if hf != 1000 || hratio < 10 {
		t.Fatalf("baresip heard %.0f Hz (ratio %.1f), want the bot's 1000 Hz", hf, hratio)
	}
	peers.WaitFor(t, waitLimit, "stop message", func() bool { return len(c.EventsOf("stop")) == 1 && c.Closed() })
	if r, _ := c.EventsOf("stop")[0]["reason"].(string); !strings.Contains(r, "Sip bye") {
		t.Fatalf("stop reason %q", r)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, cl := e.core.Counts(); return s == 0 && cl == 0 && e.srv.Calls() == 0 })
}

// TestBotTwilioAndAppHangup: a bot with Twilio framing gets baresip's tone as µ-law media
// events, its media events are played to baresip; the application closing its WebSocket
// hangs the SIP call up; a bot whose application is down refuses the call.
func TestBotTwilioAndAppHangup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := streamtest.Start(t)
	down := streamtest.Start(t)
	downURL := down.URL("/gone")
	down.Close()
	e := botEnv(t, map[string]stream.Options{
		"twilio": {URL: app.URL("/twilio"), Framing: stream.FramingTwilio, Bidirectional: true},
		"down":   {URL: downURL},
	})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, "pcmu/8000/1")})
	if err := bob.Dial(ctx, "sip:bot-down@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if ev, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("call to a bot whose application is down: %s", ev.Param)
	}
	n := len(bob.Events())
	if err := bob.Dial(ctx, "sip:bot-twilio@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", n); err != nil {
		t.Fatal(err)
	}
	c, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, waitLimit, "1.5 s of media events", func() bool { return c.Frames() >= 75 })
	sid, _ := c.EventsOf("start")[0]["streamSid"].(string)
	if f, ratio, _ := c.Tone(0, 8000, time.Second, 600, 1000); f != 600 || ratio < 10 {
		t.Fatalf("twilio: the bot heard %.0f Hz (ratio %.1f)", f, ratio)
	}
	if err := c.PlayTone(1000, 8000, 2*time.Second, true, sid); err != nil {
		t.Fatal(err)
	}
	if err := c.SendJSON(map[string]any{"event": "mark", "streamSid": sid, "mark": map[string]any{"name": "done"}}); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, waitLimit, "the mark back", func() bool { return len(c.EventsOf("mark")) == 1 })
	if err := bob.WaitHeard(ctx, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n = len(bob.Events())
	c.Close() // the application leaves: the call ends
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	heard, rate, err := bob.Heard()
	if err != nil {
		t.Fatal(err)
	}
	if hf, hratio := audiotest.Dominant(heard, float64(rate), 600, 1000); hf != 1000 || hratio < 10 {
		t.Fatalf("baresip heard %.0f Hz (ratio %.1f), want the bot's 1000 Hz", hf, hratio)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, cl := e.core.Counts(); return s == 0 && cl == 0 && e.srv.Calls() == 0 })
}

// TestBotRoute: bot-<name> routes to a bot session of that name (sip.room_prefixes "bot-": bot).
func TestBotRoute(t *testing.T) {
	r, err := sipgw.NewRouter(sipgw.RouteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := r.Route("bot-support")
	if err != nil || rt.SessionType != signaling.TypeBot || rt.Bot != "support" || rt.RoomID != "" {
		t.Fatalf("bot-support: %+v, %v", rt, err)
	}
	if _, err := r.Route("bot-a%20b"); err == nil {
		t.Fatal("a bad bot name routed")
	}
}
