package sipgw_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// TestBaresipReferToBrowser: a real SIP phone transfers with REFER. baresip "bob" (600 Hz)
// calls alice, a baresip phone registered with nkbridge (auto answer); alice's phone then
// transfers the call (baresip's blind transfer, REFER) to the web user dave (Chromium at
// 1000 Hz, auto accept). nkbridge moves bob into a new call to dave: dave hears bob's 600 Hz,
// alice's phone is released (its call closes), and bob's BYE ends dave's call. Without REFER
// support alice's REFER is refused (405) and dave is never rung.
func TestBaresipReferToBrowser(t *testing.T) {
	br := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{page: testPage, gw: func(c *sipgw.Config) { c.UserFarSide = "auto" }})
	dave := br.NewPage(ctx, e.base+"/page.html")
	defer dave.Close(ctx)
	evalArg(ctx, t, dave, `async () => { await T.login("dave"); await T.media("pcmu"); T.autoAccept = true; return true; }`, nil, nil)
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 800,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	peers.WaitFor(t, waitLimit, "alice registered", func() bool { return len(e.srv.Registrar().Lookup("alice")) == 1 })
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
	if err := bob.Dial(ctx, "sip:alice@"+e.addr); err != nil {
		t.Fatal(err)
	}
	ectx, ecancel := context.WithTimeout(ctx, 20*time.Second)
	defer ecancel()
	if _, _, err := alice.WaitEvent(ectx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	n := len(alice.Events())
	if _, err := alice.Command(ctx, "transfer", "sip:dave@"+e.addr); err != nil {
		t.Fatal(err)
	}
	var answered string
	evalArg(ctx, t, dave, `() => nkb.waitFor(() => T.answered || T.acceptError, 20000).then(() => T.answered || T.acceptError)`, nil, &answered)
	browserHears(ctx, t, dave, 600, 1000)
	if _, _, err := alice.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatalf("alice's phone not released: %v", err)
	}
	m := len(bob.Events())
	if err := bob.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", m); err != nil {
		t.Fatal(err)
	}
	evalArg(ctx, t, dave, `(id) => T.api.waitEvent((e) => e.type === "hangup" && e.obj_id === id, 10000).then(() => true)`, answered, nil)
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
}
