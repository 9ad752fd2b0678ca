package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
)

// TestBinaryStreams: the real binary with a streams: section: an API user streams an echo
// call (the application hears the caller's tone) and starts a bot session of a configured
// bot (the caller hears the bot's tone); the streams' metrics count them; -check-config
// refuses a bot whose host is not allowed, naming the setting.
func TestBinaryStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	app := streamtest.Start(t)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	yaml := fmt.Sprintf("streams:\n  allowed_hosts: [127.0.0.1]\n  allowed_users: [u]\n  bots:\n    echoer: {url: %q, bidirectional: true, metadata: {team: qa}}\n", app.URL("/bot"))
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	base := 30000 + 2*rand.IntN(15000)
	d := startBinary(t, "NKB_CONFIG="+conf, fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", base), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", base+20))
	ws := d.dial()
	if r := ws.Req("core", "user", "login", map[string]any{"user": "u", "password": "p"}); r["result"] != "ok" {
		t.Fatalf("login = %v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(data map[string]any) (*peers.RTPPeer, string) {
		peer := peers.NewRTPPeer(t)
		peer.Learn(0, "pcmu")
		data["offer"] = map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp", "caller_id": "u"}
		r := ws.Req("media", "session", "start", data)
		dd, _ := r["data"].(map[string]any)
		ans, _ := dd["answer"].(map[string]any)
		sdp, _ := ans["sdp"].(string)
		if r["result"] != "ok" || sdp == "" {
			t.Fatalf("start %v = %v\n%s", data, r, d.logs.String())
		}
		peer.UseSDP(sdp)
		return peer, dd["session_id"].(string)
	}
	caller, sid := start(map[string]any{"type": "echo"})
	go caller.SendToneFor(ctx, 0, "pcmu", 1000, 30*time.Second)
	r := ws.Req("media", "session", "update", map[string]any{"session_id": sid, "type": "media", "stream": map[string]any{"url": app.URL("/echo")}})
	if r["result"] != "ok" {
		t.Fatalf("stream = %v", r)
	}
	c1, _ := app.WaitConn(ctx, 1)
	peers.WaitFor(t, 10*time.Second, "the caller's tone at the application", func() bool {
		f, ratio, _ := c1.Tone(0, 8000, time.Second, 1000, 600)
		return f == 1000 && ratio >= 10
	})

	botCaller, _ := start(map[string]any{"type": "bot", "bot": "echoer"})
	c2, _ := app.WaitConn(ctx, 2)
	peers.WaitFor(t, 5*time.Second, "the bot's start message", func() bool { return len(c2.EventsOf("start")) == 1 })
	if st := c2.EventsOf("start")[0]; st["metadata"].(map[string]any)["team"] != "qa" || st["call"].(map[string]any)["to"] != "bot-echoer" {
		t.Fatalf("bot start %v", st)
	}
	if err := c2.PlayTone(600, 8000, 2*time.Second, false, ""); err != nil {
		t.Fatal(err)
	}
	pcm, n := botCaller.WaitHeard(8000, 10*time.Second)
	if len(pcm) < 8000 {
		t.Fatalf("the bot's caller heard %d samples (%d packets)", len(pcm), n)
	}
	m := d.scrape()
	if m["nkbridge_streams_started_total"] != 2 || m["nkbridge_streams_active"] != 2 || m[`nkbridge_stream_frames_total{result="sent"}`] < 50 {
		t.Fatalf("stream metrics: started %v active %v sent %v", m["nkbridge_streams_started_total"], m["nkbridge_streams_active"],
			m[`nkbridge_stream_frames_total{result="sent"}`])
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("streams:\n  bots:\n    x: {url: \"wss://bots.example/x\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), nil, []string{"-config", bad, "-check-config"}, strings.NewReader(""), &out, &errb, func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "streams.allowed_hosts") || !strings.Contains(err.Error(), "streams.bots.x") {
		t.Fatalf("-check-config with a bot host not allowed: %v", err)
	}
}
