package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling/auth"
)

// openPage opens path of the daemon's demo pages in browser b (one browser serves several
// pages: the pages make their own test tones).
func openPage(ctx context.Context, t *testing.T, b *browsertest.Browser, d *daemon, path, name, ready string) *demoPage {
	t.Helper()
	p := b.NewPage(ctx, "http://"+d.addr+"/demo/"+path)
	dp := &demoPage{t: t, name: name, p: p, ctx: ctx}
	dp.wait(ready, name+" page loaded")
	return dp
}

// loginAs logs a page in through its login bar; tone > 0 picks the page's test tone source.
func (d *demoPage) loginAs(user, password string, tone float64) {
	d.t.Helper()
	d.set("user", user)
	d.set("password", password)
	if tone > 0 {
		d.set("source", "tone")
		d.set("tone-hz", fmt.Sprint(tone))
	}
	d.click("#login")
	d.wait(`document.getElementById("conn-status").textContent === "logged in as `+user+`"`, "logged in")
}

// hearsIn measures the stream the expression js gives (in the page) and reports what is
// wrong: want tones under 20 dB above every notWant tone, or a dominant frequency elsewhere.
func (d *demoPage) hearsIn(js string, want, notWant []float64) string {
	d.t.Helper()
	var a demoAudio
	freqs := append(append([]float64{}, want...), notWant...)
	d.eval(fmt.Sprintf(`nkb.measureAudio(%s, {ms: 1200, freqs: %s})`, js, floats(freqs)), &a)
	var bad []string
	for _, w := range want {
		for _, n := range notWant {
			if a.Levels[fmt.Sprint(w)]-a.Levels[fmt.Sprint(n)] < 20 {
				bad = append(bad, fmt.Sprintf("%.0f Hz not 20 dB over %.0f Hz", w, n))
			}
		}
	}
	if len(want) == 1 && math.Abs(a.DominantHz-want[0]) > 2*a.BinHz {
		bad = append(bad, fmt.Sprintf("dominant %.0f Hz", a.DominantHz))
	}
	if len(bad) > 0 {
		return fmt.Sprintf("%s (levels %v)", strings.Join(bad, ", "), a.Levels)
	}
	return ""
}

// hearsUntil waits (bounded) until the page hears want and not notWant in js's stream.
func (d *demoPage) hearsUntil(js string, want, notWant []float64, what string) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := d.hearsIn(js, want, notWant)
		if p == "" {
			return
		}
		if time.Now().After(deadline) {
			d.fail("%s: %s", what, p)
		}
	}
}

func floats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmt.Sprint(f)
	}
	return "[" + strings.Join(s, ",") + "]"
}

type roomStats struct {
	Tiles []struct {
		User          string `json:"user"`
		FramesDecoded int    `json:"framesDecoded"`
		Shown         bool   `json:"shown"`
	} `json:"tiles"`
	Members []struct {
		User    string `json:"user"`
		Talking bool   `json:"talking"`
	} `json:"members"`
}

