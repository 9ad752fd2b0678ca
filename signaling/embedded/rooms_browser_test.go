package embedded_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// roomJS adds window.R to the test page (T of browser_test.go does login and offers).
const roomJS = `(() => {
  window.R = {
    async publish(room, video) {
      T.local = await nkb.getUserMedia({video: !!video});
      T.pc = nkb.newPC();
      T.remote = new MediaStream();
      T.pc.ontrack = (e) => T.remote.addTrack(e.track);
      for (const tr of T.local.getTracks()) T.pc.addTrack(tr, T.local);
      const req = {type: "publish", offer: {sdp: await T.offer()}};
      if (room) req.room_id = room;
      const r = await T.api.send("media", "session", "start", req);
      await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
      T.sid = r.session_id;
      return {session_id: r.session_id, room_id: r.room_id};
    },
    async listen(pid) {
      T.pc = nkb.newPC();
      T.remote = new MediaStream();
      T.pc.ontrack = (e) => T.remote.addTrack(e.track);
      const r = await T.api.send("media", "session", "start", {type: "listen", publisher_id: pid});
      T.sid = r.session_id;
      const ans = await T.answerTo(r.offer.sdp);
      await T.api.send("media", "session", "set_answer", {session_id: T.sid, answer: {sdp: ans}});
      return {session_id: r.session_id, room_id: r.room_id};
    },
    async mcu(room, kind) {
      await T.media();
      const req = {type: kind || "mcu", offer: {sdp: await T.offer()}};
      if (room) req.room_id = room;
      const r = await T.api.send("media", "session", "start", req);
      await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
      T.sid = r.session_id;
      return {session_id: r.session_id, room_id: r.room_id || ""};
    },
    async hear(freqs, ms) {
      await nkb.waitFor(() => T.pc.connectionState === "connected", 20000, 50, "connected");
      if (!T.playing) { nkb.playRemote(T.remote); T.playing = true; await nkb.sleep(800); }
      const audio = await nkb.measureAudio(T.remote, {ms: ms || 1500, freqs});
      const stats = await nkb.audioStats(T.pc);
      let framesDecoded = 0;
      (await T.pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") framesDecoded += s.framesDecoded || 0; });
      return {audio, stats, framesDecoded};
    },
  };
  return true;
})()`

type roomHeard struct {
	heard
	FramesDecoded int `json:"framesDecoded"`
}

func roomPage(ctx context.Context, t *testing.T, b *browsertest.Browser, url, user string) *browsertest.Page {
	t.Helper()
	p := b.NewPage(ctx, url)
	eval(ctx, t, p, roomJS, nil)
	evalArg(ctx, t, p, `(u) => T.login(u)`, user, nil)
	return p
}

func hearIn(ctx context.Context, t *testing.T, p *browsertest.Page, freqs []float64) roomHeard {
	t.Helper()
	var r roomHeard
	evalArg(ctx, t, p, `(f) => R.hear(f, 1500)`, freqs, &r)
	return r
}

func level(r roomHeard, f float64) float64 { return r.Audio.Levels[fmt.Sprint(f)] }

// toneProblems: what is wrong with r, where every want tone must be clearly there (> -60 dB
// and 20 dB over every notWant one) and the notWant ones under -60 dB (codec noise of a mix
// sits around -70).
func toneProblems(r roomHeard, want, notWant []float64) []string {
	var out []string
	if r.Stats.PacketsReceived < 50 {
		out = append(out, fmt.Sprintf("only %d packets received", r.Stats.PacketsReceived))
	}
	for _, w := range want {
		if level(r, w) < -60 {
			out = append(out, fmt.Sprintf("%v Hz too quiet (%.1f dB)", w, level(r, w)))
		}
		for _, n := range notWant {
			if level(r, w)-level(r, n) < 20 {
				out = append(out, fmt.Sprintf("%v Hz (%.1f dB) not 20 dB above %v Hz (%.1f dB)", w, level(r, w), n, level(r, n)))
			}
		}
	}
	for _, n := range notWant {
		if level(r, n) > -60 {
			out = append(out, fmt.Sprintf("hears %v Hz (%.1f dB), it must not", n, level(r, n)))
		}
	}
	return out
}

