package vertogw

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// These tests run the real @signalwire/js 1.5.0 Verto client (and, for the other party, a
// page using the control API) in Chromium with fake microphones playing distinct tones, against
// the core, the embedded media engine, the control API and the Verto server with this gateway.

const (
	vertoTone = 880.0 // the Verto page's microphone
	apiTone   = 600.0 // the API page's microphone
)

// swConnect makes a Verto client, logs in and records call updates in window.states.
const swConnect = `async ({url, login, passwd}) => {
  window.states = [];
  const client = new Verto({ host: url, login, passwd });
  window.client = client;
  client.on("signalwire.notification", (n) => {
    if (n.type === "callUpdate") { window.call = n.call; window.states.push(n.call.state); }
  });
  await new Promise((resolve, reject) => {
    client.on("signalwire.ready", resolve);
    client.on("signalwire.error", (e) => reject(new Error("verto error: " + JSON.stringify(e))));
    client.connect();
  });
  await client.setAudioSettings({ echoCancellation: false, noiseSuppression: false, autoGainControl: false });
  return localStorage.getItem("@signalwire:sessId") || "";
}`

// rawMic are microphone constraints without Chromium's processing: its noise suppression and
// gain control take a steady test tone down by about 19 dB within two seconds.
const rawMic = `{ echoCancellation: false, noiseSuppression: false, autoGainControl: false }`

// swRawMic gives the Verto call's audio sender a microphone track without processing and
// returns the track's settings before. The SW client (@signalwire/js 1.5.0) ignores its audio
// settings for every call it answers, re-attached ones included (BaseCall's
// _getSharedConstraints turns the constraints object into true), so such calls run with
// Chromium's default processing; an application that wants its own settings must swap the
// track like this once the call is active.
const swRawMic = `async () => {
  const sender = window.call.peer.instance.getSenders().find((s) => s.track && s.track.kind === "audio");
  const before = sender.track.getSettings();
  const mic = await navigator.mediaDevices.getUserMedia({ audio: ` + rawMic + ` });
  const old = sender.track;
  await sender.replaceTrack(mic.getAudioTracks()[0]);
  old.stop();
  return { noiseSuppression: before.noiseSuppression, autoGainControl: before.autoGainControl };
}`

// rawMic makes the Verto call's microphone unprocessed (swRawMic) and says whether it was.
func (p *party) rawMic() (wasProcessed bool) {
	p.t.Helper()
	var st struct {
		NoiseSuppression bool `json:"noiseSuppression"`
		AutoGainControl  bool `json:"autoGainControl"`
	}
	if err := p.page.EvalArg(p.ctx, swRawMic, nil, &st); err != nil {
		p.fatal("raw mic: %v", err)
	}
	return st.NoiseSuppression || st.AutoGainControl
}

// swMeasure measures what the Verto call plays (FFT in the page): the client's own remote
// stream, which must carry audio (issue 14.1: without it the client plays nothing).
const swMeasure = `async (tone) => {
  const s = window.call.options.remoteStream;
  if (!s || s.getAudioTracks().length === 0) throw new Error("the Verto client has no remote stream with audio");
  if (window.playingCall !== window.call) { window.playing = nkb.playRemote(s); window.playingCall = window.call; }
  return await nkb.measureAudio(s, { ms: 1500, freqs: [tone] });
}`

