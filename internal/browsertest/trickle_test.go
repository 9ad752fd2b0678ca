package browsertest_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// A page that uses RTCPeerConnection the way a library does (its own config, trickle ICE via
// onicecandidate, pc.localDescription) with no nkb calls; Options.LoopbackPC must keep it
// on loopback.
const libraryLikeSetup = `async () => {
	window.cands = [];
	window.local = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
	window.pc = new RTCPeerConnection({iceServers: [{urls: "stun:stun.invalid:3478"}]});
	window.remote = new MediaStream();
	pc.ontrack = (e) => remote.addTrack(e.track);
	pc.onicecandidate = (e) => { if (e.candidate && e.candidate.candidate) cands.push(e.candidate.toJSON()); };
	pc.addEventListener("icecandidate", (e) => { if (e.candidate && e.candidate.candidate) (window.cands2 ||= []).push(e.candidate.candidate); });
	for (const t of local.getTracks()) pc.addTrack(t, local);
	return pc.getConfiguration().iceServers.length;
}`

type iceCand struct {
	Candidate     string `json:"candidate"`
	SdpMid        string `json:"sdpMid"`
	SdpMLineIndex int    `json:"sdpMLineIndex"`
}

func TestLoopbackPCTrickle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := pageServer(t)
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000, LoopbackPC: true})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600, LoopbackPC: true})
	p1 := b1.NewPage(ctx, srv.URL+"/")
	p2 := b2.NewPage(ctx, srv.URL+"/")

	for i, p := range []*browsertest.Page{p1, p2} {
		var servers int
		if err := p.Eval(ctx, libraryLikeSetup, &servers); err != nil {
			t.Fatalf("page %d setup: %v", i+1, err)
		}
		if servers != 0 {
			t.Errorf("page %d: %d ICE servers survived the patch", i+1, servers)
		}
	}

	// gathered waits for gathering and returns the (patched) local SDP and trickled candidates.
	gathered := func(p *browsertest.Page, who string) (string, []iceCand) {
		t.Helper()
		if err := p.WaitFor(ctx, `pc.iceGatheringState === "complete"`, nil); err != nil {
			t.Fatalf("%s: gathering: %v", who, err)
		}
		var res struct {
			SDP   string    `json:"sdp"`
			Cands []iceCand `json:"cands"`
			Raw   []string  `json:"raw"`
		}
		if err := p.Eval(ctx, `({sdp: pc.localDescription.sdp, cands, raw: window.cands2 || []})`, &res); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		checkLoopbackSDP(t, who+" localDescription", res.SDP)
		if len(res.Cands) == 0 || len(res.Raw) != len(res.Cands) {
			t.Fatalf("%s: %d candidates via onicecandidate, %d via addEventListener", who, len(res.Cands), len(res.Raw))
		}
		for _, c := range res.Cands {
			f := strings.Fields(c.Candidate)
			if len(f) < 8 || f[4] != "127.0.0.1" || strings.ToLower(f[2]) != "udp" || f[7] != "host" {
				t.Errorf("%s: trickled candidate not on loopback: %q", who, c.Candidate)
			}
		}
		return res.SDP, res.Cands
	}

	if err := p1.Eval(ctx, `pc.createOffer().then((o) => pc.setLocalDescription(o))`, nil); err != nil {
		t.Fatal(err)
	}
	offer, offerCands := gathered(p1, "caller")
	// The callee gets the offer with its candidates stripped, then the trickled ones.
	type remote struct {
		SDP   string    `json:"sdp"`
		Type  string    `json:"type"`
		Cands []iceCand `json:"cands"`
	}
	apply := `async (r) => {
		await pc.setRemoteDescription({type: r.type, sdp: r.sdp.split("\r\n").filter((l) => !l.startsWith("a=candidate:")).join("\r\n")});
		for (const c of r.cands) await pc.addIceCandidate(c);
		if (r.type === "offer") await pc.setLocalDescription(await pc.createAnswer());
	}`
	if err := p2.EvalArg(ctx, apply, remote{offer, "offer", offerCands}, nil); err != nil {
		t.Fatalf("callee: %v", err)
	}
	answer, answerCands := gathered(p2, "callee")
	if err := p1.EvalArg(ctx, apply, remote{answer, "answer", answerCands}, nil); err != nil {
		t.Fatalf("caller answer: %v", err)
	}

	for i, p := range []*browsertest.Page{p1, p2} {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		err := p.WaitFor(wctx, `pc.connectionState === "connected"`, nil)
		wcancel()
		if err != nil {
			t.Fatalf("page %d: not connected: %v", i+1, err)
		}
	}
	for i, want := range []float64{600, 1000} {
		p := []*browsertest.Page{p1, p2}[i]
		var res struct {
			Audio audioResult `json:"audio"`
			Stats statsResult `json:"stats"`
		}
		err := p.Eval(ctx, `(async () => {
			nkb.playRemote(remote);
			return {audio: await nkb.measureAudio(remote, {ms: 1000, freqs: [1000, 600]}), stats: await nkb.audioStats(pc)};
		})()`, &res)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.Audio.DominantHz-want) > 2*res.Audio.BinHz || res.Stats.PacketsReceived == 0 {
			t.Errorf("page %d hears %.1f Hz (want %v), %d packets", i+1, res.Audio.DominantHz, want, res.Stats.PacketsReceived)
		}
	}
}