// checkTones fails the test with toneProblems of r.
func checkTones(t *testing.T, who string, r roomHeard, want, notWant []float64) {
	t.Helper()
	t.Logf("%s: dominant %.1f Hz, rms %.1f dBFS, levels %v, packets %d, codec %s", who, r.Audio.DominantHz, r.Audio.RmsDb,
		r.Audio.Levels, r.Stats.PacketsReceived, r.Stats.Codec)
	for _, p := range toneProblems(r, want, notWant) {
		t.Errorf("%s: %s", who, p)
	}
}

// hearUntil listens on p, window after window, until what it hears passes checkTones (after a
// change in what it should hear, the old audio drains from the browser's jitter buffer and the
// mixer at a pace the machine's load sets), for at most 10 s; it checks and returns the last window.
func hearUntil(ctx context.Context, t *testing.T, p *browsertest.Page, who string, want, notWant []float64) roomHeard {
	t.Helper()
	all := []float64{500, 800, 1200, 1700}
	var r roomHeard
	for deadline := time.Now().Add(10 * time.Second); ; {
		r = hearIn(ctx, t, p, all)
		if len(toneProblems(r, want, notWant)) == 0 || time.Now().After(deadline) {
			break
		}
	}
	checkTones(t, who, r, want, notWant)
	return r
}

