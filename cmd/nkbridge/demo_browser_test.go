package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// demoPage drives the demo page the way a person does: fill inputs, click
// buttons, read what the page shows.
type demoPage struct {
	t    *testing.T
	name string
	p    *browsertest.Page
	ctx  context.Context
}

func openDemo(ctx context.Context, t *testing.T, d *daemon, name string, tone float64) *demoPage {
	b := browsertest.Launch(t, browsertest.Options{ToneHz: tone, LoopbackPC: true})
	p := b.NewPage(ctx, "http://"+d.addr+"/") // "/" redirects to /demo/
	dp := &demoPage{t: t, name: name, p: p, ctx: ctx}
	dp.wait(`location.pathname === "/demo/" && window.demo !== undefined`, "demo page loaded")
	return dp
}

func (d *demoPage) fail(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf("%s: %s\nconsole:\n%s", d.name, fmt.Sprintf(format, args...), strings.Join(d.p.Console(), "\n"))
}

func (d *demoPage) eval(js string, out any) {
	d.t.Helper()
	if err := d.p.Eval(d.ctx, js, out); err != nil {
		d.fail("eval %s: %v", js, err)
	}
}

func (d *demoPage) wait(js, what string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 20*time.Second)
	defer cancel()
	if err := d.p.WaitFor(ctx, js, nil); err != nil {
		var log string
		_ = d.p.Eval(d.ctx, `document.getElementById("log").innerText`, &log)
		d.fail("waiting for %s (%s): %v\npage log:\n%s", what, js, err, log)
	}
}

func (d *demoPage) set(id, value string) {
	d.t.Helper()
	if err := d.p.EvalArg(d.ctx, `([id, v]) => { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event("input")); }`, []string{id, value}, nil); err != nil {
		d.fail("set %s: %v", id, err)
	}
}

func (d *demoPage) click(id string) {
	d.t.Helper()
	var ok bool
	if err := d.p.EvalArg(d.ctx, `(id) => { const el = document.querySelector(id); if (!el || el.disabled || el.closest("[hidden]")) return false; el.click(); return true; }`, id, &ok); err != nil || !ok {
		d.fail("click %s: not clickable (%v)", id, err)
	}
}

func (d *demoPage) text(id string) string {
	d.t.Helper()
	var s string
	d.eval(fmt.Sprintf(`document.getElementById(%q).textContent`, id), &s)
	return s
}

func (d *demoPage) login(user string) {
	d.t.Helper()
	d.set("user", user)
	d.set("password", "any")
	d.click("#raw-mic") // a pure tone must not be noise-suppressed
	d.click("#login")
	d.wait(`document.getElementById("conn-status").textContent === "logged in as `+user+`"`, "logged in")
}

type demoAudio struct {
	DominantHz float64            `json:"dominantHz"`
	BinHz      float64            `json:"binHz"`
	Levels     map[string]float64 `json:"levels"`
}

// hears measures what the page plays (its remote stream) and checks the
// dominant frequency is hz, louder than other by 20 dB.
func (d *demoPage) hears(hz, other float64) {
	d.t.Helper()
	var a demoAudio
	d.eval(fmt.Sprintf(`nkb.measureAudio(demo.remoteStream, {ms: 1500, freqs: [%g, %g]})`, hz, other), &a)
	if math.Abs(a.DominantHz-hz) > 2*a.BinHz || a.Levels[fmt.Sprint(hz)]-a.Levels[fmt.Sprint(other)] < 20 {
		d.fail("hears %.0f Hz (levels %v), want %.0f Hz", a.DominantHz, a.Levels, hz)
	}
}

