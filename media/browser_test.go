package media

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// Media-only real-browser tests: Chromium (fake microphone tone) against the engine, with the
// SDP carried by the test itself (the control-API browser tests live with the signalling).

const browserPage = `<!doctype html><html><head><meta charset="utf-8"><title>nkb media</title></head><body></body></html>`

func browserPageServer(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	})
	srv := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

const browserOffer = `async () => {
	window.local = await nkb.getUserMedia();
	window.pc = nkb.newPC();
	window.remote = new MediaStream();
	pc.ontrack = (e) => window.remote.addTrack(e.track);
	for (const tr of local.getTracks()) pc.addTrack(tr, local);
	await pc.setLocalDescription(await pc.createOffer());
	return (await nkb.localSDP(pc)).sdp;
}`

const browserMeasure = `async () => {
	await nkb.waitFor(() => pc.connectionState === "connected", 15000);
	nkb.playRemote(window.remote);
	await nkb.sleep(500);
	const audio = await nkb.measureAudio(window.remote, {ms: 1500, freqs: [1000, 600]});
	const stats = await nkb.audioStats(pc);
	return {audio, stats};
}`

type browserResult = browsertest.Heard

// opusOnly removes every audio format but Opus and telephone-event from a browser offer.
func opusOnly(t *testing.T, sdp string) string {
	keep := regexp.MustCompile(`a=rtpmap:(\d+) (opus/48000/2|telephone-event/)`).FindAllStringSubmatch(sdp, -1)
	if len(keep) == 0 {
		t.Fatalf("browser offer has no Opus:\n%s", sdp)
	}
	var out []string
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "m=audio ") {
			f := strings.Fields(l)[:3]
			for _, m := range keep {
				f = append(f, m[1])
			}
			l = strings.Join(f, " ")
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n")
}

func TestBrowserEcho(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	e := newTestEngine(t, nil)
	p := b.NewPage(ctx, browserPageServer(t))
	var offer string
	if err := p.Eval(ctx, browserOffer, &offer); err != nil {
		t.Fatal(err)
	}
	s, ans, err := e.StartEcho(ctx, Description{Kind: KindWebRTC, SDP: offer}, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := p.EvalArg(ctx, `(sdp) => pc.setRemoteDescription({type: "answer", sdp})`, ans.SDP, nil); err != nil {
		t.Fatal(err)
	}
	var r browserResult
	if err := p.Eval(ctx, browserMeasure, &r); err != nil {
		t.Fatalf("%v; console:\n%s", err, strings.Join(p.Console(), "\n"))
	}
	browsertest.CheckHeard(t, "browser (echo)", r, 1000, 600)
	if st := s.Stats(); st[SideCaller].PacketsIn < 50 {
		t.Errorf("engine stats %+v", st)
	}
}

// TestBrowserProxyWebRTC: two browsers (1000 Hz and 600 Hz) through a WebRTC⇄WebRTC proxy.
func TestBrowserProxyWebRTC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600})
	url := browserPageServer(t)
	e := newTestEngine(t, nil)
	p1, p2 := b1.NewPage(ctx, url), b2.NewPage(ctx, url)
	var offer string
	if err := p1.Eval(ctx, browserOffer, &offer); err != nil {
		t.Fatal(err)
	}
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: offer}, KindWebRTC, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var farAnswer string
	if err := p2.EvalArg(ctx, `async (offer) => {
		window.local = await nkb.getUserMedia();
		window.pc = nkb.newPC();
		window.remote = new MediaStream();
		pc.ontrack = (e) => window.remote.addTrack(e.track);
		await pc.setRemoteDescription({type: "offer", sdp: offer});
		for (const tr of local.getTracks()) pc.addTrack(tr, local);
		await pc.setLocalDescription(await pc.createAnswer());
		return (await nkb.localSDP(pc)).sdp;
	}`, farOffer.SDP, &farAnswer); err != nil {
		t.Fatal(err)
	}
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindWebRTC, SDP: farAnswer})
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.EvalArg(ctx, `(sdp) => pc.setRemoteDescription({type: "answer", sdp})`, callerAns.SDP, nil); err != nil {
		t.Fatal(err)
	}
	var r [2]browserResult
	var errs [2]error
	done := make(chan int, 2)
	for i, p := range []*browsertest.Page{p1, p2} {
		go func() { errs[i] = p.Eval(ctx, browserMeasure, &r[i]); done <- i }()
	}
	<-done
	<-done
	for i, err := range errs {
		if err != nil {
			t.Fatalf("page %d: %v", i+1, err)
		}
	}
	browsertest.CheckHeard(t, "caller browser", r[0], 600, 1000)
	browsertest.CheckHeard(t, "far browser", r[1], 1000, 600)
	if st := s.Stats(); st[SideCaller].Transcoded+st[SideFar].Transcoded != 0 {
		t.Errorf("Opus both sides must pass through: %+v", st)
	}
}

