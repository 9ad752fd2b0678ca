package embedded_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// Real-browser tests through the real control API: Chromium pages (fake
// microphone tones) log in with nkb.ApiClient on the in-process server that
// also serves the page, and start echo and proxy sessions on the embedded
// media engine. Audio is proven by its frequency at each end.

// pageJS is the test page's own code (window.T); nkb is injected by browsertest.
const pageJS = `
window.T = {
  invites: [],
  async login(user) {
    T.api = new nkb.ApiClient("ws://" + location.host + "/", {onRequest: (m) => {
      if (m.class === "media" && m.subclass === "call" && m.cmd === "invite") T.invites.push(m.data);
      return null;
    }});
    await T.api.open();
    await T.api.login(user, "x");
  },
  // media prepares a PeerConnection with the microphone; codec limits the audio codecs offered.
  async media(codec, video) {
    T.local = await nkb.getUserMedia(video ? {video: {width: 320, height: 240}} : {});
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
  async offer() {
    await T.pc.setLocalDescription(await T.pc.createOffer());
    return (await nkb.localSDP(T.pc)).sdp;
  },
  // only keeps one audio codec (and telephone-event) of an SDP: a client that supports nothing else.
  only(sdp, codec) {
    const keep = new Set();
    for (const m of sdp.matchAll(/a=rtpmap:(\d+) ([^\/\r\n]+)\//g)) {
      if (m[2].toLowerCase() === codec.toLowerCase() || m[2] === "telephone-event") keep.add(m[1]);
    }
    return sdp.split("\r\n").filter((l) => {
      const f = /^a=(rtpmap|fmtp|rtcp-fb):(\d+)/.exec(l);
      return !f || keep.has(f[2]);
    }).map((l) => l.startsWith("m=audio ") ? l.split(" ").filter((x, i) => i < 3 || keep.has(x)).join(" ") : l).join("\r\n");
  },
  async answerTo(sdp) {
    await T.pc.setRemoteDescription({type: "offer", sdp});
    await T.pc.setLocalDescription(await T.pc.createAnswer());
    return (await nkb.localSDP(T.pc)).sdp;
  },
  // videoIn returns the inbound video counters.
  async videoIn() {
    let out = {packets: 0, frames: 0};
    (await T.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") out = {packets: r.packetsReceived || 0, frames: r.framesDecoded || 0};
    });
    return out;
  },
  // videoOutKbps measures the video send rate over ms.
  async videoOutKbps(ms) {
    const sent = async () => { let b = 0; (await T.pc.getStats()).forEach((r) => { if (r.type === "outbound-rtp" && r.kind === "video") b = r.bytesSent; }); return b; };
    const b0 = await sent();
    await nkb.sleep(ms);
    return ((await sent()) - b0) * 8 / ms;
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

const apiTestPage = `<!doctype html><html><head><meta charset="utf-8"><title>nkb embedded</title>
<script>` + pageJS + `</script></head><body></body></html>`

type heard = browsertest.Heard

func measure(ctx context.Context, t *testing.T, p *browsertest.Page) heard {
	t.Helper()
	var r heard
	if err := p.Eval(ctx, `T.measure()`, &r); err != nil {
		t.Fatalf("measure: %v; console:\n%s", err, strings.Join(p.Console(), "\n"))
	}
	return r
}

func eval(ctx context.Context, t *testing.T, p *browsertest.Page, js string, out any) {
	t.Helper()
	if err := p.Eval(ctx, js, out); err != nil {
		t.Fatalf("%s: %v; console:\n%s", js, err, strings.Join(p.Console(), "\n"))
	}
}

func evalArg(ctx context.Context, t *testing.T, p *browsertest.Page, js string, arg, out any) {
	t.Helper()
	if err := p.EvalArg(ctx, js, arg, out); err != nil {
		t.Fatalf("%s: %v; console:\n%s", js, err, strings.Join(p.Console(), "\n"))
	}
}

// browserEnv is newEnv serving the test page.
func browserEnv(t *testing.T) (*env, string) {
	e := newEnv(t, nil)
	return e, e.base + "/page.html"
}

func TestBrowserAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600})

	t.Run("echo", func(t *testing.T) {
		e, url := browserEnv(t)
		p := b1.NewPage(ctx, url)
		defer p.Close(ctx)
		var sid string
		evalArg(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media();
			const r = await T.api.send("media", "session", "start", {type: "echo", offer: {sdp: await T.offer()}});
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			T.sid = r.session_id;
			return r.session_id;
		}`, nil, &sid)
		browsertest.CheckHeard(t, "echo", measure(ctx, t, p), 1000, 600)

		// use_audio false: the level drops; true: the tone is back.
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", use_audio: false})`, nil)
		var muted heard
		// The engine stops echoing: packets stop arriving (then the level is measured, after
		// the browser's jitter buffer and concealment have played out).
		eval(ctx, t, p, `async () => {
			let last = -1;
			await nkb.waitFor(async () => {
				const n = (await nkb.audioStats(T.pc)).packetsReceived;
				const still = n === last;
				last = n;
				return still;
			}, 5000, 300, "echoed packets to stop");
			await nkb.sleep(500);
			return T.measure(1000);
		}`, &muted)
		t.Logf("muted: rms %.1f dBFS, levels %v", muted.Audio.RmsDb, muted.Audio.Levels)
		if muted.Audio.RmsDb > -60 || muted.Audio.Levels["1000"] > -80 {
			t.Errorf("muted echo still audible: rms %.1f dBFS, 1000 Hz at %.1f dB", muted.Audio.RmsDb, muted.Audio.Levels["1000"])
		}
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", use_audio: true})`, nil)
		var back heard
		eval(ctx, t, p, `nkb.sleep(400).then(() => T.measure(1000))`, &back)
		browsertest.CheckHeard(t, "unmuted echo", back, 1000, 600)

		// record: the file holds the tone.
		var rec struct {
			Paths []string `json:"record_paths"`
		}
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", record: true})`, &rec)
		time.Sleep(2 * time.Second) // the subject: 2 s recorded
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", record: false})`, nil)
		if len(rec.Paths) != 1 {
			t.Fatalf("record_paths %v, want one file (echo has one side)", rec.Paths)
		}
		samples, rate, err := audiotest.ReadWAV(rec.Paths[0])
		if err != nil {
			t.Fatal(err)
		}
		f, ratio := audiotest.Dominant(samples[len(samples)/4:], float64(rate), 1000, 600)
		t.Logf("recording: %.1f s at %d Hz, %.0f Hz ratio %.1f, rms %.0f", float64(len(samples))/float64(rate), rate, f, ratio, audiotest.RMS(samples))
		if len(samples) < rate || f != 1000 || ratio < 10 {
			t.Errorf("recording holds %.0f Hz (ratio %.1f, %d samples), want 1000 Hz", f, ratio, len(samples))
		}

		// stop releases the engine session.
		eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		e.waitIdle("echo stopped")
	})

	// use_video: a camera's video comes back (frames decoded), stops when muted and
	// returns when unmuted, while the audio goes on.
	t.Run("echo-video", func(t *testing.T) {
		e, url := browserEnv(t)
		p := b1.NewPage(ctx, url)
		defer p.Close(ctx)
		eval(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media(null, true);
			const r = await T.api.send("media", "session", "start", {type: "echo", offer: {sdp: await T.offer()}});
			if (!/m=video [1-9]/.test(r.answer.sdp)) throw new Error("answer refuses video:\n" + r.answer.sdp);
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			T.sid = r.session_id;
		}`, nil)
		type vstat struct{ Packets, Frames int }
		var v0, v0b, v1, v2, v3 vstat
		eval(ctx, t, p, `nkb.waitFor(async () => { const v = await T.videoIn(); return v.frames > 10 && v; }, 15000, 100, "video frames")`, &v0)
		time.Sleep(time.Second) // the subject: frames counted over a second
		eval(ctx, t, p, `T.videoIn()`, &v0b)
		if v0b.Frames-v0.Frames < 5 {
			t.Fatalf("echoed video does not flow: %+v then %+v", v0, v0b)
		}
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", use_video: false})`, nil)
		time.Sleep(time.Second) // in flight before the update
		eval(ctx, t, p, `T.videoIn()`, &v1)
		time.Sleep(1500 * time.Millisecond) // the subject: no video over 1.5 s while muted
		eval(ctx, t, p, `T.videoIn()`, &v2)
		browsertest.CheckHeard(t, "audio while video muted", measure(ctx, t, p), 1000, 600)
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", use_video: true})`, nil)
		eval(ctx, t, p, `nkb.waitFor(async () => { const v = await T.videoIn(); return v.frames > `+fmt.Sprint(v2.Frames+10)+` && v; }, 10000, 100, "video back")`, &v3)
		t.Logf("video: %+v -> %+v, muted %+v -> %+v, unmuted %+v", v0, v0b, v1, v2, v3)
		if v2.Packets-v1.Packets > 5 {
			t.Errorf("video still flows while muted: %d packets in 1.5 s", v2.Packets-v1.Packets)
		}
		// bitrate: a cap sent to the browser's sender (REMB) brings its video rate down.
		var before, after float64
		eval(ctx, t, p, `T.videoOutKbps(2000)`, &before)
		eval(ctx, t, p, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", bitrate: 60000})`, nil)
		time.Sleep(3 * time.Second) // the browser's rate adapts over seconds; measured after
		eval(ctx, t, p, `T.videoOutKbps(2000)`, &after)
		t.Logf("video send rate %.0f kbps, after bitrate 60000: %.0f kbps", before, after)
		if after > 90 || (before > 120 && after > 0.6*before) {
			t.Errorf("bitrate cap not applied: %.0f kbps before, %.0f kbps after a 60 kbps cap", before, after)
		}
		eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		e.waitIdle("video echo stopped")
	})

	// media.ice_lite: the engine's endpoints are ICE-lite; a browser still connects.
	t.Run("echo-ice-lite", func(t *testing.T) {
		e := newEnv(t, func(c *media.Config) { c.ICELite = true })
		p := b1.NewPage(ctx, e.base+"/page.html")
		defer p.Close(ctx)
		var answer string
		eval(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media();
			const r = await T.api.send("media", "session", "start", {type: "echo", offer: {sdp: await T.offer()}});
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			return r.answer.sdp;
		}`, &answer)
		if !strings.Contains(answer, "a=ice-lite") {
			t.Errorf("answer is not ICE-lite:\n%s", answer)
		}
		browsertest.CheckHeard(t, "ICE-lite echo", measure(ctx, t, p), 1000, 600)
	})

	t.Run("echo-trickle", func(t *testing.T) {
		e, url := browserEnv(t)
		p := b1.NewPage(ctx, url)
		defer p.Close(ctx)
		var n struct {
			Sent int  `json:"sent"`
			End  bool `json:"end"`
			Cand int  `json:"inOffer"`
		}
		eval(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media();
			const queue = [];
			let sid = null, sent = 0, end = false;
			const flush = async () => {
				while (sid && queue.length) {
					const c = queue.shift();
					if (c === null) { await T.api.send("media", "session", "set_candidate_end", {session_id: sid}); end = true; continue; }
					await T.api.send("media", "session", "set_candidate", {session_id: sid, candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex});
					sent++;
				}
			};
			T.pc.onicecandidate = (ev) => {
				if (!ev.candidate || !ev.candidate.candidate) { queue.push(null); flush(); return; }
				const init = nkb.candidateInit(ev.candidate);
				if (init) { queue.push(init); flush(); }
			};
			await T.pc.setLocalDescription(await T.pc.createOffer());
			// Trickle only: no candidate travels in the offer.
			const sdp = nkb.loopbackSDP(T.pc.localDescription.sdp).split("\r\n").filter((l) => !l.startsWith("a=candidate:")).join("\r\n");
			const r = await T.api.send("media", "session", "start", {type: "echo", offer: {sdp}});
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			sid = r.session_id;
			await flush();
			await nkb.waitFor(() => end, 10000, 50, "end of candidates");
			return {sent, end, inOffer: (sdp.match(/a=candidate:/g) || []).length};
		}`, &n)
		t.Logf("trickle: %d candidates sent by set_candidate, end %v, %d in the offer", n.Sent, n.End, n.Cand)
		if n.Sent < 1 || !n.End || n.Cand != 0 {
			t.Errorf("trickle did not happen: %+v", n)
		}
		browsertest.CheckHeard(t, "trickled echo", measure(ctx, t, p), 1000, 600)
		p.Close(ctx) // the page goes: its API connection closes, the session stops (1012)
		e.waitIdle("page closed")
	})

	t.Run("proxy-webrtc-call", func(t *testing.T) {
		e, url := browserEnv(t)
		pa, pb := b1.NewPage(ctx, url), b2.NewPage(ctx, url)
		defer pa.Close(ctx)
		defer pb.Close(ctx)
		eval(ctx, t, pb, `T.login("bob")`, nil)
		var callID string
		eval(ctx, t, pa, `async () => {
			await T.login("alice");
			await T.media();
			const r = await T.api.send("media", "session", "start", {type: "proxy", offer: {sdp: await T.offer(), caller_name: "Alice"}});
			T.sid = r.session_id;
			if (r.offer.sdp_type !== "webrtc") throw new Error("far offer sdp_type " + r.offer.sdp_type);
			const c = await T.api.send("media", "call", "start", {type: "user", user: "bob", session_id: r.session_id, offer: r.offer});
			return c.call_id;
		}`, &callID)
		// B gets the invite with the proxy's far offer and answers the call.
		evalArg(ctx, t, pb, `async (callID) => {
			const inv = await nkb.waitFor(() => T.invites.find((i) => i.call_id === callID), 10000, 50, "invite");
			await T.media();
			const sdp = await T.answerTo(inv.offer.sdp);
			await T.api.send("media", "call", "answered", {call_id: callID, answer: {sdp}});
		}`, callID, nil)
		// A gets its answer from the session answer event.
		eval(ctx, t, pa, `async () => {
			const ev = await T.api.waitEvent((ev) => ev.subclass === "session" && ev.type === "answer" && ev.obj_id === T.sid);
			await T.pc.setRemoteDescription({type: "answer", sdp: ev.body.answer.sdp});
		}`, nil)
		ra, rb := measureBoth(ctx, t, pa, pb)
		browsertest.CheckHeard(t, "caller A", ra, 600, 1000)
		browsertest.CheckHeard(t, "callee B", rb, 1000, 600)
		var sid string
		eval(ctx, t, pa, `T.sid`, &sid)
		if m, ok := e.be.Media(sid); !ok {
			t.Error("proxy session not found")
		} else if st := m.Stats(); st[0].Transcoded+st[1].Transcoded != 0 || st[0].Forwarded < 50 || st[1].Forwarded < 50 {
			t.Errorf("WebRTC⇄WebRTC must pass Opus through: %+v", st)
		}
		// Hanging up the call stops the session.
		evalArg(ctx, t, pa, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, callID, nil)
		e.waitIdle("call hung up")
	})

	for _, tc := range []struct {
		name, codec string
		transcoded  bool
	}{{"proxy-rtp-pcmu-passthrough", "PCMU", false}, {"proxy-rtp-opus-transcoded", "opus", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, url := browserEnv(t)
			p := b1.NewPage(ctx, url)
			defer p.Close(ctx)
			peer := newRTPPeer(t)
			var far struct {
				SID   string `json:"session_id"`
				Offer struct {
					SDP     string `json:"sdp"`
					SDPType string `json:"sdp_type"`
				} `json:"offer"`
			}
			evalArg(ctx, t, p, `async (codec) => {
				await T.login("alice");
				await T.media(codec);
				const r = await T.api.send("media", "session", "start", {type: "proxy", proxy_type: "rtp", offer: {sdp: await T.offer()}});
				T.sid = r.session_id;
				return r;
			}`, tc.codec, &far)
			if far.Offer.SDPType != "rtp" || !strings.Contains(far.Offer.SDP, "RTP/AVP") {
				t.Fatalf("far offer is not plain RTP: %+v", far.Offer)
			}
			peer.UseSDP(far.Offer.SDP)
			evalArg(ctx, t, p, `async (sdp) => {
				const r = await T.api.send("media", "session", "set_answer", {session_id: T.sid, answer: {sdp, sdp_type: "rtp"}});
				await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			}`, peer.SDP(""), nil)
			tctx, tcancel := context.WithCancel(ctx)
			defer tcancel()
			go peer.SendToneFor(tctx, 0, "pcmu", 600, 20*time.Second)
			r := measure(ctx, t, p)
			browsertest.CheckHeard(t, "browser", r, 600, 1000)
			pcm, n := peer.Heard()
			checkTone(t, "RTP peer", pcm, n, 1000, 600)
			wantCodec := map[bool]string{false: "pcmu", true: "opus"}[tc.transcoded]
			if !strings.Contains(strings.ToLower(r.Stats.Codec), wantCodec) {
				t.Errorf("browser receives %q, want %s", r.Stats.Codec, wantCodec)
			}
			m, ok := e.be.Media(far.SID)
			if !ok {
				t.Fatal("session not found")
			}
			st := m.Stats()
			t.Logf("stats %+v", st)
			if tc.transcoded != (st[media.SideFar].Transcoded > 0) || tc.transcoded != (st[media.SideCaller].Transcoded > 0) {
				t.Errorf("transcoding %v expected, stats %+v", tc.transcoded, st)
			}
			eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
			e.waitIdle("proxy stopped")
		})
	}

	// The SIP-inbound direction: a plain-RTP caller (here a Go API client and
	// RTP peer, as the SIP glue would do) reaches a browser user through a call.
	for _, tc := range []struct {
		name, codec string
		transcoded  bool
	}{{"rtp-caller-to-webrtc-pcmu", "", false}, {"rtp-caller-to-webrtc-opus", "opus", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, url := browserEnv(t)
			pb := b2.NewPage(ctx, url)
			defer pb.Close(ctx)
			eval(ctx, t, pb, `T.login("bob")`, nil)
			gw := dialAPI(t, e, "sipgw")
			peer := newRTPPeer(t)
			r, err := gw.media("session/start", map[string]any{"type": "proxy", "proxy_type": "webrtc",
				"offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp", "caller_id": "sip:1001@127.0.0.1"}})
			if err != nil {
				t.Fatal(err)
			}
			sid := r["session_id"].(string)
			offer, _ := r["offer"].(map[string]any)
			if offer["sdp_type"] != "webrtc" || offer["caller_id"] != "sip:1001@127.0.0.1" {
				t.Errorf("far offer %v", offer)
			}
			c, err := gw.media("call/start", map[string]any{"type": "user", "user": "bob", "session_id": sid, "offer": offer})
			if err != nil {
				t.Fatal(err)
			}
			callID := c["call_id"].(string)
			evalArg(ctx, t, pb, `async ([callID, codec]) => {
			const inv = await nkb.waitFor(() => T.invites.find((i) => i.call_id === callID), 10000, 50, "invite");
			await T.media();
			// An Opus-only client: it sees only Opus in the offer. (setCodecPreferences on the
			// answering side is not enough: Chromium then answers Opus but sends the offer's
			// first codec, PCMU, which is not in its answer.)
			const sdp = await T.answerTo(codec ? T.only(inv.offer.sdp, codec) : inv.offer.sdp);
			await T.api.send("media", "call", "answered", {call_id: callID, answer: {sdp}});
		}`, []string{callID, tc.codec}, nil)
			ev := gw.waitEvent("answer", sid)
			ans, _ := ev.Body["answer"].(map[string]any)
			sdp, _ := ans["sdp"].(string)
			if ans["sdp_type"] != "rtp" {
				t.Fatalf("caller's answer %v is not plain RTP", ans)
			}
			peer.UseSDP(sdp)
			tctx, tcancel := context.WithCancel(ctx)
			defer tcancel()
			go peer.SendToneFor(tctx, 0, "pcmu", 1000, 20*time.Second)
			rb := measure(ctx, t, pb)
			browsertest.CheckHeard(t, "browser callee", rb, 1000, 600)
			pcm, n := peer.Heard()
			checkTone(t, "RTP caller", pcm, n, 600, 1000)
			if m, ok := e.be.Media(sid); !ok || m.CallerKind() != media.KindRTP || m.FarKind() != media.KindWebRTC {
				t.Errorf("session kinds: %v", ok)
			} else if st := m.Stats(); tc.transcoded != (st[0].Transcoded > 0) || tc.transcoded != (st[1].Transcoded > 0) {
				t.Errorf("transcoding %v expected (browser codec %s): %+v", tc.transcoded, rb.Stats.Codec, st)
			}
			wantCodec := map[bool]string{false: "pcmu", true: "opus"}[tc.transcoded]
			if !strings.Contains(strings.ToLower(rb.Stats.Codec), wantCodec) {
				t.Errorf("browser receives %q, want %s", rb.Stats.Codec, wantCodec)
			}
			if !tc.transcoded {
				// The browser hangs up: the call ends and the session stops.
				evalArg(ctx, t, pb, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, callID, nil)
				st := gw.waitEvent("stop", sid)
				b, _ := json.Marshal(st.Body)
				t.Logf("session stop after the callee hung up: %s", b)
				if code, _ := st.Body["code"].(float64); code == 0 {
					t.Errorf("stop event without code: %s", b)
				}
			} else {
				// The browser's media dies (its PeerConnection closes, DTLS close_notify): the
				// engine stops the session with a clear reason.
				eval(ctx, t, pb, `T.pc.close()`, nil)
				st := gw.waitEvent("stop", sid)
				b, _ := json.Marshal(st.Body)
				t.Logf("session stop after the browser closed its PeerConnection: %s", b)
				reason, _ := st.Body["reason"].(string)
				if code, _ := st.Body["code"].(float64); code != signaling.CodePeerHangup || !strings.Contains(reason, "Peer closed the media") {
					t.Errorf("stop %s, want 2026 Peer closed the media", b)
				}
			}
			e.waitIdle("call ended")
		})
	}
}

// measureBoth measures two pages at once.
func measureBoth(ctx context.Context, t *testing.T, pa, pb *browsertest.Page) (heard, heard) {
	t.Helper()
	var r [2]heard
	var errs [2]error
	done := make(chan struct{}, 2)
	for i, p := range []*browsertest.Page{pa, pb} {
		go func() { errs[i] = p.Eval(ctx, `T.measure()`, &r[i]); done <- struct{}{} }()
	}
	<-done
	<-done
	for i, err := range errs {
		if err != nil {
			t.Fatalf("page %d: %v", i+1, err)
		}
	}
	return r[0], r[1]
}