// The conference room page, three participants in one Chromium (page tones 500, 800 and
// 1200 Hz, the fake camera): each page shows the other two cameras with decoded frames,
// lists the three participants with talking indicators, and hears the other two tones in the
// mcu mix but not its own. Muting one participant removes its tone from the others' mix and
// its talking indicator; one leaving drops it from the others' list and grid.
func TestRoomPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := startBinary(t)
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	users := []string{"ann", "ben", "cat"}
	tones := []float64{500, 800, 1200}
	pages := make([]*demoPage, 3)
	for i, u := range users {
		pages[i] = openPage(ctx, t, b, d, "room.html", u, `window.room !== undefined`)
		pages[i].loginAs(u, "any", tones[i])
		pages[i].set("room-name", "standup")
		pages[i].click("#join")
		pages[i].wait(`document.getElementById("room-status").textContent === "in room standup"`, "joined")
	}
	// Everyone lists everyone, and sees the two other cameras play.
	for i, p := range pages {
		p.wait(`document.querySelectorAll("#members li").length === 3 && document.getElementById("member-count").textContent === "3"`, "three participants listed")
		p.wait(`room.stats().then((s) => s.tiles.length === 2 && s.tiles.every((t) => t.framesDecoded > 5 && t.shown))`, "two video tiles with frames")
		var s roomStats
		p.eval(`room.stats()`, &s)
		var names []string
		for _, m := range s.Members {
			names = append(names, m.User)
		}
		if strings.Join(names, ",") != "ann,ben,cat" {
			p.fail("participants %v", names)
		}
		var others []float64
		for j, f := range tones {
			if j != i {
				others = append(others, f)
			}
		}
		// The mix: the other two tones, not our own.
		p.hearsUntil(`room.mcu.remote`, others, []float64{tones[i]}, "mcu mix")
		p.wait(`Number(document.getElementById("room-level").value) > 0.05`, "room level meter moving")
	}
	// Talking indicators: a steady tone is talking.
	ann := pages[0]
	ann.wait(`[...document.querySelectorAll("#members li")].filter((li) => li.classList.contains("talking")).length >= 2`, "talking indicators on")
	if err := ann.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "room.png")); err != nil {
		t.Fatal(err)
	}

	// Ben mutes: ann hears cat only, and ben's indicator goes off.
	pages[1].click("#mute")
	pages[1].wait(`room.muted && document.getElementById("mute").textContent === "Unmute"`, "muted")
	ann.hearsUntil(`room.mcu.remote`, []float64{1200}, []float64{800, 500}, "ben muted")
	ann.wait(`!document.querySelector('#members li[data-user="ben"]').classList.contains("talking")`, "ben's talking indicator off")
	pages[1].click("#mute")
	ann.hearsUntil(`room.mcu.remote`, []float64{800, 1200}, []float64{500}, "ben unmuted")

	// Cat leaves: the others' lists and grids drop her.
	pages[2].click("#leave")
	pages[2].wait(`room.mcu === null && document.querySelectorAll("#members li").length === 0`, "cat left")
	for _, p := range pages[:2] {
		p.wait(`document.querySelectorAll("#members li").length === 2 && !document.querySelector('#members li[data-user="cat"]')`, "cat gone from the list")
		p.wait(`room.stats().then((s) => s.tiles.length === 1 && document.querySelectorAll("#grid figure:not([hidden])").length === 2)`, "cat's tile gone")
	}
	ann.hearsUntil(`room.mcu.remote`, []float64{800}, []float64{1200, 500}, "after cat left")
	for _, p := range pages {
		if s := p.text("room-error"); s != "" {
			p.fail("error shown: %s", s)
		}
	}
}

