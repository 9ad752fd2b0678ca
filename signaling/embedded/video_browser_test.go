package embedded_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// Issue 14.1 through the control API: a page that asks to receive video (audio sendrecv +
// video recvonly, as @signalwire/js does) is never answered with a section that says it sends
// without naming its source, and hears its peer through the stream of its last ontrack event
// (what a client keeping one remote stream plays).

// wantVideo adds a recvonly video section to T.pc (after T.media) and keeps the stream of its
// last ontrack event.
const wantVideo = `async () => {
  T.pc.addTransceiver("video", {direction: "recvonly"});
  nkb.keepLastStream(T.pc);
}`

// lastHeard measures the stream of the last ontrack event.
const lastHeard = `async () => {
  await nkb.waitFor(() => T.pc.connectionState === "connected", 15000, 50, "connected");
  return nkb.heardStream(T.pc.nkbLastStream, T.pc, [1000, 600]);
}`

func lastHeardBy(ctx context.Context, t *testing.T, p *browsertest.Page) heard {
	t.Helper()
	var r heard
	if err := p.Eval(ctx, lastHeard, &r); err != nil {
		t.Fatalf("measure: %v; console:\n%s", err, strings.Join(p.Console(), "\n"))
	}
	return r
}

// checkVideoAnswer checks an answer to a page that sends no video.
func checkVideoAnswer(t *testing.T, who, sdp, want string) {
	t.Helper()
	if err := browsertest.CheckSources(sdp); err != nil {
		t.Errorf("%s: %v\n%s", who, err, sdp)
	}
	if got := browsertest.Direction(sdp, "video"); got != want {
		t.Errorf("%s: video %q, want %q\n%s", who, got, want, sdp)
	}
}

func TestBrowserAPIVideoOffered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600})

	t.Run("echo", func(t *testing.T) {
		e, url := browserEnv(t)
		p := b1.NewPage(ctx, url)
		defer p.Close(ctx)
		var ans string
		eval(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media();
			await (`+wantVideo+`)();
			const r = await T.api.send("media", "session", "start", {type: "echo", offer: {sdp: await T.offer()}});
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			T.sid = r.session_id;
			return r.answer.sdp;
		}`, &ans)
		checkVideoAnswer(t, "echo answer", ans, "inactive") // the caller's own video: none
		browsertest.CheckHeard(t, "echo", lastHeardBy(ctx, t, p), 1000, 600)
		eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		e.waitIdle("echo stopped")
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
			await (`+wantVideo+`)();
			const r = await T.api.send("media", "session", "start", {type: "proxy", offer: {sdp: await T.offer()}});
			T.sid = r.session_id;
			const c = await T.api.send("media", "call", "start", {type: "user", user: "bob", session_id: r.session_id, offer: r.offer});
			return c.call_id;
		}`, &callID)
		// B (audio only) gets the far offer: it must not say it sends video A does not send.
		var farOffer string
		evalArg(ctx, t, pb, `async (callID) => {
			const inv = await nkb.waitFor(() => T.invites.find((i) => i.call_id === callID), 10000, 50, "invite");
			await T.media();
			nkb.keepLastStream(T.pc);
			const sdp = await T.answerTo(inv.offer.sdp);
			await T.api.send("media", "call", "answered", {call_id: callID, answer: {sdp}});
			return inv.offer.sdp;
		}`, callID, &farOffer)
		checkVideoAnswer(t, "far offer", farOffer, "recvonly")
		var ans string
		eval(ctx, t, pa, `async () => {
			const ev = await T.api.waitEvent((ev) => ev.subclass === "session" && ev.type === "answer" && ev.obj_id === T.sid);
			await T.pc.setRemoteDescription({type: "answer", sdp: ev.body.answer.sdp});
			return ev.body.answer.sdp;
		}`, &ans)
		checkVideoAnswer(t, "caller answer", ans, "inactive") // B sends no video
		browsertest.CheckHeard(t, "caller A", lastHeardBy(ctx, t, pa), 600, 1000)
		browsertest.CheckHeard(t, "callee B", lastHeardBy(ctx, t, pb), 1000, 600)
		evalArg(ctx, t, pa, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, callID, nil)
		e.waitIdle("call hung up")
	})

	t.Run("proxy-rtp", func(t *testing.T) {
		e, url := browserEnv(t)
		p := b1.NewPage(ctx, url)
		defer p.Close(ctx)
		peer := newRTPPeer(t)
		var far struct {
			Offer struct {
				SDP string `json:"sdp"`
			} `json:"offer"`
		}
		eval(ctx, t, p, `async () => {
			await T.login("alice");
			await T.media();
			await (`+wantVideo+`)();
			const r = await T.api.send("media", "session", "start", {type: "proxy", proxy_type: "rtp", offer: {sdp: await T.offer()}});
			T.sid = r.session_id;
			return r;
		}`, &far)
		peer.UseSDP(far.Offer.SDP)
		var ans string
		evalArg(ctx, t, p, `async (sdp) => {
			const r = await T.api.send("media", "session", "set_answer", {session_id: T.sid, answer: {sdp, sdp_type: "rtp"}});
			await T.pc.setRemoteDescription({type: "answer", sdp: r.answer.sdp});
			return r.answer.sdp;
		}`, peer.SDP(""), &ans)
		checkVideoAnswer(t, "caller answer", ans, "inactive")
		tctx, tcancel := context.WithCancel(ctx)
		defer tcancel()
		go peer.SendToneFor(tctx, 0, "pcmu", 600, 20*time.Second)
		browsertest.CheckHeard(t, "browser", lastHeardBy(ctx, t, p), 600, 1000)
		pcm, n := peer.Heard()
		checkTone(t, "RTP peer", pcm, n, 1000, 600)
		eval(ctx, t, p, `T.api.send("media", "session", "stop", {session_id: T.sid})`, nil)
		e.waitIdle("proxy stopped")
	})
}