// apiConnect logs a control-API client in; with answer it accepts every call invite with a
// WebRTC answer from its microphone.
const apiConnect = `async ({url, user, pass, answer}) => {
  window.invites = [];
  window.answerInvites = answer;
  window.mic = await nkb.getUserMedia();
  const newPC = () => {
    const pc = nkb.newPC();
    window.pc = pc;
    window.mic.getTracks().forEach((t) => pc.addTrack(t, window.mic));
    window.remote = new Promise((res) => (pc.ontrack = (e) => res(e.streams[0] || new MediaStream([e.track]))));
    return pc;
  };
  window.acceptInvite = async (inv) => {
    const pc = newPC();
    await pc.setRemoteDescription({ type: "offer", sdp: inv.offer.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    const d = await nkb.localSDP(pc);
    await window.api.send("media", "call", "answered", { call_id: inv.call_id, answer: { sdp: d.sdp } });
    window.answeredCall = inv.call_id;
  };
  window.startCall = async (data) => {
    const pc = newPC();
    await pc.setLocalDescription(await pc.createOffer());
    const d = await nkb.localSDP(pc);
    const s = await window.api.send("media", "session", "start", { type: "proxy", offer: { sdp: d.sdp } });
    const c = await window.api.send("media", "call", "start", { ...data, session_id: s.session_id });
    window.outCall = c.call_id;
    window.api.waitEvent((ev) => ev.subclass === "session" && ev.type === "answer" && ev.obj_id === s.session_id, 30000)
      .then((ev) => pc.setRemoteDescription({ type: "answer", sdp: ev.body.answer.sdp }))
      .then(() => (window.outAnswered = true))
      .catch((e) => console.error("outgoing call: " + e));
    return c.call_id;
  };
  window.api = new nkb.ApiClient(url, {
    onRequest: (msg) => {
      if (msg.class === "media" && msg.subclass === "call" && msg.cmd === "invite") {
        window.invites.push(msg.data);
        if (window.answerInvites) setTimeout(() => window.acceptInvite(msg.data).catch((e) => console.error("accept: " + e)), 300);
      }
    },
  });
  await window.api.open();
  await window.api.login(user, pass);
  return true;
}`

const apiMeasure = `async (tone) => {
  const s = await window.remote;
  if (window.playingStream !== s) { window.playing = nkb.playRemote(s); window.playingStream = s; }
  return await nkb.measureAudio(s, { ms: 1500, freqs: [tone] });
}`

type audio struct {
	DominantHz float64            `json:"dominantHz"`
	DominantDb float64            `json:"dominantDb"`
	Levels     map[string]float64 `json:"levels"`
}

func (a audio) level(hz float64) float64 {
	if v, ok := a.Levels[fmt.Sprint(hz)]; ok {
		return v
	}
	for k, v := range a.Levels {
		var f float64
		if _, err := fmt.Sscan(k, &f); err == nil && math.Abs(f-hz) < 1 {
			return v
		}
	}
	return math.Inf(-1)
}

// party is one browser page.
type party struct {
	e    *env
	t    *testing.T
	br   *browsertest.Browser
	page *browsertest.Page
	ctx  context.Context
}

func (e *env) withAssets() {
	e.mux.Handle("/assets/", http.StripPrefix("/assets", browsertest.Assets(e.t)))
}

func (e *env) browser(tone float64, path string) *party {
	e.t.Helper()
	br := browsertest.Launch(e.t, browsertest.Options{ToneHz: tone})
	ctx := testCtx(e.t, 150*time.Second)
	return &party{e: e, t: e.t, br: br, page: br.NewPage(ctx, e.ts.URL+path), ctx: ctx}
}

func (p *party) fatal(format string, args ...any) {
	p.t.Helper()
	p.t.Fatalf("%s\nconsole:\n%s", fmt.Sprintf(format, args...), strings.Join(p.page.Console(), "\n"))
}

func (p *party) eval(js string, out any) {
	p.t.Helper()
	if err := p.page.Eval(p.ctx, js, out); err != nil {
		p.fatal("eval %s: %v", js, err)
	}
}

func (p *party) waitFor(js string, d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	if err := p.page.WaitFor(ctx, js, nil); err != nil {
		var states any
		_ = p.page.Eval(p.ctx, `window.states || null`, &states)
		p.fatal("waiting for %s (verto states %v): %v", js, states, err)
	}
}

func (p *party) vertoLogin(user string) string {
	p.t.Helper()
	var sessid string
	if err := p.page.EvalArg(p.ctx, swConnect, map[string]string{"url": p.e.vertoURL(), "login": user + "@nkbridge", "passwd": testPassword}, &sessid); err != nil {
		p.fatal("verto login: %v", err)
	}
	return sessid
}