// The agent console answers a SIP phone (baresip, G.711, 600 Hz, digest-authenticated as
// carol) calling the agent: the call rings in the page with the caller's name, the agent
// answers; each side hears the other's tone (the page's 1000 Hz test tone in the phone's
// recording); hold silences the agent toward the phone (the newest audio the phone recorded
// loses the tone) and mutes the caller in the page, resume brings both back; keypad digits
// reach the phone as DTMF; the agent transfers the caller to a second agent's page (which
// rings, answers, and talks with the phone: tones checked both ways) and the second agent hangs
// up (the phone sees the BYE). A second call the agent rejects. The histories list them.
func TestAgentPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium and baresip")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	phone := peers.StartBaresip(t, peers.BaresipOptions{User: "carol", ToneHz: 600, Codec: "pcmu", AccountParams: ";auth_pass=carol-secret", ToneSeconds: 120})
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte("sip:\n  users: [{user: carol, password: carol-secret}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startBinary(t, "NKB_CONFIG="+conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+19))
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	ag := openPage(ctx, t, b, d, "agent.html", "agent", `window.agent !== undefined`)
	ag.loginAs("agent7", "any", 1000)

	// phoneHears checks the newest 400 ms the phone recorded: the tone hz, or silence (0).
	phoneHears := func(hz float64, what string) {
		t.Helper()
		var last string
		peers.WaitFor(t, 15*time.Second, what, func() bool {
			s, rate, err := phone.Heard()
			if err != nil || len(s) < rate {
				last = fmt.Sprint(err)
				return false
			}
			w := s[len(s)-rate*4/10:]
			f, ratio := audiotest.Dominant(w, float64(rate), 1000, 600, 1200)
			last = fmt.Sprintf("dominant %v ratio %.1f rms %.0f", f, ratio, audiotest.RMS(w))
			if hz > 0 {
				return f == hz && ratio > 10
			}
			return audiotest.RMS(w) < 100
		})
		t.Logf("%s: %s", what, last)
	}

	if err := phone.Dial(ctx, fmt.Sprintf("sip:agent7@127.0.0.1:%d", sipPort)); err != nil {
		t.Fatal(err)
	}
	ag.wait(`document.querySelectorAll("#ringing li").length === 1 && document.getElementById("ringing-count").textContent === "1"`, "the call rings")
	if w := ag.text("ringing"); !strings.Contains(w, "carol") {
		ag.fail("ringing shows %q, want carol", w)
	}
	ag.click("#ringing li .answer")
	ag.wait(`document.getElementById("call-status").textContent === "in call"`, "answered")
	if _, _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	ag.hearsUntil(`agent.call.remote`, []float64{600}, []float64{1000}, "agent hears the phone")
	ag.wait(`Number(document.getElementById("call-level").value) > 0.05`, "caller meter moving")
	phoneHears(1000, "phone hears the agent")

	// Hold: the phone hears silence, the page stops playing the caller.
	ag.click("#hold")
	ag.wait(`agent.call.held && document.getElementById("call-audio").muted && document.getElementById("call-status").textContent === "on hold"`, "on hold")
	phoneHears(0, "phone hears silence on hold")
	ag.click("#hold")
	ag.wait(`!agent.call.held && !document.getElementById("call-audio").muted`, "resumed")
	phoneHears(1000, "phone hears the agent again")

	// DTMF from the keypad reaches the phone.
	n := len(phone.Events())
	for _, k := range []string{"4", "2", "#"} {
		ag.click(fmt.Sprintf(`#keypad button[data-digit=%q]`, k))
	}
	ag.wait(`agent.dtmf === "42#"`, "digits played out")
	var got []string
	for len(got) < 3 {
		ev, next, err := phone.WaitEvent(ctx, "CALL_DTMF_START", n)
		if err != nil {
			t.Fatalf("phone got DTMF %v: %v", got, err)
		}
		got, n = append(got, ev.Param), next+1
	}
	if strings.Join(got, "") != "42#" {
		t.Fatalf("phone got DTMF %v, want 4 2 #", got)
	}
	if err := ag.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "agent-in-call.png")); err != nil {
		t.Fatal(err)
	}

	// Transfer to another agent (a second page, 1200 Hz): it rings there, is answered; the
	// phone now hears the second agent, who hears the phone; the first agent's call ends as
	// transferred. The second agent hangs up: the phone sees the BYE.
	ag2 := openPage(ctx, t, b, d, "agent.html", "agent8", `window.agent !== undefined`)
	ag2.loginAs("agent8", "any", 1200)
	ag.set("transfer-to", "agent8")
	ag.click("#transfer")
	ag2.wait(`document.querySelectorAll("#ringing li").length === 1`, "the transfer rings the second agent")
	ag2.click("#ringing li .answer")
	ag2.wait(`document.getElementById("call-status").textContent === "in call"`, "second agent answered")
	ag.wait(`agent.call === null && agent.history.length === 1 && agent.history[0].outcome === "transferred" && agent.history[0].talked > 0`, "history: transferred")
	ag2.hearsUntil(`agent.call.remote`, []float64{600}, []float64{1000, 1200}, "second agent hears the phone")
	phoneHears(1200, "phone hears the second agent")
	ag2.click("#hangup")
	if _, _, err := phone.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	}
	ag2.wait(`agent.call === null && agent.history.length === 1 && agent.history[0].outcome === "answered"`, "second agent's history")

	// A second call, rejected by the agent.
	n = len(phone.Events())
	if err := phone.Dial(ctx, fmt.Sprintf("sip:agent7@127.0.0.1:%d", sipPort)); err != nil {
		t.Fatal(err)
	}
	ag.wait(`document.querySelectorAll("#ringing li").length === 1`, "second call rings")
	ag.click("#ringing li .reject")
	if _, _, err := phone.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	ag.wait(`agent.history.length === 2 && agent.history[1].outcome === "rejected" && document.querySelectorAll("#history tr").length === 2`, "history: rejected")
	if s := ag.text("call-error"); s != "" {
		ag.fail("error shown: %s", s)
	}
}

