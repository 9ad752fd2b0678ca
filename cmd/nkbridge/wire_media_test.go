package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

func TestMediaConfig(t *testing.T) {
	cfg, err := loadConfig("", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Media
	if !m.Enabled || m.BindIP != "127.0.0.1" || m.UDPPort != 10000 || m.RTPPortMin != 20000 || m.RTPPortMax != 20999 ||
		m.MediaTimeout != 30*time.Second || m.Quarantine != 5*time.Second || m.RecordDir != "" ||
		m.RTPLatch != "strict" || m.RecordMaxBytes != 100<<20 || m.RecordMaxDuration != time.Hour {
		t.Errorf("media defaults: %+v", m)
	}
	if _, err := m.engineConfig(slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	cfg, err = loadConfig("", envMap(map[string]string{"NKB_MEDIA_PUBLIC_IP": "192.0.2.7", "NKB_MEDIA_BIND_IP": "0.0.0.0",
		"NKB_MEDIA_ICE_LITE": "true", "NKB_MEDIA_TCP_PORT": "-1", "NKB_MEDIA_MEDIA_TIMEOUT": "5s",
		"NKB_MEDIA_RTP_LATCH": "ip", "NKB_MEDIA_RTP_PORTS_PER_USER": "40", "NKB_MEDIA_RECORD_MAX_DURATION": "10m"}))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := cfg.Media.engineConfig(slog.New(slog.DiscardHandler))
	if err != nil || mc.PublicIP.String() != "192.0.2.7" || !mc.ICELite || mc.TCPPort != -1 || mc.MediaTimeout != 5*time.Second ||
		mc.RTPLatch != "ip" || mc.RTPPortsPerUser != 40 || mc.RecordMaxDuration != 10*time.Minute {
		t.Errorf("env overrides: %+v, %v", mc, err)
	}
	for _, tc := range []struct {
		mod  func(*MediaConfig)
		want string
	}{
		{func(c *MediaConfig) { c.BindIP = "localhost" }, "bind_ip"},
		{func(c *MediaConfig) { c.BindIP = "0.0.0.0" }, "public_ip"},
		{func(c *MediaConfig) { c.PublicIP = "0.0.0.0" }, "public_ip"},
		{func(c *MediaConfig) { c.PublicIP = "nat.example" }, "public_ip"},
		{func(c *MediaConfig) { c.UDPPort = 20100 }, "inside the RTP port range"},
		{func(c *MediaConfig) { c.UDPPort = 70000 }, "out of range"},
		{func(c *MediaConfig) { c.RTPPortMin, c.RTPPortMax = 20000, 20001 }, "rtp_port_min"},
		{func(c *MediaConfig) { c.RTPPortMin = 80 }, "rtp_port_min"},
		{func(c *MediaConfig) { c.MaxSessions = -1 }, "max_sessions"},
		{func(c *MediaConfig) { c.RTPLatch = "first" }, "media.rtp_latch"},
		{func(c *MediaConfig) { c.RecordMaxBytes = -1 }, "media.record_max_bytes"},
	} {
		c := m
		tc.mod(&c)
		if _, err := c.engineConfig(slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %s", c, err, tc.want)
		}
	}
}

func TestWireMediaRegistersEchoProxy(t *testing.T) {
	cfg, err := loadConfig("", envMap(map[string]string{"NKB_MEDIA_UDP_PORT": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	backends := signaling.NewBackends()
	bus := signaling.NewBus()
	events := make(eventSink, 16)
	bus.Subscribe(events, signaling.Subscription{Class: "media", Subclass: "room"})
	var h hooks
	eng, b, err := wireMedia(cfg.Media, slog.New(slog.DiscardHandler), bus, backends, &h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	if eng == nil || b == nil || eng.UDPPort() == 0 || len(h.Stop) != 2 || len(h.Metrics) != 1 {
		t.Fatalf("wireMedia: engine %v backend %v hooks %+v", eng, b, h)
	}
	for _, typ := range []string{"echo", "proxy"} {
		if name, got, err := backends.Lookup(typ, ""); err != nil || name != "media" || got != b {
			t.Errorf("%s: %s %v %v", typ, name, got, err)
		}
	}
	for _, typ := range []string{"park", "mcu", "publish", "listen"} {
		if name, got, err := backends.Lookup(typ, ""); err != nil || name != "media" || got != b {
			t.Errorf("%s: %s %v %v", typ, name, got, err)
		}
	}
	if _, _, err := backends.Lookup("bridge", ""); err == nil {
		t.Error("bridge is not served by the embedded engine")
	}

	// Room commands reach the embedded rooms and their events reach the bus.
	core := signaling.New(signaling.Options{Bus: bus, Backends: backends})
	defer core.Close()
	if id, err := core.CreateRoom(context.Background(), "mcu", "", "conf1", nil); err != nil || id != "conf1" {
		t.Fatalf("create room: %q %v", id, err)
	}
	select {
	case ev := <-events:
		if ev.Type != "started" || ev.ObjID != "conf1" {
			t.Errorf("room event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Error("no room event on the bus")
	}
	if err := core.DestroyRoom(context.Background(), "conf1"); err != nil {
		t.Error(err)
	}

	off := cfg.Media
	off.Enabled = false
	backends = signaling.NewBackends()
	if eng, b, err := wireMedia(off, slog.New(slog.DiscardHandler), bus, backends, &hooks{}); eng != nil || b != nil || err != nil || len(backends.Names()) != 0 {
		t.Errorf("disabled: %v %v %v %v", eng, b, err, backends.Names())
	}
}

type eventSink chan signaling.Event

func (s eventSink) Deliver(ev signaling.Event) {
	select {
	case s <- ev:
	default:
	}
}

// TestBinaryEchoRTP: the real binary with its default media section answers
// an RTP echo session through the API, the caller hears its tone back, and
// the media gauges show the session.
func TestBinaryEchoRTP(t *testing.T) {
	base := 30000 + 2*rand.IntN(15000)
	d := startBinary(t, fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", base), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", base+20))
	ws := d.dial()
	if r := ws.Req("core", "user", "login", map[string]any{"user": "u", "password": "p"}); r["result"] != "ok" {
		t.Fatalf("login = %v", r)
	}
	peer := peers.NewRTPPeer(t)
	peer.Learn(0, "pcmu")
	r := ws.Req("media", "session", "start", map[string]any{"type": "echo", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
	data, _ := r["data"].(map[string]any)
	ans, _ := data["answer"].(map[string]any)
	sdp, _ := ans["sdp"].(string)
	m := regexp.MustCompile(`m=audio (\d+) `).FindStringSubmatch(sdp)
	if r["result"] != "ok" || m == nil || !strings.Contains(sdp, "c=IN IP4 127.0.0.1") {
		t.Fatalf("echo start = %v", r)
	}
	rport, _ := strconv.Atoi(m[1])
	if rport < base || rport > base+20 {
		t.Errorf("RTP port %d outside the configured range %d-%d", rport, base, base+20)
	}
	peer.UseSDP(sdp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go peer.SendTone(ctx, 0, "pcmu", 1000, 1500*time.Millisecond)
	pcm, _ := peer.WaitHeard(8000, 5*time.Second)
	if len(pcm) < 8000 {
		t.Fatalf("echo: %d samples; logs:\n%s", len(pcm), d.logs.String())
	}
	if f, ratio := audiotest.Dominant(pcm, 8000, 1000, 600); f != 1000 || ratio < 10 {
		t.Errorf("echo returns %.0f Hz (ratio %.1f), want 1000", f, ratio)
	}
	resp, err := http.Get("http://" + d.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`nkbridge_media_sessions{backend="media"} 1`, `nkbridge_media_rtp_ports{backend="media"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