func (p *party) apiLogin(user string, answer bool) {
	p.t.Helper()
	if err := p.page.EvalArg(p.ctx, apiConnect, map[string]any{"url": p.e.apiURL(), "user": user, "pass": testPassword, "answer": answer}, nil); err != nil {
		p.fatal("api login: %v", err)
	}
}

func (p *party) vertoCall(dest string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(window.client.newCall({ destinationNumber: %q, audio: `+rawMic+`, video: false }), true)`, dest), nil)
}

func (p *party) waitState(state string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf(`window.call && window.call.state === %q`, state), 20*time.Second)
}

func (p *party) waitEnded() {
	p.t.Helper()
	p.waitFor(`window.call && (window.call.state === "hangup" || window.call.state === "destroy")`, 15*time.Second)
}

// hears checks the page hears tone (the dominant frequency) through the Verto call or the API
// call; it returns the measurement.
func (p *party) measure(js string, tone float64) audio {
	p.t.Helper()
	var a audio
	if err := p.page.EvalArg(p.ctx, js, tone, &a); err != nil {
		p.fatal("measure: %v", err)
	}
	return a
}

func (p *party) hears(js string, tone float64) {
	p.t.Helper()
	a := p.measure(js, tone)
	p.t.Logf("heard: dominant %.0f Hz at %.1f dB, %v Hz at %.1f dB", a.DominantHz, a.DominantDb, tone, a.level(tone))
	if math.Abs(a.DominantHz-tone) > 30 || a.DominantDb < -70 {
		p.fatal("did not hear the %v Hz tone: %+v", tone, a)
	}
}

// levelKept fails unless a tone heard after a re-attach is within 4 dB of its level before
// (dBFS): the re-attached leg must carry the audio as the old one did (issue 14.8: a page
// whose re-attached call ran the SW client's processed microphone was heard ~19 dB quieter).
func levelKept(t *testing.T, what string, before, after float64) {
	t.Helper()
	t.Logf("%s: %.1f dBFS before the reload, %.1f dBFS after", what, before, after)
	if math.Abs(after-before) > 4 {
		t.Fatalf("%s: %.1f dBFS after the reload, %.1f dBFS before", what, after, before)
	}
}

func TestBrowserVertoEcho(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	sessid := v.vertoLogin("alice")
	if got := e.srv.Sessions("alice"); len(got) != 1 || got[0] != sessid {
		t.Fatalf("sessions %v, SW stored %q", got, sessid)
	}
	v.vertoCall("echo")
	v.waitState("active")
	v.hears(swMeasure, vertoTone)
	if s, _ := e.core.Counts(); s != 1 || e.emb.Sessions() != 1 {
		t.Fatalf("want one echo session on the media engine, have %d (engine %d)", s, e.emb.Sessions())
	}
	v.eval(`window.call.hangup(), true`, nil)
	e.idle()

	// Page reload: the echo call is re-attached (verto.attach with a new server offer) and
	// the new page hears its tone again.
	v.vertoCall("echo")
	v.waitState("active")
	var callID string
	v.eval(`window.call.id`, &callID)
	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	if again := v.vertoLogin("alice"); again != sessid {
		t.Fatalf("SW came back with sessid %q, want %q", again, sessid)
	}
	v.waitState("active")
	var again string
	v.eval(`window.call.id`, &again)
	if again != callID {
		t.Fatalf("re-attached call %q, want %q", again, callID)
	}
	v.hears(swMeasure, vertoTone)
	if s, _ := e.core.Counts(); s != 1 || e.emb.Sessions() != 1 {
		t.Fatalf("after re-attach: %d sessions (engine %d), want 1", s, e.emb.Sessions())
	}
	v.eval(`window.call.hangup(), true`, nil)
	e.idle()

	// An extension with no backend (park) is refused at once with a clear cause; a user who
	// is not logged in ends with USER_NOT_REGISTERED.
	v.vertoCall("park")
	v.waitEnded()
	v.vertoCall("nobody")
	v.waitEnded()
	e.idle()
}

// TestBrowserVertoCallsAPIUser: a Verto client calls a user logged in on the control API;
// both hear each other's tone through the media engine (WebRTC⇄WebRTC), hold mutes the
// Verto side's audio, the call survives a reload of the Verto page, and each side can hang up.
func TestBrowserVertoCallsAPIUser(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	a := e.browser(apiTone, "/apipage")
	v.vertoLogin("alice")
	a.apiLogin("bob", true)

	v.vertoCall("bob")
	v.waitState("active")
	a.waitFor(`window.answeredCall`, 10*time.Second)
	v.hears(swMeasure, apiTone)
	a.hears(apiMeasure, vertoTone)
	if e.emb.Sessions() != 1 { // the Verto client's proxy session, WebRTC both sides
		t.Fatalf("want one proxy session, engine has %d", e.emb.Sessions())
	}
	var inv struct {
		CallerName string `json:"caller_name"`
		CallerID   string `json:"caller_id"`
		User       string `json:"user"`
	}
	a.eval(`window.invites[0]`, &inv)
	if inv.CallerID != "alice" || inv.CallerName == "" {
		t.Fatalf("API invite shows caller %+v, want alice's id", inv)
	}

	// Hold: the API side stops hearing the Verto tone; unhold brings it back.
	active := v.measure(swMeasure, apiTone).level(apiTone)
	v.eval(`window.call.hold().then(() => true)`, nil)
	v.waitState("held")
	time.Sleep(time.Second) // let what was in flight play out
	held := a.measure(apiMeasure, vertoTone)
	t.Logf("the API side hears %v Hz at %.1f dB, %.1f dB while held", vertoTone, active, held.level(vertoTone))
	if held.level(vertoTone) > active-25 {
		t.Fatalf("the Verto tone still reaches the far side while held: %+v", held)
	}
	v.eval(`window.call.unhold().then(() => true)`, nil)
	v.waitState("active")
	time.Sleep(300 * time.Millisecond) // what was in flight plays out before the level is measured
	a.hears(apiMeasure, vertoTone)
	vBefore, aBefore := v.measure(swMeasure, apiTone).level(apiTone), a.measure(apiMeasure, vertoTone).level(vertoTone)

	// The Verto page reloads: the call is re-attached in place and both tones cross again, as
	// loud as before.
	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	v.vertoLogin("alice")
	v.waitState("active")
	t.Logf("the re-attached call's microphone was processed by Chromium: %v", v.rawMic())
	v.hears(swMeasure, apiTone)
	a.hears(apiMeasure, vertoTone)
	levelKept(t, "the Verto page hears the API side", vBefore, v.measure(swMeasure, apiTone).level(apiTone))
	levelKept(t, "the API side hears the Verto page", aBefore, a.measure(apiMeasure, vertoTone).level(vertoTone))
	if n := e.emb.Sessions(); n != 1 {
		t.Fatalf("after re-attach the engine has %d sessions, want 1", n)
	}

	// Hangup from the Verto side: the API side gets the call's hangup (2130 verto_bye).
	v.eval(`window.call.hangup(), true`, nil)
	a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.body.code === 2130)`, 10*time.Second)
	e.idle()

	// A second call, hung up from the API side: the Verto client gets verto.bye.
	a.eval(`(window.answeredCall = null, true)`, nil)
	v.vertoCall("bob")
	v.waitState("active")
	a.waitFor(`window.answeredCall`, 10*time.Second)
	a.eval(`window.api.send("media", "call", "hangup", { call_id: window.answeredCall }).then(() => true)`, nil)
	v.waitEnded()
	e.idle()
}