// TestBrowserRooms: real Chromium pages through the real control API.
//   - sfu: two publishers (500 Hz with video, 1200 Hz); five listener pages of the first all
//     hear 500 Hz (and decode its video: keyframes requested on join); listen_switch moves one
//     to 1200 Hz without renegotiation; when the 1200 Hz publisher leaves, its listener stops
//     with 2036; a publish recording holds the publisher's tone.
//   - mcu: three browsers (500, 800, 1200 Hz) and a plain-RTP PCMU participant (1700 Hz):
//     each hears every other tone and not its own; muting one removes its tone; the mix
//     recording holds every tone.
//   - park -> mcu: a parked browser hears nothing, then joins the conference by session_type.
func TestBrowserRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	b500 := browsertest.Launch(t, browsertest.Options{ToneHz: 500})
	b800 := browsertest.Launch(t, browsertest.Options{ToneHz: 800})
	b1200 := browsertest.Launch(t, browsertest.Options{ToneHz: 1200})
	all := []float64{500, 800, 1200, 1700}

	t.Run("sfu", func(t *testing.T) {
		e, _ := newRoomEnv(t)
		url := e.base + "/page.html"
		watch := dialAPI(t, e, "watch")
		if _, err := watch.send("core", "event", "subscribe", map[string]any{"class": "media", "subclass": "room"}); err != nil {
			t.Fatal(err)
		}
		pubA := roomPage(ctx, t, b500, url, "pub-a")
		defer pubA.Close(ctx)
		var a, bres struct {
			SessionID string `json:"session_id"`
			RoomID    string `json:"room_id"`
		}
		evalArg(ctx, t, pubA, `() => R.publish("", true)`, nil, &a)
		if a.RoomID == "" {
			t.Fatal("publish without room_id created no room")
		}
		eval(ctx, t, pubA, `nkb.waitFor(() => T.pc.connectionState === "connected", 20000, 50, "connected")`, nil)
		pubB := roomPage(ctx, t, b1200, url, "pub-b")
		defer pubB.Close(ctx)
		evalArg(ctx, t, pubB, `(r) => R.publish(r, false)`, a.RoomID, &bres)
		if bres.RoomID != a.RoomID {
			t.Fatalf("second publisher in %q, want %q", bres.RoomID, a.RoomID)
		}
		eval(ctx, t, pubB, `nkb.waitFor(() => T.pc.connectionState === "connected", 20000, 50, "connected")`, nil)

		listeners := make([]*browsertest.Page, 5)
		lids := make([]string, 5)
		for i := range listeners {
			listeners[i] = roomPage(ctx, t, b800, url, fmt.Sprintf("listener-%d", i))
			defer listeners[i].Close(ctx)
			var l struct {
				SessionID string `json:"session_id"`
				RoomID    string `json:"room_id"`
			}
			evalArg(ctx, t, listeners[i], `(p) => R.listen(p)`, a.SessionID, &l)
			if l.RoomID != a.RoomID {
				t.Fatalf("listener %d in room %q", i, l.RoomID)
			}
			lids[i] = l.SessionID
		}
		watch.waitEvent("started_listener", a.RoomID)
		var wg sync.WaitGroup
		res := make([]roomHeard, 5)
		for i := range listeners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := listeners[i].EvalArg(ctx, `(f) => R.hear(f, 1500)`, all, &res[i]); err != nil {
					t.Errorf("listener %d: %v; console:\n%s", i, err, strings.Join(listeners[i].Console(), "\n"))
				}
			}()
		}
		wg.Wait()
		for i, r := range res {
			checkTones(t, fmt.Sprintf("listener %d of 500 Hz", i), r, []float64{500}, []float64{800, 1200})
			if r.FramesDecoded == 0 {
				t.Errorf("listener %d decoded no video frame of the publisher", i)
			}
		}
		info, err := watch.media("room/info", map[string]any{"room_id": a.RoomID})
		if err != nil {
			t.Fatal(err)
		}
		if pubs, _ := info["publishers"].(map[string]any); len(pubs) != 2 {
			t.Errorf("info publishers %v", info["publishers"])
		}
		if ls, _ := info["listeners"].(map[string]any); len(ls) != 5 {
			t.Errorf("info listeners %v", info["listeners"])
		}

		// listen_switch: listener 0 now hears the 1200 Hz publisher, on the same PeerConnection.
		var sw map[string]any
		evalArg(ctx, t, listeners[0], `(p) => T.api.send("media", "session", "update", {session_id: T.sid, type: "listen_switch", publisher_id: p})`, bres.SessionID, &sw)
		if sw["publisher_id"] != bres.SessionID {
			t.Errorf("listen_switch reply %v", sw)
		}
		hearUntil(ctx, t, listeners[0], "listener 0 switched to 1200 Hz", []float64{1200}, []float64{500, 800})
		var sigState string
		eval(ctx, t, listeners[0], `T.pc.signalingState + "/" + T.pc.connectionState`, &sigState)
		if sigState != "stable/connected" {
			t.Errorf("after the switch the PeerConnection is %s", sigState)
		}
		r := hearIn(ctx, t, listeners[1], all)
		checkTones(t, "listener 1 still on 500 Hz", r, []float64{500}, []float64{800, 1200})

		// The 1200 Hz publisher leaves: listener 0 stops with 2036.
		eval(ctx, t, pubB, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		var stop map[string]any
		eval(ctx, t, listeners[0], `T.api.waitEvent((e) => e.type === "stop").then((e) => e.body)`, &stop)
		if code, _ := stop["code"].(float64); code != 2036 {
			t.Errorf("listener of a stopped publisher: %v, want 2036", stop)
		}
		watch.waitEvent("stopped_publisher", a.RoomID)

		// Recording of a publisher.
		var rec struct {
			Paths []string `json:"record_paths"`
		}
		eval(ctx, t, pubA, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", record: true})`, &rec)
		time.Sleep(2 * time.Second) // the subject: 2 s recorded
		eval(ctx, t, pubA, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", record: false})`, nil)
		if len(rec.Paths) == 0 {
			t.Fatal("no recording")
		}
		samples, rate, err := audiotest.ReadWAV(rec.Paths[0])
		if err != nil {
			t.Fatal(err)
		}
		f, ratio := audiotest.Dominant(samples[len(samples)/4:], float64(rate), 500, 1200)
		if len(samples) < rate || f != 500 || ratio < 10 {
			t.Errorf("publisher recording holds %.0f Hz (ratio %.1f, %d samples), want 500", f, ratio, len(samples))
		}
		// The 500 Hz publisher leaves: its four listeners stop with 2036, the room goes away.
		eval(ctx, t, pubA, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		for i, p := range listeners[1:] {
			var stop map[string]any
			eval(ctx, t, p, `T.api.waitEvent((e) => e.type === "stop").then((e) => e.body)`, &stop)
			if code, _ := stop["code"].(float64); code != 2036 {
				t.Errorf("listener %d: %v, want 2036", i+1, stop)
			}
		}
		watch.waitEvent("destroyed", a.RoomID)
		e.waitIdle("sfu done")
	})

	t.Run("mcu", func(t *testing.T) {
		e, _ := newRoomEnv(t)
		url := e.base + "/page.html"
		c := dialAPI(t, e, "rtp")
		pages := []*browsertest.Page{roomPage(ctx, t, b500, url, "m500"), roomPage(ctx, t, b800, url, "m800"), roomPage(ctx, t, b1200, url, "m1200")}
		for _, p := range pages {
			defer p.Close(ctx)
		}
		rid, err := c.media("room/create", map[string]any{"class": "mcu", "room_id": "conf-test", "record": true})
		if err != nil || rid["room_id"] != "conf-test" {
			t.Fatalf("create: %v %v", rid, err)
		}
		if _, err := c.media("room/create", map[string]any{"class": "mcu", "room_id": "conf-test"}); codeOf(err) != 2031 {
			t.Errorf("create twice: %v, want 2031", err)
		}
		sids := make([]string, 3)
		for i, p := range pages {
			var m struct {
				SessionID string `json:"session_id"`
				RoomID    string `json:"room_id"`
			}
			evalArg(ctx, t, p, `(r) => R.mcu(r)`, "conf-test", &m)
			if m.RoomID != "conf-test" {
				t.Fatalf("page %d in room %q", i, m.RoomID)
			}
			sids[i] = m.SessionID
		}
		peer := newRTPPeer(t)
		res, err := c.media("session/start", map[string]any{"type": "mcu", "room_id": "conf-test", "offer": map[string]any{"sdp": peer.SDP(""), "sdp_type": "rtp"}})
		if err != nil {
			t.Fatal(err)
		}
		peer.UseSDP(res["answer"].(map[string]any)["sdp"].(string))
		tctx, tcancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() { tcancel(); wg.Wait() }()
		wg.Add(1)
		go func() { defer wg.Done(); peer.SendToneFor(tctx, 0, "pcmu", 1700, 2*time.Minute) }()

		own := []float64{500, 800, 1200}
		// measure listens on every page and on the RTP peer at once and says what is wrong.
		measure := func(what string, muted float64) (problems []string) {
			res := make([]roomHeard, 3)
			var mwg sync.WaitGroup
			for i, p := range pages {
				mwg.Add(1)
				go func() {
					defer mwg.Done()
					if err := p.EvalArg(ctx, `(f) => R.hear(f, 1500)`, all, &res[i]); err != nil {
						t.Errorf("page %d: %v", i, err)
					}
				}()
			}
			rtpPCM := listenWindow(peer, 1500*time.Millisecond)
			mwg.Wait()
			for i, r := range res {
				var want, not []float64
				for _, f := range all {
					if f == own[i] || f == muted {
						not = append(not, f)
					} else {
						want = append(want, f)
					}
				}
				who := fmt.Sprintf("%s: browser %.0f Hz", what, own[i])
				t.Logf("%s: dominant %.1f Hz, rms %.1f dBFS, levels %v, packets %d", who, r.Audio.DominantHz, r.Audio.RmsDb, r.Audio.Levels, r.Stats.PacketsReceived)
				for _, p := range toneProblems(r, want, not) {
					problems = append(problems, who+": "+p)
				}
			}
			for _, f := range own {
				if f == muted {
					if hears(rtpPCM, f) {
						problems = append(problems, fmt.Sprintf("%s: RTP peer hears muted %.0f Hz", what, f))
					}
				} else if !hears(rtpPCM, f) {
					problems = append(problems, fmt.Sprintf("%s: RTP peer does not hear %.0f Hz (power %.0f)", what, f, tonePower(rtpPCM, f)))
				}
			}
			if hears(rtpPCM, 1700) {
				problems = append(problems, fmt.Sprintf("%s: RTP peer hears itself", what))
			}
			return problems
		}
		// measureAll measures until everything is as wanted (after a change the mixer's and the
		// browsers' jitter buffers drain at a pace the machine's load sets), for at most 10 s.
		measureAll := func(what string, muted float64) {
			var problems []string
			for deadline := time.Now().Add(10 * time.Second); ; {
				if problems = measure(what, muted); len(problems) == 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
		}
		for _, p := range pages {
			eval(ctx, t, p, `nkb.waitFor(() => T.pc.connectionState === "connected", 20000, 50, "connected")`, nil)
		}
		measureAll("all", 0)
		// Mute the 800 Hz browser.
		if err := pages[1].Eval(ctx, `T.api.send("media", "session", "update", {session_id: T.sid, type: "media", use_audio: false})`, nil); err != nil {
			t.Fatal(err)
		}
		measureAll("800 muted", 800)

		info, err := c.media("room/info", map[string]any{"room_id": "conf-test"})
		if err != nil {
			t.Fatal(err)
		}
		paths, _ := info["record_paths"].([]any)
		if _, err := c.media("room/destroy", map[string]any{"room_id": "conf-test"}); err != nil {
			t.Fatal(err)
		}
		var stop map[string]any
		eval(ctx, t, pages[0], `T.api.waitEvent((e) => e.type === "stop").then((e) => e.body)`, &stop)
		if code, _ := stop["code"].(float64); code != 2032 {
			t.Errorf("stop on destroy: %v", stop)
		}
		if len(paths) != 1 {
			t.Fatalf("record paths %v", info)
		}
		rec := readWAV8k(t, paths[0].(string))
		for _, f := range all {
			if !hears(rec[len(rec)/8:], f) {
				t.Errorf("mix recording lacks %.0f Hz (power %.0f)", f, tonePower(rec[len(rec)/8:], f))
			}
		}
		tcancel()
		wg.Wait()
		e.waitIdle("mcu done")
	})

	t.Run("park-to-mcu", func(t *testing.T) {
		e, _ := newRoomEnv(t)
		url := e.base + "/page.html"
		p1 := roomPage(ctx, t, b500, url, "in-conf")
		defer p1.Close(ctx)
		p2 := roomPage(ctx, t, b800, url, "parked")
		defer p2.Close(ctx)
		var m1, m2 struct {
			SessionID string `json:"session_id"`
			RoomID    string `json:"room_id"`
		}
		evalArg(ctx, t, p1, `() => R.mcu("")`, nil, &m1)
		evalArg(ctx, t, p2, `() => R.mcu("", "park")`, nil, &m2)
		r := hearIn(ctx, t, p2, all)
		checkTones(t, "parked", r, nil, all)
		var up map[string]any
		evalArg(ctx, t, p2, `(r) => T.api.send("media", "session", "update", {session_id: T.sid, type: "session_type", session_type: "mcu", room_id: r})`, m1.RoomID, &up)
		if up["room_id"] != m1.RoomID {
			t.Errorf("update reply %v", up)
		}
		inConf := hearUntil(ctx, t, p2, "parked 800 Hz moved into the conference", []float64{500}, []float64{800, 1200, 1700})
		if inConf.Stats.PacketsReceived < r.Stats.PacketsReceived+50 {
			t.Errorf("packets received %d after the move, %d before: the stream did not continue", inConf.Stats.PacketsReceived, r.Stats.PacketsReceived)
		}
		hearUntil(ctx, t, p1, "conference 500 Hz hears the newcomer", []float64{800}, []float64{500, 1200, 1700})
		// mcu -> echo on the same PeerConnection: it hears itself only.
		evalArg(ctx, t, p2, `() => T.api.send("media", "session", "update", {session_id: T.sid, type: "session_type", session_type: "echo"})`, nil, nil)
		echo := hearUntil(ctx, t, p2, "moved to echo", []float64{800}, []float64{500, 1200, 1700})
		if echo.Stats.PacketsReceived < inConf.Stats.PacketsReceived+50 {
			t.Errorf("packets received %d in echo, %d before: the stream did not continue", echo.Stats.PacketsReceived, inConf.Stats.PacketsReceived)
		}
		for _, p := range []*browsertest.Page{p1, p2} {
			eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		}
		e.waitIdle("park done")
	})
}
