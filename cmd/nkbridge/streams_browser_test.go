package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
)

// TestStreamsJSClientBrowser: nkbridge.js in Chromium against the real binary: an echo call
// from the page's 1000 Hz microphone is streamed with client.startStream (the application
// hears 1000 Hz) and stopped with client.stopStream (stop message, connection closed); a
// user not in streams.allowed_users gets 1030.
func TestStreamsJSClientBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := streamtest.Start(t)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte("streams:\n  allowed_hosts: [127.0.0.1]\n  allowed_users: [carol]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := 30000 + 2*rand.IntN(15000)
	d := startBinary(t, "NKB_CONFIG="+conf, fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", base), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", base+20))
	b := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	p := b.NewPage(ctx, "http://"+d.addr+"/demo/")
	var out struct {
		StreamID string `json:"stream_id"`
		Refused  any    `json:"refused"`
	}
	err := p.EvalArg(ctx, `async (url) => {
		const { NkbClient, ApiError } = await import("/demo/nkbridge.js");
		const code = async (p) => { try { await p; return 0; } catch (e) { return e instanceof ApiError ? e.code : String(e); } };
		const carol = new NkbClient(); await carol.connect(); await carol.login("carol", "pw");
		const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
		const pc = new RTCPeerConnection();
		for (const tr of mic.getTracks()) pc.addTrack(tr, mic);
		await pc.setLocalDescription(await pc.createOffer());
		await new Promise((r) => { if (pc.iceGatheringState === "complete") r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); });
		const s = await carol.startSession("echo", { offer: { sdp: pc.localDescription.sdp } });
		await pc.setRemoteDescription({ type: "answer", sdp: s.answer.sdp });
		window.S = { carol, sid: s.session_id, pc };
		const st = await carol.startStream(s.session_id, { url, metadata: { from: "js" } });
		const dave = new NkbClient(); await dave.connect(); await dave.login("dave", "pw");
		const ds = await dave.startSession("echo", { offer: { sdp: pc.localDescription.sdp } });
		const refused = await code(dave.startStream(ds.session_id, { url }));
		await dave.stopSession(ds.session_id); dave.close();
		return { stream_id: st.stream_id, refused };
	}`, app.URL("/js"), &out)
	if err != nil {
		t.Fatalf("page: %v\nconsole: %v", err, p.Console())
	}
	if out.StreamID == "" || fmt.Sprint(out.Refused) != "1030" {
		t.Fatalf("page observed %+v", out)
	}
	c, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 20*time.Second, "the browser's tone at the application", func() bool {
		f, ratio, _ := c.Tone(0, 8000, time.Second, 1000, 600)
		return f == 1000 && ratio >= 10
	})
	if c.EventsOf("start")[0]["metadata"].(map[string]any)["from"] != "js" {
		t.Fatalf("start %v", c.EventsOf("start")[0])
	}
	if err := p.Eval(ctx, `S.carol.stopStream(S.sid)`, nil); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 10*time.Second, "stop message", func() bool { return len(c.EventsOf("stop")) == 1 && c.Closed() })
	if err := p.Eval(ctx, `S.carol.stopSession(S.sid).then(() => S.carol.close())`, nil); err != nil {
		t.Fatal(err)
	}
}