// TestBrowserVertoIsCalled: the control API calls a Verto login, by call type "verto" and by
// call type "user" (where the API connections of the user would ring too); the SW client
// rings with the caller id, answers, audio flows both ways, and each side hangs up once.
func TestBrowserVertoIsCalled(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	a := e.browser(apiTone, "/apipage")
	v.vertoLogin("alice")
	a.apiLogin("bob", false)

	for i, data := range []map[string]any{
		{"type": "verto", "user_id": "alice", "caller_name": "Bob B", "caller_id": "2000"},
		{"type": "user", "callee": "alice", "caller_name": "Bob B", "caller_id": "2000"},
	} {
		t.Logf("call %d: %v", i, data)
		var callID string
		if err := a.page.EvalArg(a.ctx, `(d) => window.startCall(d)`, data, &callID); err != nil {
			a.fatal("call start: %v", err)
		}
		v.waitState("ringing")
		var who struct {
			Name   string `json:"name"`
			Number string `json:"number"`
		}
		v.eval(`({ name: window.call.options.remoteCallerName, number: window.call.options.remoteCallerNumber })`, &who)
		if who.Name != "Bob B" || who.Number != "2000" {
			t.Fatalf("SW shows caller %+v", who)
		}
		v.eval(`window.call.answer(), true`, nil)
		v.waitState("active")
		a.waitFor(`window.outAnswered === true`, 10*time.Second)
		v.hears(swMeasure, apiTone)
		a.hears(apiMeasure, vertoTone)
		if i == 0 {
			// Hold from the called Verto client: the call's media is held (the caller's audio
			// no longer reaches it); unhold resumes.
			active := v.measure(swMeasure, apiTone).level(apiTone)
			v.eval(`window.call.hold().then(() => true)`, nil)
			v.waitState("held")
			time.Sleep(time.Second) // what was in flight plays out before the level is measured
			if held := v.measure(swMeasure, apiTone); held.level(apiTone) > active-25 {
				t.Fatalf("still hearing the caller while held: %+v", held)
			}
			v.eval(`window.call.unhold().then(() => true)`, nil)
			v.waitState("active")
			time.Sleep(300 * time.Millisecond) // the audio resumes before hears measures it
			v.hears(swMeasure, apiTone)
		}
		if i == 0 {
			// The API side hangs up: the Verto client gets verto.bye.
			a.eval(`window.api.send("media", "call", "hangup", { call_id: window.outCall }).then(() => true)`, nil)
			v.waitEnded()
		} else {
			// The Verto side hangs up: the API caller's call ends with 2130 verto_bye.
			v.eval(`window.call.hangup(), true`, nil)
			a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.obj_id === window.outCall && ev.body.code === 2130)`, 10*time.Second)
		}
		a.eval(`(window.outAnswered = false, window.pc.close(), true)`, nil)
		e.idle()
	}

	// Declining: the API caller's call is rejected (2021, from the Verto side's 2131).
	var callID string
	if err := a.page.EvalArg(a.ctx, `(d) => window.startCall(d)`, map[string]any{"type": "verto", "callee": "alice"}, &callID); err != nil {
		a.fatal("call start: %v", err)
	}
	v.waitState("ringing")
	v.eval(`window.call.hangup(), true`, nil)
	a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.obj_id === window.outCall && ev.body.code === 2021)`, 10*time.Second)
	e.idle()
}