// The operator view, for an admin (users with password hashes; root is admin): a SIP phone
// (baresip, dave) registering appears in the page's registrations and disappears when it
// un-registers; alice's echo test (the demo page, same Chromium) appears as a session of
// hers and disappears when she stops it; her call to dave (ringing his phone) appears with
// its state and disappears when she hangs up; a room she creates appears and goes when she
// destroys it. Alice opening the operator view gets the server's refusal naming the setting.
func TestOperatorPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium and baresip")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hash, err := auth.HashPassword("root-pw", 1000)
	if err != nil {
		t.Fatal(err)
	}
	ahash, err := auth.HashPassword("alice-pw", 1000)
	if err != nil {
		t.Fatal(err)
	}
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	cfg := fmt.Sprintf("users:\n  - {user: root, password_hash: %q, admin: true}\n  - {user: alice, password_hash: %q}\n"+
		"sip:\n  users: [{user: dave, password: dave-secret}]\n", hash, ahash)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startBinary(t, "NKB_CONFIG="+conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+19))
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	op := openPage(ctx, t, b, d, "operator.html", "operator", `window.op !== undefined`)
	op.loginAs("root", "root-pw", 0)
	op.wait(`op.ready && document.getElementById("live").textContent === "live"`, "operator view live")
	rowWith := func(table, text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#%s tr")].some((tr) => tr.textContent.includes(%q))`, table, text)
	}

	// A phone registers, then un-registers.
	phone := peers.StartBaresip(t, peers.BaresipOptions{User: "dave", AnswerMode: "manual",
		Account: fmt.Sprintf("<sip:dave@127.0.0.1:%d>;auth_pass=dave-secret;regint=300;answermode=manual;audio_codecs=pcmu", sipPort)})
	op.wait(rowWith("registrations", "dave")+` && document.getElementById("registrations-count").textContent === "1"`, "registration shown")

	// Alice's echo test: a session of hers appears, then goes.
	al := openPage(ctx, t, b, d, "", "alice", `window.demo !== undefined`)
	al.set("user", "alice")
	al.set("password", "alice-pw")
	al.click("#login")
	al.wait(`document.getElementById("conn-status").textContent === "logged in as alice"`, "alice logged in")
	al.click("#echo-start")
	al.wait(`document.getElementById("echo-status").textContent.startsWith("running")`, "echo running")
	var sid string
	al.eval(`demo.echo.sessionId`, &sid)
	op.wait(fmt.Sprintf(`document.querySelector('#sessions tr[data-id=%q]') && document.querySelector('#sessions tr[data-id=%q]').textContent.includes("echo") && document.querySelector('#sessions tr[data-id=%q]').textContent.includes("alice")`, sid, sid, sid), "echo session shown")
	al.click("#echo-stop")
	op.wait(fmt.Sprintf(`!document.querySelector('#sessions tr[data-id=%q]')`, sid), "echo session gone")

	// Alice calls dave: his phone rings, the call shows ringing; she hangs up.
	n := len(phone.Events())
	al.set("call-type", "user")
	al.set("callee", "dave")
	al.click("#call")
	if _, _, err := phone.WaitEvent(ctx, "CALL_INCOMING", n); err != nil {
		t.Fatal(err)
	}
	var callID string
	al.wait(`demo.call && demo.call.callId`, "call id")
	al.eval(`demo.call.callId`, &callID)
	op.wait(fmt.Sprintf(`document.querySelector('#calls tr[data-id=%q]') && document.querySelector('#calls tr[data-id=%q]').textContent.includes("dave") && document.querySelector('#calls tr[data-id=%q]').textContent.includes("ringing")`, callID, callID, callID), "ringing call shown")
	if err := op.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "operator.png")); err != nil {
		t.Fatal(err)
	}
	al.click("#hangup")
	op.wait(fmt.Sprintf(`!document.querySelector('#calls tr[data-id=%q]') && document.getElementById("calls-count").textContent === "0"`, callID), "call gone")
	if _, _, err := phone.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}

	// A room comes and goes.
	al.eval(`demo.client.request("media", "room", "create", {class: "mcu", room_id: "ops-check"})`, nil)
	op.wait(rowWith("rooms", "ops-check"), "room shown")
	al.eval(`demo.client.request("media", "room", "destroy", {room_id: "ops-check"})`, nil)
	op.wait(`!(`+rowWith("rooms", "ops-check")+`)`, "room gone")

	// The phone un-registers.
	if _, err := phone.Command(ctx, "uadel", fmt.Sprintf("sip:dave@127.0.0.1:%d", sipPort)); err != nil {
		t.Fatal(err)
	}
	op.wait(`!(`+rowWith("registrations", "dave")+`) && document.getElementById("registrations-count").textContent === "0"`, "registration gone")
	op.wait(`document.getElementById("sessions-count").textContent === "0"`, "no session left")

	// Alice is no admin: the view shows the server's refusal naming the setting.
	al2 := openPage(ctx, t, b, d, "operator.html", "alice-operator", `window.op !== undefined`)
	al2.loginAs("alice", "alice-pw", 0)
	al2.wait(`!document.getElementById("op-error").hidden`, "refusal shown")
	if s := al2.text("op-error"); !strings.Contains(s, "for admins") || !strings.Contains(s, "users[].admin") || !strings.Contains(s, "1045") {
		al2.fail("refusal %q", s)
	}
	if op.text("op-error") != "" {
		op.fail("admin view shows an error: %s", op.text("op-error"))
	}
}