// The demo page, driven in two real Chromiums: log in, echo test (the level
// meter moves and the returned audio is our own tone), a call from alice to
// bob that bob accepts (each hears the other's tone, DTMF goes out as RFC
// 4733), hang up, then a call bob rejects. Metrics scraped before and after
// move by exactly what happened.
func TestDemoPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startBinary(t)
	before := d.scrape()
	alice := openDemo(ctx, t, d, "alice", 1000)
	bob := openDemo(ctx, t, d, "bob", 600)
	alice.login("alice")
	bob.login("bob")

	// Echo test: the meter moves and alice hears her own 1000 Hz.
	alice.click("#echo-start")
	alice.wait(`document.getElementById("echo-status").textContent.startsWith("running")`, "echo running")
	alice.wait(`Number(document.getElementById("echo-level").value) > 0.1`, "echo level meter moving")
	alice.hears(1000, 600)
	// DTMF during the echo test reaches nkbridge's media as RFC 4733 events.
	for _, k := range []string{"4", "2"} {
		alice.click(fmt.Sprintf(`#keypad button[data-digit=%q]`, k))
	}
	alice.wait(`demo.dtmfHeard === "42" && document.getElementById("dtmf-heard").textContent === "42"`, "nkbridge heard the DTMF")
	if alice.text("echo-error") != "" {
		alice.fail("echo error shown: %s", alice.text("echo-error"))
	}
	alice.click("#echo-stop")
	alice.wait(`demo.echo === null && Number(document.getElementById("echo-level").value) === 0`, "echo stopped")
	// The echo's RTP, counted when it stopped: several seconds of 20 ms packets each way.
	echoed := d.scrape()
	in := echoed[`nkbridge_rtp_packets_total{direction="in"}`] - before[`nkbridge_rtp_packets_total{direction="in"}`]
	out := echoed[`nkbridge_rtp_packets_total{direction="out"}`] - before[`nkbridge_rtp_packets_total{direction="out"}`]
	if in < 100 || out < 0.8*in || out > 1.2*in {
		t.Errorf("echo RTP packets in %v out %v", in, out)
	}

	// Call alice -> bob; bob's page rings, bob accepts.
	alice.set("call-type", "user")
	alice.set("callee", "bob")
	alice.click("#call")
	bob.wait(`!document.getElementById("incoming").hidden`, "incoming call panel")
	if from := bob.text("incoming-from"); from != "alice" {
		bob.fail("incoming from %q", from)
	}
	alice.wait(`document.getElementById("call-status").textContent === "ringing…"`, "caller sees ringing")
	bob.click("#accept")
	alice.wait(`document.getElementById("call-status").textContent === "in call"`, "caller in call")
	bob.wait(`document.getElementById("call-status").textContent === "in call"`, "callee in call")
	alice.wait(`Number(document.getElementById("call-level").value) > 0.1`, "caller's meter moving")
	bob.wait(`Number(document.getElementById("call-level").value) > 0.1`, "callee's meter moving")
	alice.hears(600, 1000)
	bob.hears(1000, 600)

	// DTMF from the keypad: the browser plays the digits out as telephone-events.
	for _, k := range []string{"1", "5", "#"} {
		alice.click(fmt.Sprintf(`#keypad button[data-digit=%q]`, k))
	}
	alice.wait(`demo.dtmf === "4215#"`, "DTMF digits played out")
	if err := alice.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "demo-in-call.png")); err != nil {
		t.Fatal(err)
	}
	mid := d.scrape()
	checkDelta(t, before, mid, map[string]float64{
		`nkbridge_calls{state="answered"}`: 1,
		`nkbridge_api_connections`:         2,
	})

	// Alice hangs up; bob's page sees the call end.
	alice.click("#hangup")
	alice.wait(`demo.call === null`, "caller's call cleared")
	bob.wait(`demo.call === null && document.getElementById("call-status").textContent.startsWith("call ended")`, "callee sees hangup")

	// Second call: bob rejects it.
	alice.click("#call")
	bob.wait(`!document.getElementById("incoming").hidden`, "incoming again")
	bob.click("#reject")
	alice.wait(`demo.call === null && document.getElementById("call-status").textContent.includes("2021")`, "caller sees rejection")

	after := d.scrape()
	checkDelta(t, before, after, map[string]float64{
		`nkbridge_api_connections_total`:                               2,
		`nkbridge_sessions_started_total{backend="media",type="echo"}`: 1,
		`nkbridge_sessions_stopped_total{code="1013",type="echo"}`:     1,
		`nkbridge_sessions_started_total{backend="",type="p2p"}`:       2,
		`nkbridge_calls_started_total{target="user"}`:                  2,
		`nkbridge_calls_answered_total{target="user"}`:                 1,
		`nkbridge_calls_ended_total{outcome="answered",target="user"}`: 1,
		`nkbridge_calls_ended_total{outcome="rejected",target="user"}`: 1,
		`nkbridge_calls{state="answered"}`:                             0,
		`nkbridge_media_sessions{backend="media"}`:                     0,
	})
	if after[`nkbridge_sessions{state="ready",type="p2p"}`]+after[`nkbridge_sessions{state="wait",type="p2p"}`] != 0 {
		t.Errorf("p2p sessions left: %v", after)
	}
	if err := bob.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "demo-callee-after.png")); err != nil {
		t.Fatal(err)
	}

	// SIGTERM with a call up: /health says 503 at once, the call's media is
	// untouched (each still hears the other), and when bob hangs up the
	// daemon has nothing left and exits 0.
	alice.click("#call")
	bob.wait(`!document.getElementById("incoming").hidden`, "third call rings")
	bob.click("#accept")
	alice.wait(`document.getElementById("call-status").textContent === "in call"`, "third call up")
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	peers.WaitFor(t, 5*time.Second, "health 503 after SIGTERM", func() bool { c, _ := d.health(); return c == 503 })
	time.Sleep(time.Second) // the subject: well into the drain, the call still goes on
	alice.hears(600, 1000)
	bob.hears(1000, 600)
	bob.click("#hangup")
	alice.wait(`demo.call === null`, "caller sees the hangup while draining")
	d.waitExit(15 * time.Second)
	if !d.logged(map[string]any{"msg": "nkbridge drained"}) {
		t.Fatalf("not drained:\n%s", d.logs.String())
	}
}