// TestBrowserVertoCallsRTPPeerDTMF: a Verto client calls "sip:…", which reaches a plain-RTP
// phone through the media engine (Opus⇄PCMU): both tones cross, the client's verto.info DTMF
// arrives at the phone as RFC 4733 telephone-events, and the call survives a page reload
// (verto.attach), even one slower than the media timeout, with audio and DTMF working again.
func TestBrowserVertoCallsRTPPeerDTMF(t *testing.T) {
	e := newEnv(t, envOpts{mediaTimeout: 2 * time.Second})
	peer := newRTPPeer(t, apiTone)
	e.core.AddResolver("sip", peer)
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	v.vertoLogin("alice")
	v.vertoCall("sip-phone@127.0.0.1")
	v.waitState("active")
	v.hears(swMeasure, apiTone)
	peers.WaitFor(t, 10*time.Second, "the RTP phone hears the Verto tone", func() bool {
		f, r, _ := peer.heard(vertoTone, apiTone, 1000)
		return f == vertoTone && r > 0.5
	})
	for _, d := range []string{"1", "5", "#"} {
		v.eval(`window.call.dtmf("`+d+`"), true`, nil)
		time.Sleep(250 * time.Millisecond) // digits keyed apart, as a person would
	}
	peers.WaitFor(t, 10*time.Second, "RFC 4733 digits at the RTP phone", func() bool { return peer.gotDigits() == "15#" })

	// The page reloads: the call survives. The new page logs in with the same sessid, gets
	// verto.attach with a new server offer, and both tones cross again; DTMF still arrives.
	var callID string
	v.eval(`window.call.id`, &callID)
	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // longer than the media timeout: the waiting call is held
	if again := v.vertoLogin("alice"); again == "" {
		t.Fatal("no sessid after reload")
	}
	v.waitState("active")
	var again string
	v.eval(`window.call.id`, &again)
	if again != callID {
		t.Fatalf("re-attached call %q, want %q", again, callID)
	}
	if codes := peer.hangupCodes(); len(codes) != 0 {
		t.Fatalf("the phone was hung up by the reload: %v", codes)
	}
	v.hears(swMeasure, apiTone)
	peer.mu.Lock()
	peer.pcm = nil
	peer.mu.Unlock()
	peers.WaitFor(t, 10*time.Second, "the RTP phone hears the Verto tone again", func() bool {
		f, r, _ := peer.heard(vertoTone, apiTone, 1000)
		return f == vertoTone && r > 0.5
	})
	v.eval(`window.call.dtmf("7"), true`, nil)
	peers.WaitFor(t, 10*time.Second, "DTMF after re-attach", func() bool { return peer.gotDigits() == "15#7" })
	v.eval(`window.call.hangup(), true`, nil)
	peers.WaitFor(t, 10*time.Second, "the phone hung up", func() bool { return len(peer.hangupCodes()) == 1 })
	if codes := peer.hangupCodes(); codes[0] != 2130 {
		t.Fatalf("phone hangup %v, want 2130", codes)
	}
	e.idle()
}