// Friendly failures, as a newcomer meets them with the defaults, shown in the pages: calling a
// SIP URL as a user not in sip.sip_callers, then as one who is but to a host not in
// sip.outbound_domains (the demo page shows the server's text naming each setting, without a
// misleading generic hint); the demo page pointed at the API under another origin (the login
// error names api.allowed_origins); a page of another origin opening the Verto WebSocket
// (the close reason the browser gets names verto.allowed_origins). Then every page on a phone
// screen (checkPagesFitAPhone).
func TestFriendlyFailuresBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sipPort, vertoPort := peers.FreePort(t), peers.FreePort(t)
	d := startBinary(t, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		"NKB_SIP_SIP_CALLERS=bob", fmt.Sprintf("NKB_VERTO_LISTEN=127.0.0.1:%d", vertoPort))
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})

	callSIP := func(user, wantSetting string) {
		t.Helper()
		p := openPage(ctx, t, b, d, "", user, `window.demo !== undefined`)
		defer p.p.Close(ctx)
		p.set("user", user)
		p.click("#login")
		p.wait(`document.getElementById("conn-status").textContent === "logged in as `+user+`"`, "logged in")
		p.set("call-type", "sip")
		p.set("callee", "sip:carol@127.0.0.1:5999")
		p.click("#call")
		p.wait(`!document.getElementById("call-error").hidden && demo.call === null`, "call error shown")
		if s := p.text("call-error"); !strings.Contains(s, wantSetting) || strings.Contains(s, "wrong user or password") {
			p.fail("call error %q, want the text naming %s", s, wantSetting)
		}
	}
	callSIP("alice", "sip.sip_callers")
	callSIP("bob", "sip.outbound_domains")

	// The API under another origin (the page is http://127.0.0.1:P, the API ws://localhost:P).
	p := openPage(ctx, t, b, d, "", "cross-origin", `window.demo !== undefined`)
	_, port, _ := strings.Cut(d.addr, ":")
	p.set("server", "ws://localhost:"+port+"/api")
	p.set("user", "alice")
	p.click("#login")
	p.wait(`!document.getElementById("login-error").hidden`, "login error shown")
	if s := p.text("login-error"); !strings.Contains(s, "api.allowed_origins") || !strings.Contains(s, "http://127.0.0.1:"+port) {
		p.fail("login error %q, want the origin and api.allowed_origins", s)
	}
	// A page of another origin opening the Verto WebSocket (as a Verto client library does,
	// with its subprotocol) learns which setting lets it in.
	var reason struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	p.eval(fmt.Sprintf(`new Promise((resolve) => {
		const ws = new WebSocket("ws://127.0.0.1:%d/", ["verto"]);
		ws.onclose = (e) => resolve({code: e.code, reason: e.reason});
	})`, vertoPort), &reason)
	if reason.Code != 1008 || !strings.Contains(reason.Reason, "verto.allowed_origins") {
		t.Fatalf("verto from another origin: %+v, want 1008 naming verto.allowed_origins", reason)
	}
	checkPagesFitAPhone(ctx, t, b, d)
}

