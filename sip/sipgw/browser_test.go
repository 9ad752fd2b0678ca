package sipgw_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// Real peers end to end: Chromium pages (fake microphone at 1000 Hz) logged
// into the control API with nkb.ApiClient, and baresip softphones (600 Hz,
// recording what they hear) talking SIP to nkbridge. Audio is proven by its
// frequency at both ends.

const pageJS = `
window.T = {
  invites: [],
  async login(user) {
    T.api = new nkb.ApiClient("ws://" + location.host + "/", {onRequest: (m) => {
      if (m.class === "media" && m.subclass === "call" && m.cmd === "invite") {
        T.invites.push(m.data);
        if (T.autoAccept) setTimeout(() => T.accept(m.data).catch((e) => { T.acceptError = String(e); }), 0);
      }
      return null;
    }});
    await T.api.open();
    await T.api.login(user, "x");
  },
  async media(codec) {
    T.local = await nkb.getUserMedia();
    T.pc = nkb.newPC();
    T.remote = new MediaStream();
    T.pc.ontrack = (e) => T.remote.addTrack(e.track);
    for (const tr of T.local.getTracks()) T.pc.addTrack(tr, T.local);
    if (codec) {
      const cs = RTCRtpReceiver.getCapabilities("audio").codecs.filter((c) =>
        c.mimeType.toLowerCase() === "audio/" + codec.toLowerCase() || c.mimeType === "audio/telephone-event");
      T.pc.getTransceivers()[0].setCodecPreferences(cs);
    }
  },
  // call: a proxy session whose far side is plain RTP, then a call to target.
  async call(target) {
    await T.pc.setLocalDescription(await T.pc.createOffer());
    const offer = (await nkb.localSDP(T.pc)).sdp;
    const s = await T.api.send("media", "session", "start", {type: "proxy", proxy_type: "rtp", offer: {sdp: offer}});
    T.sid = s.session_id;
    const c = await T.api.send("media", "call", "start", Object.assign({session_id: s.session_id}, target));
    T.cid = c.call_id;
    const ev = await T.api.waitEvent((e) => e.subclass === "session" && e.type === "answer" && e.obj_id === T.sid);
    await T.pc.setRemoteDescription({type: "answer", sdp: ev.body.answer.sdp});
    return T.cid;
  },
  async accept(inv) {
    await T.pc.setRemoteDescription({type: "offer", sdp: inv.offer.sdp});
    await T.pc.setLocalDescription(await T.pc.createAnswer());
    const sdp = (await nkb.localSDP(T.pc)).sdp;
    await T.api.send("media", "call", "answered", {call_id: inv.call_id, answer: {sdp}});
    T.answered = inv.call_id;
    T.sdps = {offer: inv.offer.sdp, answer: sdp};
  },
  async measure(ms) {
    await nkb.waitFor(() => T.pc.connectionState === "connected", 15000, 50, "connected");
    if (!T.playing) { nkb.playRemote(T.remote); T.playing = true; await nkb.sleep(500); }
    const audio = await nkb.measureAudio(T.remote, {ms: ms || 1500, freqs: [1000, 600]});
    const stats = await nkb.audioStats(T.pc);
    return {audio, stats};
  },
};
`

const testPage = `<!doctype html><html><head><meta charset="utf-8"><title>nkb sip</title>
<script>` + pageJS + `</script></head><body></body></html>`

type heard = browsertest.Heard

func evalArg(ctx context.Context, t *testing.T, p *browsertest.Page, js string, arg, out any) {
	t.Helper()
	if err := p.EvalArg(ctx, js, arg, out); err != nil {
		t.Fatalf("%s: %v; console:\n%s", js, err, strings.Join(p.Console(), "\n"))
	}
}

// browserHears checks that the page hears want (and not other).
func browserHears(ctx context.Context, t *testing.T, p *browsertest.Page, want, other float64) {
	t.Helper()
	var r heard
	evalArg(ctx, t, p, `() => T.measure()`, nil, &r)
	t.Logf("browser hears %.1f Hz, rms %.1f dBFS, levels %v, %d packets in, %d out, codec %s", r.Audio.DominantHz, r.Audio.RmsDb, r.Audio.Levels, r.Stats.PacketsReceived, r.Stats.PacketsSent, r.Stats.Codec)
	if math.Abs(r.Audio.DominantHz-want) > 2*r.Audio.BinHz {
		t.Errorf("browser hears %.1f Hz, want %v Hz", r.Audio.DominantHz, want)
	}
	if d := r.Audio.Levels[fmt.Sprint(want)] - r.Audio.Levels[fmt.Sprint(other)]; d < 20 {
		t.Errorf("browser: %v Hz only %.1f dB above %v Hz", want, d, other)
	}
	if r.Audio.RmsDb < -40 || r.Stats.PacketsReceived < 50 {
		t.Errorf("browser: rms %.1f dBFS, %d packets", r.Audio.RmsDb, r.Stats.PacketsReceived)
	}
}

// baresipHeard checks baresip's recording of the call (read after it closed).
func baresipHeard(t *testing.T, b *peers.Baresip, want, other float64) {
	t.Helper()
	samples, rate, err := b.Heard()
	if err != nil {
		t.Fatalf("baresip recording: %v", err)
	}
	if len(samples) < rate {
		t.Fatalf("baresip heard only %d samples at %d Hz", len(samples), rate)
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), want, other)
	t.Logf("baresip heard %.1f s: %.0f Hz (ratio %.1f), rms %.0f", float64(len(samples))/float64(rate), f, ratio, audiotest.RMS(tail))
	if f != want || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Errorf("baresip heard %.0f Hz (ratio %.1f, rms %.0f), want %v Hz", f, ratio, audiotest.RMS(tail), want)
	}
}

