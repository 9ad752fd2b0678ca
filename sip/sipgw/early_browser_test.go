package sipgw_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling/embedded"
)

// callDirect: a call with the browser's own WebRTC offer and no session of its own; the
// early answer of the ringing event is applied as the answer (the accepted event carries it
// again and is not applied twice).
const earlyJS = `
T.callDirect = async (target) => {
  await T.pc.setLocalDescription(await T.pc.createOffer());
  const offer = (await nkb.localSDP(T.pc)).sdp;
  const c = await T.api.send("media", "call", "start", Object.assign({offer: {sdp: offer}}, target));
  T.cid = c.call_id;
  const early = (e) => e.subclass === "call" && e.type === "ringing" && e.obj_id === T.cid && e.body.answer;
  await nkb.waitFor(() => T.api.events.find(early), 15000, 50, "early answer");
  await T.pc.setRemoteDescription({type: "answer", sdp: T.api.events.find(early).body.answer.sdp});
  return T.cid;
};
`

const earlyPage = `<!doctype html><html><head><meta charset="utf-8"><title>nkb early</title>
<script>` + pageJS + earlyJS + `</script></head><body></body></html>`

// TestEarlyMediaAdaptedToBrowser: a browser calls a SIP URL with its own WebRTC offer (no
// session of its own), so the SIP invitee is rung with an offer adapted to plain RTP by an
// auxiliary proxy session. The SIPp phone answers 183 with SDP and streams a 600 Hz tone for
// 6 s before its 200: the router applies the 183 answer to the auxiliary session and passes the
// resulting WebRTC answer in the ringing event, so the browser hears the tone while the call
// still rings; after the 200 it goes on hearing it. Without early media through the router the
// ringing event has no answer (an adapted call dropped it) and the page never connects.
func TestEarlyMediaAdaptedToBrowser(t *testing.T) {
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{page: earlyPage})
	base := peers.FreeUDPRange(t, 200)
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
		Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: e.log.With("component", "media-adapt")})
	if err != nil {
		t.Fatal(err)
	}
	auxB := embedded.New(aux, e.log)
	e.core.SetOfferAdapter(embedded.NewAdapter(auxB))
	t.Cleanup(func() { e.close(); auxB.Close(); _ = aux.Close() })

	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_early_tone.xml"), Calls: 1, Timeout: 40 * time.Second,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 600, 5) + ",-1,0"}})
	p := br.NewPage(ctx, e.base+"/page.html")
	defer p.Close(ctx)
	var cid string
	evalArg(ctx, t, p, `async (url) => { await T.login("alice"); await T.media("pcmu"); return await T.callDirect({type: "sip", url}); }`, "sip:bob@"+uas.Addr(), &cid)
	if n := auxB.Sessions(); n != 1 {
		t.Errorf("%d aux sessions, want 1 (the offer adapted for the SIP phone)", n)
	}
	browserHears(ctx, t, p, 600, 1000) // early media
	var accepted bool
	evalArg(ctx, t, p, `() => !!T.api.events.find((e) => e.type === "accepted")`, nil, &accepted)
	if accepted {
		t.Fatal("the call was accepted before the early media was measured (machine too slow?)")
	}
	var same bool
	evalArg(ctx, t, p, `() => T.api.waitEvent((e) => e.type === "accepted", 15000).then((ev) => ev.body.answer.sdp === T.api.events.find((e) => e.type === "ringing" && e.body.answer).body.answer.sdp)`, nil, &same)
	if !same {
		t.Error("the accepted event's answer is not the early answer the page applied")
	}
	browserHears(ctx, t, p, 600, 1000)
	evalArg(ctx, t, p, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, cid, nil)
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && auxB.Sessions() == 0
	})
}
