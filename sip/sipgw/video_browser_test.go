package sipgw_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// Issue 14.1 between a browser (control API) asking to receive video (audio sendrecv + video
// recvonly, as @signalwire/js does) and a SIP phone (baresip, audio only): nothing the page is
// given says it sends without naming its source, and the page hears the phone through the
// stream of its last ontrack event (what a client keeping one remote stream plays).

// videoSetup makes T.pc ask for video (after T.media) and keep its last ontrack stream.
const videoSetup = `() => {
  T.pc.addTransceiver("video", {direction: "recvonly"});
  nkb.keepLastStream(T.pc);
}`

const lastStreamHeard = `async () => {
  await nkb.waitFor(() => T.pc.connectionState === "connected", 15000, 50, "connected");
  return nkb.heardStream(T.pc.nkbLastStream, T.pc, [1000, 600]);
}`

func checkNoSourcelessSend(t *testing.T, who, sdp string) {
	t.Helper()
	if err := browsertest.CheckSources(sdp); err != nil {
		t.Errorf("%s: %v\n%s", who, err, sdp)
	}
	if d := browsertest.Direction(sdp, "video"); d == "sendrecv" || d == "sendonly" {
		t.Errorf("%s: video %s, but the phone sends no video\n%s", who, d, sdp)
	}
}

// bothHear checks the page hears the phone's 600 Hz through its last ontrack stream, and the
// phone hears something (its recording is checked after the call).
func bothHear(ctx context.Context, t *testing.T, p *browsertest.Page, bob *peers.Baresip) {
	t.Helper()
	var h heard
	evalArg(ctx, t, p, lastStreamHeard, nil, &h)
	browsertest.CheckHeard(t, "browser", h, 600, 1000)
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserVideoOfferedAndBaresip(t *testing.T) {
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})

	t.Run("browser-calls-sip-url", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e := newEnv(t, envOpts{page: testPage})
		bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: "pcmu", ToneHz: 600})
		p := br.NewPage(ctx, e.base+"/page.html")
		defer p.Close(ctx)
		var cid string
		evalArg(ctx, t, p, `async (url) => { await T.login("alice"); await T.media("pcmu"); (`+videoSetup+`)(); return await T.call({type: "sip", url}); }`,
			bob.URI(), &cid)
		var ans string
		evalArg(ctx, t, p, `() => T.pc.remoteDescription.sdp`, nil, &ans)
		checkNoSourcelessSend(t, "answer to the browser", ans)
		if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
			t.Fatal(err)
		}
		bothHear(ctx, t, p, bob)
		n := len(bob.Events())
		evalArg(ctx, t, p, `(id) => T.api.send("media", "call", "hangup", {call_id: id})`, cid, nil)
		if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
			t.Fatal(err)
		}
		baresipHeard(t, bob, 1000, 600)
		peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
	})

	t.Run("sip-calls-web-user", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e := newEnv(t, envOpts{page: testPage})
		p := br.NewPage(ctx, e.base+"/page.html")
		defer p.Close(ctx)
		evalArg(ctx, t, p, `async () => { await T.login("carol"); await T.media("pcmu"); nkb.keepLastStream(T.pc); T.autoAccept = true; return true; }`, nil, nil)
		bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: "pcmu", ToneHz: 600,
			Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
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
		if !strings.HasPrefix(sdps["offer"], "v=0") {
			t.Fatalf("no offer recorded (%q)", answered)
		}
		checkNoSourcelessSend(t, "offer to the browser", sdps["offer"])
		bothHear(ctx, t, p, bob)
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
