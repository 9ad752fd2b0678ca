package browsertest_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

const blankPage = `<!doctype html><html><head><meta charset="utf-8"><title>nkb test</title></head>` +
	`<body><h1>nkbridge browser test</h1><div id="log"></div></body></html>`

// pageServer serves a blank page at / and the test assets under /assets/ from 127.0.0.1.
func pageServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, blankPage)
	})
	mux.Handle("/assets/", http.StripPrefix("/assets", browsertest.Assets(t)))
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}

type audioResult struct {
	DominantHz float64            `json:"dominantHz"`
	DominantDb float64            `json:"dominantDb"`
	RmsDb      float64            `json:"rmsDb"`
	BinHz      float64            `json:"binHz"`
	Levels     map[string]float64 `json:"levels"`
}

type statsResult struct {
	PacketsReceived int     `json:"packetsReceived"`
	PacketsSent     int     `json:"packetsSent"`
	AudioLevel      float64 `json:"audioLevel"`
	Codec           string  `json:"codec"`
}

// checkLoopbackSDP fails the test unless every candidate of sdp is a UDP host candidate on
// 127.0.0.1 (and there is at least one), and every c= line is 127.0.0.1.
func checkLoopbackSDP(t *testing.T, who, sdp string) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(sdp, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=candidate:"):
			f := strings.Fields(l)
			if len(f) < 8 || strings.ToLower(f[2]) != "udp" || f[4] != "127.0.0.1" || f[7] != "host" {
				t.Errorf("%s: candidate not on loopback: %q", who, l)
			}
			n++
		case strings.HasPrefix(l, "c="):
			if l != "c=IN IP4 127.0.0.1" {
				t.Errorf("%s: connection line not on loopback: %q", who, l)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: SDP has no candidate:\n%s", who, sdp)
	}
}

const setupCaller = `async () => {
	window.local = await nkb.getUserMedia();
	window.pc = nkb.newPC();
	window.remote = new MediaStream();
	pc.ontrack = (e) => window.remote.addTrack(e.track);
	for (const tr of local.getTracks()) pc.addTrack(tr, local);
	await pc.setLocalDescription(await pc.createOffer());
	return (await nkb.localSDP(pc)).sdp;
}`

const setupCallee = `async (offer) => {
	window.local = await nkb.getUserMedia();
	window.pc = nkb.newPC();
	window.remote = new MediaStream();
	pc.ontrack = (e) => window.remote.addTrack(e.track);
	await pc.setRemoteDescription({type: "offer", sdp: offer});
	for (const tr of local.getTracks()) pc.addTrack(tr, local);
	await pc.setLocalDescription(await pc.createAnswer());
	return (await nkb.localSDP(pc)).sdp;
}`

const measure = `async () => {
	nkb.playRemote(window.remote);
	const audio = await nkb.measureAudio(window.remote, {ms: 1500, freqs: [1000, 600]});
	const stats = await nkb.audioStats(pc);
	const own = await nkb.measureAudio(window.local, {ms: 500, freqs: [1000, 600]});
	let remoteAddr = "";
	(await pc.getStats()).forEach((s) => {
		if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") remoteAddr = s.remoteCandidateId;
	});
	const all = await pc.getStats();
	const rc = remoteAddr ? all.get(remoteAddr) : null;
	return {audio, stats, own, remoteAddress: rc ? rc.address : ""};
}`