// A carrier's call reaches the agent console: SIPp (a trunk by network, sip.trunks) dials the
// DID 5550100, mapped to agent7 (sip.trunks[].destinations); the page rings, the agent
// answers and hears the carrier's 700 Hz; the carrier hangs up (BYE) and the page's history
// shows the answered call ended by the SIP side (2110).
func TestAgentPageTrunkCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium and SIPp")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	conf := filepath.Join(t.TempDir(), "nkbridge.yaml")
	if err := os.WriteFile(conf, []byte("sip:\n  trunks: [{name: carrier, networks: [\"127.0.0.1/32\"], destinations: {\"5550100\": agent7}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startBinary(t, "NKB_CONFIG="+conf, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+19))
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	ag := openPage(ctx, t, b, d, "agent.html", "agent", `window.agent !== undefined`)
	ag.loginAs("agent7", "any", 1000)
	carrier := peers.StartSIPp(t, peers.SIPpOptions{Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"),
		Remote: fmt.Sprintf("127.0.0.1:%d", sipPort), Service: "5550100", Calls: 1,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 700, 5) + ",-1,0"},
		Args: []string{"-d", "12000"}, Timeout: 90 * time.Second})
	ag.wait(`document.querySelectorAll("#ringing li").length === 1`, "the carrier's call rings")
	ag.click("#ringing li .answer")
	ag.wait(`document.getElementById("call-status").textContent === "in call"`, "answered")
	ag.hearsUntil(`agent.call.remote`, []float64{700}, []float64{1000}, "agent hears the carrier")
	ag.wait(`agent.call === null && agent.history.length === 1 && agent.history[0].outcome === "answered" && agent.history[0].end.startsWith("2110")`, "the carrier's BYE ends the call")
	r, err := carrier.Wait(ctx)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp: %v %+v", err, r)
	}
}

// checkPagesFitAPhone: every demo page fits a phone screen (390×844 CSS pixels): nothing wider than the viewport
// (no sideways scrolling), the main controls on screen and at least 32 pixels tall
// (tappable). Screenshots in test-artifacts.
func checkPagesFitAPhone(ctx context.Context, t *testing.T, b *browsertest.Browser, d *daemon) {
	t.Helper()
	for _, pg := range []struct{ path, controls string }{
		{"", "#login, #echo-start, #call, #keypad button"},
		{"room.html", "#login, #join, #leave, #mute"},
		{"agent.html", "#login, #hold, #hangup, #transfer, #keypad button"},
		{"operator.html", "#login, #logout"},
	} {
		p := b.NewPage(ctx, "http://"+d.addr+"/demo/"+pg.path)
		if err := p.SetViewport(ctx, 390, 844); err != nil {
			t.Fatal(err)
		}
		var r struct {
			Overflow int      `json:"overflow"`
			Wide     []string `json:"wide"`
			Bad      []string `json:"bad"`
		}
		if err := p.EvalArg(ctx, `(sel) => {
			const vw = document.documentElement.clientWidth;
			const wide = [...document.querySelectorAll("body *")].filter((el) => el.getBoundingClientRect().right > vw + 1)
				.map((el) => el.tagName + (el.id ? "#" + el.id : ""));
			const bad = [...document.querySelectorAll(sel)].filter((el) => {
				const b = el.getBoundingClientRect();
				return b.height < 32 || b.left < 0 || b.right > vw;
			}).map((el) => (el.id || el.textContent) + " " + JSON.stringify(el.getBoundingClientRect()));
			return {overflow: document.documentElement.scrollWidth - vw, wide: wide.slice(0, 5), bad};
		}`, pg.controls, &r); err != nil {
			t.Fatal(err)
		}
		if r.Overflow > 0 || len(r.Bad) > 0 {
			t.Errorf("/demo/%s on a phone: %d px too wide %v; controls off screen or too small: %v", pg.path, r.Overflow, r.Wide, r.Bad)
		}
		name := strings.TrimSuffix(pg.path, ".html")
		if name == "" {
			name = "index"
		}
		if err := p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "phone-"+name+".png")); err != nil {
			t.Fatal(err)
		}
		_ = p.Close(ctx)
	}
}