// codecSpec is baresip's audio_codecs entry for codec.
func codecSpec(codec string) string {
	if codec == "opus" {
		return "opus/48000/1"
	}
	return codec + "/8000/1"
}

func TestBrowserAndBaresip(t *testing.T) {
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})

	for _, codec := range []string{"pcmu", "opus"} {
		// (1) The browser calls baresip's SIP URL; baresip answers by itself.
		t.Run("browser-calls-sip-url-"+codec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e := newEnv(t, envOpts{page: testPage})
			bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: codec, ToneHz: 600})
			p := br.NewPage(ctx, e.base+"/page.html")
			defer p.Close(ctx)
			var cid string
			evalArg(ctx, t, p, `async (a) => { await T.login("alice"); await T.media(a.codec); return await T.call({type: "sip", url: a.url}); }`,
				map[string]string{"codec": codec, "url": bob.URI()}, &cid)
			if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
				t.Fatal(err)
			}
			browserHears(ctx, t, p, 600, 1000)
			if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			n := len(bob.Events())
			evalArg(ctx, t, p, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, cid, nil)
			if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
				t.Fatal(err)
			}
			baresipHeard(t, bob, 1000, 600)
			peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
		})

		// (2) baresip (authenticating as bob) calls a logged-in web user.
		t.Run("sip-calls-web-user-"+codec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e := newEnv(t, envOpts{page: testPage})
			p := br.NewPage(ctx, e.base+"/page.html")
			defer p.Close(ctx)
			evalArg(ctx, t, p, `async (codec) => { await T.login("carol"); await T.media(codec); T.autoAccept = true; return true; }`, codec, nil)
			bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: codec, ToneHz: 600,
				Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec(codec))})
			if err := bob.Dial(ctx, "sip:carol@"+e.addr); err != nil {
				t.Fatal(err)
			}
			if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
				t.Fatal(err)
			}
			var answered string
			evalArg(ctx, t, p, `() => nkb.waitFor(() => T.answered || T.acceptError, 10000).then(() => T.answered || T.acceptError)`, nil, &answered)
			var sdps map[string]string
			evalArg(ctx, t, p, `() => T.sdps`, nil, &sdps)
			t.Logf("offer to the browser:\n%s\nits answer:\n%s", sdps["offer"], sdps["answer"])
			browserHears(ctx, t, p, 600, 1000)
			if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			n := len(bob.Events())
			if err := bob.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
				t.Fatal(err)
			}
			baresipHeard(t, bob, 1000, 600)
			peers.WaitFor(t, waitLimit, "nothing left after BYE", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
		})
	}

	// Early media: a SIPp phone answers 183 with SDP and streams a 600 Hz tone
	// before its 200; the browser hears it while the call still rings (the
	// 183 answer was applied to its session), then the call is accepted.
	t.Run("early-media-from-sip-phone", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e := newEnv(t, envOpts{page: testPage})
		uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_early_tone.xml"), Calls: 1, Timeout: 40 * time.Second,
			Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 600, 5) + ",-1,0"}})
		p := br.NewPage(ctx, e.base+"/page.html")
		defer p.Close(ctx)
		var cid string
		evalArg(ctx, t, p, `async (url) => { await T.login("alice"); await T.media("pcmu"); return await T.call({type: "sip", url}); }`, "sip:bob@"+uas.Addr(), &cid)
		var state struct {
			Ringing  bool `json:"ringing"`
			Accepted bool `json:"accepted"`
		}
		evalArg(ctx, t, p, `() => ({ringing: !!T.api.events.find((e) => e.type === "ringing" && e.body.answer),
			accepted: !!T.api.events.find((e) => e.type === "accepted")})`, nil, &state)
		if !state.Ringing || state.Accepted {
			t.Fatalf("before the 200: %+v, want ringing with an answer and not accepted", state)
		}
		browserHears(ctx, t, p, 600, 1000) // early media
		evalArg(ctx, t, p, `() => ({accepted: !!T.api.events.find((e) => e.type === "accepted")})`, nil, &state)
		if state.Accepted {
			t.Fatal("the call was accepted before the early media was measured (machine too slow?)")
		}
		evalArg(ctx, t, p, `() => T.api.waitEvent((e) => e.type === "accepted", 15000).then(() => true)`, nil, nil)
		browserHears(ctx, t, p, 600, 1000)
		evalArg(ctx, t, p, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, cid, nil)
		if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
			t.Fatalf("sipp uas: %v %+v", err, r)
		}
	})

	// (3) baresip registers with nkbridge and is reached by call start type user.
	t.Run("registered-baresip-called-as-user", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e := newEnv(t, envOpts{page: testPage})
		bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
			Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
		// (baresip may register before its control socket is connected: watch the registrar.)
		peers.WaitFor(t, waitLimit, "bob registered", func() bool { return len(e.srv.Registrar().Lookup("bob")) == 1 })
		p := br.NewPage(ctx, e.base+"/page.html")
		defer p.Close(ctx)
		var cid string
		evalArg(ctx, t, p, `async () => { await T.login("alice"); await T.media("pcmu"); return await T.call({type: "user", user: "bob"}); }`, nil, &cid)
		browserHears(ctx, t, p, 600, 1000)
		if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		n := len(bob.Events())
		evalArg(ctx, t, p, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, cid, nil)
		if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
			t.Fatal(err)
		}
		baresipHeard(t, bob, 1000, 600)
	})
}
