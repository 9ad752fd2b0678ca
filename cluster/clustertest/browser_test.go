package clustertest

import (
	"context"
	"strings"
	"testing"
	"time"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// pageJS is installed in every page (loaded from its node's /demo/, so that the page and the
// API share an origin): window.T, on top of browsertest's window.nkb.
const pageJS = `(() => { window.T = {
  async login(user, pass) {
    T.api = new nkb.ApiClient("ws://" + location.host + "/", {onRequest: (m) => {
      if (m.class === "media" && m.subclass === "call" && m.cmd === "invite") (T.invites = T.invites || []).push(m.data);
      return null;
    }});
    await T.api.open();
    await T.api.login(user, pass);
    return true;
  },
  async media() {
    T.local = await nkb.getUserMedia({});
    T.pc = nkb.newPC();
    T.remote = new MediaStream();
    T.pc.ontrack = (e) => T.remote.addTrack(e.track);
    for (const tr of T.local.getTracks()) T.pc.addTrack(tr, T.local);
  },
  async offer() {
    await T.pc.setLocalDescription(await T.pc.createOffer());
    return (await nkb.localSDP(T.pc)).sdp;
  },
  async answerTo(sdp) {
    await T.pc.setRemoteDescription({type: "offer", sdp});
    await T.pc.setLocalDescription(await T.pc.createAnswer());
    return (await nkb.localSDP(T.pc)).sdp;
  },
  async measure(ms) {
    await nkb.waitFor(() => T.pc.connectionState === "connected", 15000, 50, "connected");
    if (!T.playing) { nkb.playRemote(T.remote); T.playing = true; await nkb.sleep(500); }
    const audio = await nkb.measureAudio(T.remote, {ms: ms || 1500, freqs: [1000, 600]});
    const stats = await nkb.audioStats(T.pc);
    return {audio, stats};
  },
}; return true; })()`

// openPage opens node's demo page in b as user, logged in with the page's API client.
func openPage(ctx context.Context, t *testing.T, b *browsertest.Browser, node *peers.Node, user string) *browsertest.Page {
	t.Helper()
	p := b.NewPage(ctx, "http://"+node.APIAddr+"/demo/")
	t.Cleanup(func() { p.Close(context.Background()) })
	eval(ctx, t, p, pageJS, nil)
	evalArg(ctx, t, p, `([u, pw]) => T.login(u, pw)`, []string{user, password}, nil)
	return p
}

func eval(ctx context.Context, t *testing.T, p *browsertest.Page, js string, out any) {
	t.Helper()
	if err := p.Eval(ctx, js, out); err != nil {
		t.Fatalf("%.80s: %v; console:\n%s", js, err, strings.Join(p.Console(), "\n"))
	}
}

func evalArg(ctx context.Context, t *testing.T, p *browsertest.Page, js string, arg, out any) {
	t.Helper()
	if err := p.EvalArg(ctx, js, arg, out); err != nil {
		t.Fatalf("%.80s: %v; console:\n%s", js, err, strings.Join(p.Console(), "\n"))
	}
}

// measureBoth measures what both pages hear, at the same time.
func measureBoth(ctx context.Context, t *testing.T, pa, pb *browsertest.Page) (browsertest.Heard, browsertest.Heard) {
	t.Helper()
	var r [2]browsertest.Heard
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

// A browser on node 1 (alice, 1000 Hz) calls the user bob, whose browser (600 Hz) is logged
// in on node 2 only: a proxy session on node 1 (its media, its SDP), the call forwarded to
// node 2 over NATS, bob's answer back to node 1. Each hears the other's tone; alice's hangup
// reaches bob's page on node 2.
func TestCrossNodeBrowserCall(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nats := peers.StartNATS(t, peers.NATSOptions{})
	nodes := startNodes(t, nats.URL(), 2, "", false)
	b1 := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	b2 := browsertest.Launch(t, browsertest.Options{ToneHz: 600})
	pb := openPage(ctx, t, b2, nodes[1], "bob")
	admin := login(t, nodes[0], "admin", nkclient.Options{})
	waitUserOn(t, admin, "n1", "bob", "n2")
	pa := openPage(ctx, t, b1, nodes[0], "alice")

	var callID string
	eval(ctx, t, pa, `(async () => {
		await T.media();
		const r = await T.api.send("media", "session", "start", {type: "proxy", offer: {sdp: await T.offer()}});
		T.sid = r.session_id;
		const c = await T.api.send("media", "call", "start", {type: "user", user: "bob", session_id: r.session_id, offer: r.offer});
		return c.call_id;
	})()`, &callID)
	evalArg(ctx, t, pb, `async (callID) => {
		const inv = await nkb.waitFor(() => (T.invites || []).find((i) => i.call_id === callID), 10000, 50, "invite");
		await T.media();
		const sdp = await T.answerTo(inv.offer.sdp);
		await T.api.send("media", "call", "answered", {call_id: callID, answer: {sdp}});
	}`, callID, nil)
	eval(ctx, t, pa, `(async () => {
		const ev = await T.api.waitEvent((ev) => ev.subclass === "session" && ev.type === "answer" && ev.obj_id === T.sid);
		await T.pc.setRemoteDescription({type: "answer", sdp: ev.body.answer.sdp});
	})()`, nil)
	ra, rb := measureBoth(ctx, t, pa, pb)
	browsertest.CheckHeard(t, "alice on n1", ra, 600, 1000)
	browsertest.CheckHeard(t, "bob on n2", rb, 1000, 600)

	evalArg(ctx, t, pa, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, callID, nil)
	evalArg(ctx, t, pb, `(id) => T.api.waitEvent((ev) => ev.subclass === "call" && ev.type === "hangup" && ev.obj_id === id)`, callID, nil)
}