// TestBrowserVertoCallsVerto: one Verto client calls another ("verto:" prefix) through a
// WebRTC⇄WebRTC proxy session: the callee rings with the caller's id, both tones cross, and
// the callee hangs up. (verto.display of who answered is covered without media, see
// TestP2PEarlyMediaDTMFHold: the embedded proxy's answer does not carry callee_name/_id.)
func TestBrowserVertoCallsVerto(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	a := e.browser(vertoTone, "/page")
	b := e.browser(apiTone, "/page")
	a.vertoLogin("alice")
	b.vertoLogin("bob")
	a.vertoCall("verto:bob")
	b.waitState("ringing")
	var num string
	b.eval(`window.call.options.remoteCallerNumber`, &num)
	if num != "alice" {
		t.Fatalf("callee shows caller %q", num)
	}
	b.eval(`window.call.answer(), true`, nil)
	a.waitState("active")
	b.waitState("active")
	a.hears(swMeasure, apiTone)
	b.hears(swMeasure, vertoTone)
	b.eval(`window.call.hangup(), true`, nil)
	a.waitEnded()
	e.idle()
}

// TestBrowserVertoIsCalledReload: the control API calls a Verto login (call type "verto"); the
// SW client answers, both tones cross, then the Verto page reloads: it logs in again with the
// same sessid, the server re-attaches the same call (verto.attach with a new offer of the
// caller's session's far leg, re-attached in place), both tones cross again and the API caller
// never saw the call end. A call held before a reload stays held after it until the new page
// resumes it. Then the Verto side hangs up and nothing is left.
func TestBrowserVertoIsCalledReload(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	a := e.browser(apiTone, "/apipage")
	v.vertoLogin("alice")
	a.apiLogin("bob", false)

	var callID string
	if err := a.page.EvalArg(a.ctx, `(d) => window.startCall(d)`, map[string]any{"type": "verto", "user_id": "alice", "caller_id": "2000"}, &callID); err != nil {
		a.fatal("call start: %v", err)
	}
	v.waitState("ringing")
	v.eval(`window.call.answer(), true`, nil)
	v.waitState("active")
	a.waitFor(`window.outAnswered === true`, 10*time.Second)
	t.Logf("the answered call's microphone was processed by Chromium: %v", v.rawMic())
	v.hears(swMeasure, apiTone)
	a.hears(apiMeasure, vertoTone)
	vBefore, aBefore := v.measure(swMeasure, apiTone).level(apiTone), a.measure(apiMeasure, vertoTone).level(vertoTone)
	var vertoCall string
	v.eval(`window.call.id`, &vertoCall)
	if n := e.emb.Sessions(); n != 1 {
		t.Fatalf("want the caller's proxy session only, engine has %d", n)
	}

	// The Verto page reloads: the call is re-attached and both tones cross again.
	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the old page's PeerConnection and socket are gone
	if s, c := e.core.Counts(); s != 1 || c != 1 {
		t.Fatalf("while the page reloads the core has %d sessions and %d calls, want 1 and 1", s, c)
	}
	v.vertoLogin("alice")
	v.waitState("active")
	var again string
	v.eval(`window.call.id`, &again)
	if again != vertoCall {
		t.Fatalf("re-attached call %q, want %q", again, vertoCall)
	}
	t.Logf("the re-attached call's microphone was processed by Chromium: %v", v.rawMic())
	v.hears(swMeasure, apiTone)
	a.hears(apiMeasure, vertoTone)
	levelKept(t, "the Verto page hears the API caller", vBefore, v.measure(swMeasure, apiTone).level(apiTone))
	levelKept(t, "the API caller hears the Verto page", aBefore, a.measure(apiMeasure, vertoTone).level(vertoTone))
	var ended bool
	a.eval(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup")`, &ended)
	if ended {
		t.Fatal("the API caller's call ended during the reload")
	}
	if n := e.emb.Sessions(); n != 1 {
		t.Fatalf("after re-attach the engine has %d sessions, want 1", n)
	}

	// Held, then reloaded again: the re-attached call stays held (the caller no longer hears
	// the Verto tone) until the new page resumes it.
	active := v.measure(swMeasure, apiTone).level(apiTone)
	v.eval(`window.call.hold().then(() => true)`, nil)
	v.waitState("held")
	if err := v.page.Goto(v.ctx, e.ts.URL+"/page"); err != nil {
		t.Fatal(err)
	}
	v.vertoLogin("alice")
	v.waitFor(`window.call && window.call.id === `+fmt.Sprintf("%q", vertoCall)+` && window.call.peer && window.call.peer.instance && window.call.peer.instance.connectionState === "connected"`, 20*time.Second)
	time.Sleep(time.Second) // let what was in flight play out
	held := v.measure(swMeasure, apiTone)
	t.Logf("the Verto page hears %v Hz at %.1f dB active, %.1f dB held after re-attach (caller hears %.1f dB)", apiTone, active, held.level(apiTone), a.measure(apiMeasure, vertoTone).level(vertoTone))
	if held.level(apiTone) > active-25 {
		t.Fatalf("the hold was lost by the re-attach: %+v", held)
	}
	v.eval(`window.call.unhold().then(() => true)`, nil)
	peers.WaitFor(t, 10*time.Second, "unheld", func() bool {
		return v.measure(swMeasure, apiTone).level(apiTone) > active-10
	})
	a.hears(apiMeasure, vertoTone)
	v.hears(swMeasure, apiTone)

	// Hangup from the Verto side: the API caller's call ends with 2130 verto_bye.
	v.eval(`window.call.hangup(), true`, nil)
	a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.obj_id === window.outCall && ev.body.code === 2130)`, 10*time.Second)
	a.eval(`(window.pc.close(), true)`, nil)
	e.idle()
}