// TestLoopbackCall is the template for real-browser media tests: two browsers with distinct
// fake-microphone tones call each other (signalling through Go), and each must hear the
// other's tone, not its own, with RTP packets counted.
func TestLoopbackCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := pageServer(t)

	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600})
	p1 := b1.NewPage(ctx, srv.URL+"/")
	p2 := b2.NewPage(ctx, srv.URL+"/")

	var offer, answer string
	if err := p1.Eval(ctx, setupCaller, &offer); err != nil {
		t.Fatalf("caller: %v", err)
	}
	checkLoopbackSDP(t, "offer", offer)
	if err := p2.EvalArg(ctx, setupCallee, offer, &answer); err != nil {
		t.Fatalf("callee: %v", err)
	}
	checkLoopbackSDP(t, "answer", answer)
	if err := p1.EvalArg(ctx, `(sdp) => pc.setRemoteDescription({type: "answer", sdp})`, answer, nil); err != nil {
		t.Fatalf("caller answer: %v", err)
	}
	for i, p := range []*browsertest.Page{p1, p2} {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err := p.WaitFor(wctx, `pc.connectionState === "connected" || pc.connectionState === "failed"`, nil)
		wcancel()
		var state string
		_ = p.Eval(ctx, `pc.connectionState`, &state)
		if err != nil || state != "connected" {
			t.Fatalf("page %d: connection state %q (%v); console:\n%s", i+1, state, err, strings.Join(p.Console(), "\n"))
		}
	}

	type result struct {
		Audio         audioResult `json:"audio"`
		Own           audioResult `json:"own"`
		Stats         statsResult `json:"stats"`
		RemoteAddress string      `json:"remoteAddress"`
	}
	var res [2]result
	var errs [2]error
	var wg sync.WaitGroup
	for i, p := range []*browsertest.Page{p1, p2} {
		wg.Go(func() { errs[i] = p.Eval(ctx, measure, &res[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("page %d measure: %v", i+1, err)
		}
	}

	for i, want := range []struct{ own, other float64 }{{1000, 600}, {600, 1000}} {
		r := res[i]
		t.Logf("page %d (tone %v Hz): hears %.1f Hz at %.1f dB (rms %.1f dBFS), levels %v, own mic %.1f Hz, %+v, remote candidate %s",
			i+1, want.own, r.Audio.DominantHz, r.Audio.DominantDb, r.Audio.RmsDb, r.Audio.Levels, r.Own.DominantHz, r.Stats, r.RemoteAddress)
		if math.Abs(r.Own.DominantHz-want.own) > 2*r.Own.BinHz {
			t.Errorf("page %d: own microphone plays %.1f Hz, want %v (fake audio file flag)", i+1, r.Own.DominantHz, want.own)
		}
		if math.Abs(r.Audio.DominantHz-want.other) > 2*r.Audio.BinHz {
			t.Errorf("page %d: hears %.1f Hz, want the other party's %v Hz", i+1, r.Audio.DominantHz, want.other)
		}
		other, own := r.Audio.Levels[fmt.Sprint(want.other)], r.Audio.Levels[fmt.Sprint(want.own)]
		if other-own < 20 {
			t.Errorf("page %d: other tone %.1f dB only %.1f dB above own tone %.1f dB", i+1, other, other-own, own)
		}
		if r.Audio.RmsDb < -40 {
			t.Errorf("page %d: remote audio too quiet: %.1f dBFS", i+1, r.Audio.RmsDb)
		}
		if r.Stats.PacketsReceived <= 0 || r.Stats.PacketsSent <= 0 {
			t.Errorf("page %d: packets received %d, sent %d", i+1, r.Stats.PacketsReceived, r.Stats.PacketsSent)
		}
		if r.RemoteAddress != "127.0.0.1" {
			t.Errorf("page %d: selected remote candidate %q, want 127.0.0.1", i+1, r.RemoteAddress)
		}
	}

	if err := p1.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "caller.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}

	// Closing leaves no Chromium process behind.
	for _, b := range []*browsertest.Browser{b1, b2} {
		b.Close()
		if left := peers.GroupMembers(b.Pid()); len(left) > 0 {
			t.Errorf("chromium group %d still has processes %v after Close", b.Pid(), left)
		}
		if left := b.Leftovers(); len(left) > 0 {
			t.Errorf("processes %v of browser %d left after Close", left, b.Pid())
		}
	}
}
