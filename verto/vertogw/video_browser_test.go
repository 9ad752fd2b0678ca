package vertogw

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// Issue 14.1: a Verto client that offers video (audio sendrecv + video recvonly: @signalwire/js
// always asks to receive video) must hear its peer. These tests use what the client itself
// keeps as its remote stream (the last ontrack event's stream), not the page's receivers, and
// check every SDP a page is given: no section may say it sends without naming its source.

// videoHook records every remote description a page is given (window.remoteSDPs) and keeps
// each PeerConnection's last ontrack stream (nkb.keepLastStream, what @signalwire/js keeps);
// with window.offerRecvVideo set, offers ask to receive video (a recvonly video section).
const videoHook = `<script>
window.remoteSDPs = [];
(function () {
  const srd = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (d) {
    if (!("nkbLastStream" in this)) nkb.keepLastStream(this);
    if (d && d.sdp) window.remoteSDPs.push({ type: d.type, sdp: d.sdp });
    return srd.apply(this, arguments);
  };
  const co = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function () {
    if (window.offerRecvVideo && !this.getTransceivers().some((t) => t.receiver.track.kind === "video")) {
      this.addTransceiver("video", { direction: "recvonly" });
    }
    return co.apply(this, arguments);
  };
})();
</script>`

// vertoHeard measures what the Verto client plays: its own remote stream, which must exist
// and carry audio.
const vertoHeard = `({want, other}) => nkb.heardStream(window.call.options.remoteStream, window.call.peer.instance, [want, other])`

// apiHeard measures the stream of the API page's last ontrack event.
const apiHeard = `({want, other}) => nkb.heardStream(window.pc.nkbLastStream, window.pc, [want, other])`

// withVideoPages serves /vpage (the Verto page) and /vapipage (the API page) with videoHook.
func (e *env) withVideoPages() {
	e.withAssets()
	vpage := strings.Replace(swPage, `<script src="/assets/verto.min.js">`, videoHook+`<script src="/assets/verto.min.js">`, 1)
	if vpage == swPage {
		e.t.Fatal("the Verto page has no verto.min.js script to hook before")
	}
	e.mux.HandleFunc("/vpage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, vpage)
	})
	e.mux.HandleFunc("/vapipage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8"><title>api</title>`+videoHook+`</head><body></body></html>`)
	})
}

// heard measures with js and checks the page hears want, not other.
func (p *party) heard(who, js string, want, other float64) {
	p.t.Helper()
	var h browsertest.Heard
	if err := p.page.EvalArg(p.ctx, js, map[string]float64{"want": want, "other": other}, &h); err != nil {
		p.fatal("%s: %v", who, err)
	}
	browsertest.CheckHeard(p.t, who, h, want, other)
}

// checkSDPs checks every remote description the page was given; it returns them.
func (p *party) checkSDPs(who string) []string {
	p.t.Helper()
	var got []struct{ Type, SDP string }
	p.eval(`window.remoteSDPs`, &got)
	if len(got) == 0 {
		p.t.Fatalf("%s was given no SDP", who)
	}
	var out []string
	for i, d := range got {
		if err := browsertest.CheckSources(d.SDP); err != nil {
			p.t.Errorf("%s, %s %d: %v\n%s", who, d.Type, i, err, d.SDP)
		}
		out = append(out, d.SDP)
	}
	return out
}

// noVideoSent fails unless no SDP in sdps says it sends video: the page's peer has no camera,
// so there is no video to send it.
func noVideoSent(t *testing.T, who string, sdps []string) {
	t.Helper()
	for i, sdp := range sdps {
		if d := browsertest.Direction(sdp, "video"); d == "sendrecv" || d == "sendonly" {
			t.Errorf("%s, SDP %d: video %s, but nobody sends video:\n%s", who, i, d, sdp)
		}
	}
}

func (p *party) vertoCallVideo(dest string, video bool) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(window.client.newCall({ destinationNumber: %q, audio: true, video: %v }), true)`, dest, video), nil)
}

// videoOffered checks the page's own offer asks for video.
func (p *party) videoOffered(who string) {
	p.t.Helper()
	var sdp string
	p.eval(`window.call.peer.instance.localDescription.sdp`, &sdp)
	if d := browsertest.Direction(sdp, "video"); d == "" || d == "inactive" || d == "rejected" {
		p.t.Fatalf("%s offered video %q, want it offered", who, d)
	}
}

// TestBrowserVideoVertoCallsVerto: Verto client alice calls Verto client bob, offering video
// (recvonly as the client does with no camera, and sendrecv with the fake camera); bob answers
// audio-only. Both hear each other through the client's own remote stream.
func TestBrowserVideoVertoCallsVerto(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withVideoPages()
	a := e.browser(vertoTone, "/vpage")
	b := e.browser(apiTone, "/vpage")
	a.vertoLogin("alice")
	b.vertoLogin("bob")
	for _, video := range []bool{false, true} {
		t.Logf("alice offers video, camera %v", video)
		a.eval(`(window.remoteSDPs = [], true)`, nil)
		a.vertoCallVideo("verto:bob", video)
		b.waitState("ringing")
		b.eval(`window.call.answer(), true`, nil)
		a.waitState("active")
		b.waitState("active")
		a.videoOffered("alice")
		a.checkSDPs("alice")
		if bob := b.checkSDPs("bob"); !video {
			noVideoSent(t, "bob", bob)
		}
		a.heard("alice (caller)", vertoHeard, apiTone, vertoTone)
		b.heard("bob (callee)", vertoHeard, vertoTone, apiTone)
		b.eval(`window.call.hangup(), true`, nil)
		a.waitEnded()
		e.idle()
	}
}