// TestBrowserProxyToRTP: a browser (600 Hz) calls a plain RTP peer (1000 Hz, PCMU only)
// through a proxy session, in PCMU passthrough and in Opus→PCMU transcoding.
func TestBrowserProxyToRTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := browsertest.Launch(t, browsertest.Options{ToneHz: 600})
	url := browserPageServer(t)
	for _, tc := range []struct {
		name       string
		onlyOpus   bool
		transcoded bool
	}{{"pcmu-passthrough", false, false}, {"opus-transcoded", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, nil)
			peer := newRTPPeer(t)
			p := b.NewPage(ctx, url)
			defer p.Close(ctx)
			var offer string
			if err := p.Eval(ctx, browserOffer, &offer); err != nil {
				t.Fatal(err)
			}
			if tc.onlyOpus {
				offer = opusOnly(t, offer)
			}
			s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: offer}, KindRTP, SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
			if err != nil {
				t.Fatal(err)
			}
			ans, err := plainrtp.Answer(off, loopback, peer.Port(), []plainrtp.Codec{plainrtp.PCMU, plainrtp.TelEvent8}, nil)
			if err != nil {
				t.Fatal(err)
			}
			peer.use(off)
			callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.EvalArg(ctx, `(sdp) => pc.setRemoteDescription({type: "answer", sdp})`, callerAns.SDP, nil); err != nil {
				t.Fatal(err)
			}
			tctx, tcancel := context.WithCancel(ctx)
			go peer.sendTone(tctx, plainrtp.PCMU, 1000, 6*time.Second)
			var r browserResult
			err = p.Eval(ctx, browserMeasure, &r)
			tcancel()
			if err != nil {
				t.Fatalf("%v; console:\n%s", err, strings.Join(p.Console(), "\n"))
			}
			browsertest.CheckHeard(t, "browser", r, 1000, 600)
			pcm, n := peer.Heard()
			if n < 50 {
				t.Fatalf("RTP peer got %d packets", n)
			}
			f, ratio := audiotest.Dominant(pcm[len(pcm)/2:], 8000, 600, 1000)
			t.Logf("RTP peer: %d packets, dominant %.0f Hz ratio %.1f", n, f, ratio)
			if f != 600 || ratio < 10 {
				t.Errorf("RTP peer hears %.0f Hz (ratio %.1f), want the browser's 600 Hz", f, ratio)
			}
			st := s.Stats()
			if tc.transcoded != (st[SideFar].Transcoded > 0) || tc.transcoded != (st[SideCaller].Transcoded > 0) {
				t.Errorf("transcoding %v expected, stats %+v", tc.transcoded, st)
			}
			// RFC 4733 from the browser's RTCDTMFSender reaches the RTP peer as PT 101 at 8 kHz
			// (translated from telephone-event/48000 in the Opus case).
			if err := p.Eval(ctx, `pc.getSenders()[0].dtmf.insertDTMF("159#", 100, 70)`, nil); err != nil {
				t.Fatal(err)
			}
			peers.WaitFor(t, 5*time.Second, "DTMF at the RTP peer", func() bool { return len([]rune(peer.Digits())) >= 4 })
			digits, pts := peer.Digits(), peer.EventPTs()
			if digits != "159#" {
				t.Errorf("RTP peer got digits %q, want 159#", digits)
			}
			for _, pt := range pts {
				if pt != 101 {
					t.Fatalf("telephone-event with PT %d at the RTP peer, want 101", pt)
				}
			}
			wantCodec := "PCMU"
			if tc.transcoded {
				wantCodec = "opus"
			}
			if !strings.Contains(strings.ToLower(r.Stats.Codec), strings.ToLower(wantCodec)) {
				t.Errorf("browser receives codec %q, want %s", r.Stats.Codec, wantCodec)
			}
		})
	}
}
