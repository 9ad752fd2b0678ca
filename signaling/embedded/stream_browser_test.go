package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
)

// TestBrowserCallStreamsStereo: Chromium (a 1000 Hz microphone) calls a plain-RTP phone (600
// Hz) through a proxy session and streams the call in stereo at 16 kHz from the page
// (media/session/update {stream}): the application hears the browser on the left and the
// phone on the right, each alone; the browser still hears the phone meanwhile.
func TestBrowserCallStreamsStereo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	app := streamtest.Start(t)
	e := streamEnv(t, nil)
	p := br.NewPage(ctx, e.base+"/page.html")
	defer p.Close(ctx)
	var started struct {
		SID string `json:"sid"`
		Far string `json:"far"`
	}
	eval(ctx, t, p, `async () => {
		await T.login("alice");
		await T.media("pcmu");
		const r = await T.api.send("media", "session", "start", {type: "proxy", proxy_type: "rtp", offer: {sdp: await T.offer()}});
		T.sid = r.session_id;
		return {sid: r.session_id, far: r.offer.sdp};
	}`, &started)
	phone := newRTPPeer(t)
	phone.UseSDP(started.Far)
	evalArg(ctx, t, p, `async (answer) => {
		const r = await T.api.send("media", "session", "set_answer", {session_id: T.sid, answer: {sdp: answer, sdp_type: "rtp"}});
		await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
	}`, phone.SDP(""), nil)
	tctx, stopTone := context.WithCancel(ctx)
	defer stopTone()
	go phone.SendToneFor(tctx, 0, "pcmu", 600, 2*time.Minute)
	var streamID string
	evalArg(ctx, t, p, `async (url) => {
		const r = await T.api.send("media", "session", "update", {session_id: T.sid, type: "media",
			stream: {url, mix: "stereo", sample_rate: 16000, metadata: {page: "test"}}});
		return r.stream_id;
	}`, app.URL("/stereo"), &streamID)
	c, ok := app.WaitConn(ctx, 1)
	if !ok || streamID == "" {
		t.Fatalf("no stream (id %q)", streamID)
	}
	peers.WaitFor(t, 20*time.Second, "the browser's and the phone's tones in the stream", func() bool {
		l, lr, _ := c.Tone(0, 16000, time.Second, 1000, 600)
		r, rr, _ := c.Tone(1, 16000, time.Second, 1000, 600)
		return l == 1000 && lr >= 10 && r == 600 && rr >= 10
	})
	for ch, want := range []float64{1000, 600} {
		f, ratio, rms := c.Tone(ch, 16000, time.Second, 1000, 600)
		t.Logf("channel %d: %.0f Hz (ratio %.1f, rms %.0f), want %.0f", ch, f, ratio, rms, want)
		if rms < 300 {
			t.Fatalf("channel %d too quiet: rms %.0f", ch, rms)
		}
	}
	browsertest.CheckHeard(t, "browser hears the phone while streaming", measure(ctx, t, p), 600, 1000)
	eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
	peers.WaitFor(t, 10*time.Second, "stop message", func() bool { return len(c.EventsOf("stop")) == 1 && c.Closed() })
	stopTone()
	e.waitIdle("after the call")
}
