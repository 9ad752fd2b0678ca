package sipgw_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/browsertest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// A web agent transfers a SIP caller to another web agent (media/call/transfer): baresip
// (600 Hz) calls carol's page (Chromium at 1000 Hz), carol transfers the call to dave (another
// Chromium, at 800 Hz). nkbridge re-INVITEs baresip into a new session whose far side is
// dave's; dave hears the caller's 600 Hz, baresip hears dave's 800 Hz at the end of its
// recording, carol's call ends with "Transferred to dave". Before that, a transfer to a SIP URL
// carol may not call is refused (1030) and the call goes on.
// Without the feature the transfer command is unknown (1041).
func TestBrowserAgentTransfersSIPCaller(t *testing.T) {
	brCarol := browsertest.Launch(t, browsertest.Options{ToneHz: 1000})
	brDave := browsertest.Launch(t, browsertest.Options{ToneHz: 800})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{page: testPage})
	carol := brCarol.NewPage(ctx, e.base+"/page.html")
	defer carol.Close(ctx)
	dave := brDave.NewPage(ctx, e.base+"/page.html")
	defer dave.Close(ctx)
	for _, p := range []*browsertest.Page{carol, dave} {
		user := "carol"
		if p == dave {
			user = "dave"
		}
		evalArg(ctx, t, p, `async (u) => { await T.login(u); await T.media("pcmu"); T.autoAccept = true; return true; }`, user, nil)
	}
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", Codec: "pcmu", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
	if err := bob.Dial(ctx, "sip:carol@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	var oldCall string
	evalArg(ctx, t, carol, `() => nkb.waitFor(() => T.answered || T.acceptError, 10000).then(() => T.answered || T.acceptError)`, nil, &oldCall)
	browserHears(ctx, t, carol, 600, 1000)

	// A target carol may not call (she is no SIP user with the right to call SIP URLs): 1030,
	// and the call goes on.
	var refused struct {
		Code int    `json:"code"`
		Text string `json:"error"`
	}
	evalArg(ctx, t, carol, `(id) => T.api.send("media", "call", "transfer", {call_id: id, target: "sip:nobody@127.0.0.1:9"}).then(() => ({code: 0}), (e) => ({code: e.code, error: String(e.message || e)}))`, oldCall, &refused)
	if refused.Code != signaling.CodeUnauthorized {
		t.Fatalf("transfer to a SIP URL carol may not call: %+v, want 1030", refused)
	}
	browserHears(ctx, t, carol, 600, 1000)

	var reply struct {
		CallID string `json:"call_id"`
	}
	evalArg(ctx, t, carol, `(id) => T.api.send("media", "call", "transfer", {call_id: id, target: "dave"})`, oldCall, &reply)
	if reply.CallID == "" || reply.CallID == oldCall {
		t.Fatalf("transfer reply %+v (old call %s)", reply, oldCall)
	}
	var hang map[string]any
	evalArg(ctx, t, carol, `(id) => T.api.waitEvent((e) => e.type === "hangup" && e.obj_id === id, 10000).then((e) => e.body)`, oldCall, &hang)
	if hang["reason"] != "Transferred to dave" || int(hang["code"].(float64)) != signaling.CodeUserStop {
		t.Errorf("carol's call ended with %v, want 1013 Transferred to dave", hang)
	}
	var daveCall string
	evalArg(ctx, t, dave, `() => nkb.waitFor(() => T.answered || T.acceptError, 10000).then(() => T.answered || T.acceptError)`, nil, &daveCall)
	if daveCall != reply.CallID {
		t.Errorf("dave answered %q, the transfer's call is %q", daveCall, reply.CallID)
	}
	browserHears(ctx, t, dave, 600, 1000)
	if _, ok := e.core.LookupCall(oldCall); ok {
		t.Errorf("the old call %s is still there", oldCall)
	}
	// baresip talks to dave now: its newest audio is dave's 800 Hz.
	peers.WaitFor(t, waitLimit, "baresip hears dave", func() bool {
		s, rate, err := bob.Heard()
		if err != nil || len(s) < 2*rate {
			return false
		}
		tail := s[len(s)-rate:]
		f, ratio := audiotest.Dominant(tail, float64(rate), 800, 1000, 600)
		return f == 800 && ratio > 10 && audiotest.RMS(tail) > 300
	})
	n := len(bob.Events())
	if err := bob.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	evalArg(ctx, t, dave, `(id) => T.api.waitEvent((e) => e.type === "hangup" && e.obj_id === id, 10000).then(() => true)`, reply.CallID, nil)
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
}