// The demo page dials a SIP URL: a real SIP phone (baresip, auto-answer,
// G.711) answers through nkbridge's media (WebRTC ⇄ RTP proxy); each hears
// the other's tone; the page hangs up and the phone sees the BYE. Then the
// phone calls the page's user: it rings, is accepted, talks, and the phone
// hangs up.
func TestDemoPageCallsSIP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium and baresip")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// carol is a SIP user of nkbridge: her INVITEs are digest-authenticated.
	phone := peers.StartBaresip(t, peers.BaresipOptions{User: "carol", ToneHz: 600, Codec: "pcmu", AccountParams: ";auth_pass=carol-secret"})
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 40)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte("sip:\n  users: [{user: carol, password: carol-secret}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startBinary(t, "NKB_CONFIG="+conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		"NKB_SIP_SIP_CALLERS=alice", "NKB_SIP_OUTBOUND_DOMAINS=127.0.0.1",
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+39))
	before := d.scrape()
	alice := openDemo(ctx, t, d, "alice", 1000)
	alice.login("alice")
	alice.set("call-type", "sip")
	alice.set("callee", phone.URI())
	alice.click("#call")
	alice.wait(`document.getElementById("call-status").textContent === "in call"`, "SIP call answered")
	if _, _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	alice.wait(`Number(document.getElementById("call-level").value) > 0.1`, "meter moving")
	alice.hears(600, 1000)
	if err := phone.WaitHeard(ctx, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	alice.click("#hangup")
	if _, _, err := phone.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	}
	heard, rate, err := phone.Heard()
	if err != nil {
		t.Fatal(err)
	}
	if f, ratio := audiotest.Dominant(heard, float64(rate), 600, 1000); f != 1000 || ratio < 10 {
		t.Fatalf("the phone heard %v Hz (ratio %.1f), want the page's 1000 Hz", f, ratio)
	}
	// The phone calls alice: her page rings, she accepts, they talk, the phone hangs up.
	n := len(phone.Events())
	if err := phone.Dial(ctx, fmt.Sprintf("sip:alice@127.0.0.1:%d", sipPort)); err != nil {
		t.Fatal(err)
	}
	alice.wait(`!document.getElementById("incoming").hidden`, "SIP call rings the page")
	alice.click("#accept")
	alice.wait(`document.getElementById("call-status").textContent === "in call"`, "inbound SIP call up")
	if _, _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED", n); err != nil {
		t.Fatal(err)
	}
	alice.hears(600, 1000)
	if err := phone.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	alice.wait(`demo.call === null && document.getElementById("call-status").textContent.startsWith("call ended")`, "page sees the phone's BYE")

	after := d.scrape()
	checkDelta(t, before, after, map[string]float64{
		`nkbridge_calls_started_total{target="user"}`:                   1,
		`nkbridge_calls_ended_total{outcome="answered",target="user"}`:  1,
		`nkbridge_sessions_started_total{backend="media",type="proxy"}`: 2,
		`nkbridge_calls_started_total{target="sip"}`:                    1,
		`nkbridge_calls_answered_total{target="sip"}`:                   1,
		`nkbridge_calls_ended_total{outcome="answered",target="sip"}`:   1,
	})
	// Two proxy sessions, each with a WebRTC and an RTP leg, for several seconds.
	if in := after[`nkbridge_rtp_packets_total{direction="in"}`] - before[`nkbridge_rtp_packets_total{direction="in"}`]; in < 200 {
		t.Errorf("RTP packets in moved by %v", in)
	}
}
