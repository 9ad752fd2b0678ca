package vertogw

import (
	"context"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
	"github.com/nkbridge/nkbridge/media/stream"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// TestBrowserVertoCallsBot: a Verto client (Chromium, 880 Hz) dials bot-greeter: the bot
// application hears the page's tone, the page hears the bot's 600 Hz, hanging up sends the
// stop message.
func TestBrowserVertoCallsBot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := streamtest.Start(t)
	mgr, err := stream.NewManager(stream.Config{AllowedHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	e := newEnv(t, envOpts{})
	if err := e.emb.EnableStreams(mgr, map[string]stream.Options{"greeter": {URL: app.URL("/greeter"), Bidirectional: true, SampleRate: 16000}}); err != nil {
		t.Fatal(err)
	}
	e.core.Backends().Register(embedded.Name, e.emb, append(embedded.Types(), signaling.TypeBot)...)
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	v.vertoLogin("alice")
	v.vertoCall("bot-greeter")
	v.waitState("active")
	c, ok := app.WaitConn(ctx, 1)
	if !ok {
		t.Fatal("no bot connection")
	}
	peers.WaitFor(t, 20*time.Second, "the page's tone at the bot", func() bool {
		f, ratio, _ := c.Tone(0, 16000, time.Second, vertoTone, 600)
		return f == vertoTone && ratio >= 10
	})
	if to := c.EventsOf("start")[0]["call"].(map[string]any)["to"]; to != "bot-greeter" {
		t.Fatalf("start call.to %v", to)
	}
	if err := c.PlayTone(600, 16000, 8*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	v.hears(swMeasure, 600)
	v.eval(`window.call.hangup(), true`, nil)
	peers.WaitFor(t, 10*time.Second, "stop message", func() bool { return len(c.EventsOf("stop")) == 1 && c.Closed() })
	e.idle()
}