// vertoAndAPIPages starts a whole nkbridge with a Verto page logged in as alice and an API page
// logged in as bob (accepting every invite when answer is set).
func vertoAndAPIPages(t *testing.T, answer bool) (*env, *party, *party) {
	e := newEnv(t, envOpts{})
	e.withVideoPages()
	v := e.browser(vertoTone, "/vpage")
	a := e.browser(apiTone, "/vapipage")
	v.vertoLogin("alice")
	a.apiLogin("bob", answer)
	return e, v, a
}

// TestBrowserVideoVertoCallsAPIUser: a Verto client offering video calls a control-API user.
func TestBrowserVideoVertoCallsAPIUser(t *testing.T) {
	e, v, a := vertoAndAPIPages(t, true)
	v.vertoCall("bob")
	v.waitState("active")
	a.waitFor(`window.answeredCall`, 10*time.Second)
	v.videoOffered("alice")
	noVideoSent(t, "the Verto caller", v.checkSDPs("the Verto caller"))
	noVideoSent(t, "the API callee", a.checkSDPs("the API callee"))
	v.heard("the Verto caller", vertoHeard, apiTone, vertoTone)
	a.heard("the API callee", apiHeard, vertoTone, apiTone)

	// The Verto page reloads: the re-attach offer (verto.attach) must not say it sends video
	// either, and the new page hears the API user through its own remote stream.
	if err := v.page.Goto(v.ctx, e.ts.URL+"/vpage"); err != nil {
		t.Fatal(err)
	}
	v.vertoLogin("alice")
	v.waitState("active")
	v.waitFor(`window.call.peer && window.call.peer.instance && window.call.peer.instance.connectionState === "connected"`, 20*time.Second)
	noVideoSent(t, "the re-attached Verto caller", v.checkSDPs("the re-attached Verto caller"))
	v.heard("the re-attached Verto caller", vertoHeard, apiTone, vertoTone)
	a.heard("the API callee after the re-attach", apiHeard, vertoTone, apiTone)
	v.eval(`window.call.hangup(), true`, nil)
	a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup")`, 10*time.Second)
	e.idle()
}

// TestBrowserVideoAPIUserCallsVerto: a control-API user offering audio + video recvonly calls
// a Verto client.
func TestBrowserVideoAPIUserCallsVerto(t *testing.T) {
	e, v, a := vertoAndAPIPages(t, false)
	a.eval(`(window.offerRecvVideo = true, true)`, nil)
	var callID string
	if err := a.page.EvalArg(a.ctx, `(d) => window.startCall(d)`, map[string]any{"type": "verto", "user_id": "alice", "caller_id": "2000"}, &callID); err != nil {
		a.fatal("call start: %v", err)
	}
	var offer string
	a.eval(`window.pc.localDescription.sdp`, &offer)
	if d := browsertest.Direction(offer, "video"); d != "recvonly" {
		t.Fatalf("the API page offered video %q, want recvonly", d)
	}
	v.waitState("ringing")
	v.eval(`window.call.answer(), true`, nil)
	v.waitState("active")
	a.waitFor(`window.outAnswered === true`, 10*time.Second)
	noVideoSent(t, "the API caller", a.checkSDPs("the API caller"))
	noVideoSent(t, "the Verto callee", v.checkSDPs("the Verto callee"))
	a.heard("the API caller", apiHeard, vertoTone, apiTone)
	v.heard("the Verto callee", vertoHeard, apiTone, vertoTone)
	v.eval(`window.call.hangup(), true`, nil)
	a.waitFor(`window.api.events.some((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.obj_id === window.outCall)`, 10*time.Second)
	a.eval(`(window.pc.close(), true)`, nil)
	e.idle()
}

// TestBrowserVideoVertoAndSIP: a Verto client offering video calls a SIP phone (baresip,
// plain RTP) and is called by it; the client hears the phone through its own remote stream.
func TestBrowserVideoVertoAndSIP(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, addr := e.withSIP()
	e.withVideoPages()
	v := e.browser(vertoTone, "/vpage")
	v.vertoLogin("alice")
	ctx := testCtx(t, 120*time.Second)
	bob := registeredBob(t, srv, addr)

	// Verto (video offered) → SIP phone.
	v.vertoCall("bob")
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	v.waitState("active")
	v.videoOffered("alice")
	v.checkSDPs("the Verto caller")
	v.heard("the Verto caller", vertoHeard, apiTone, vertoTone)
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n := len(bob.Events())
	v.eval(`window.call.hangup(), true`, nil)
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	baresipHeard(t, bob, vertoTone, apiTone)
	e.idle()

	// SIP phone → Verto.
	v.eval(`(window.remoteSDPs = [], true)`, nil)
	n = len(bob.Events())
	if err := bob.Dial(ctx, "sip:alice@"+addr); err != nil {
		t.Fatal(err)
	}
	v.waitState("ringing")
	v.eval(`window.call.answer(), true`, nil)
	v.waitState("active")
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", n); err != nil {
		t.Fatal(err)
	}
	v.checkSDPs("the Verto callee")
	v.heard("the Verto callee", vertoHeard, apiTone, vertoTone)
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n = len(bob.Events())
	if err := bob.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	v.waitEnded()
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	baresipHeard(t, bob, vertoTone, apiTone)
	e.idle()
}
