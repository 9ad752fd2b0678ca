package vertogw

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

const sipBobPass = "bob-sip-secret"

// withSIP adds nkbridge's SIP side (SIP server + SIP glue on the same core and media engine),
// with SIP user bob, and makes "user" calls to users whose only devices are SIP registrations
// use a plain-RTP far side. It returns the SIP address.
func (e *env) withSIP() (*sip.Server, string) {
	e.t.Helper()
	port := peers.FreePort(e.t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	gw, err := sipgw.New(sipgw.Config{Domains: []string{"127.0.0.1", addr}, RingTime: 15 * time.Second},
		sipgw.Options{Logger: e.log, Core: e.core})
	if err != nil {
		e.t.Fatal(err)
	}
	srv, err := sip.New(sip.Config{
		Listen:          []sip.Listen{{Transport: "udp", Addr: addr}, {Transport: "tcp", Addr: addr}},
		Users:           []sip.User{{Name: "bob", Password: sipBobPass}, {Name: "alice", Password: "x", CanCallSIP: true}},
		OutboundDomains: []string{"127.0.0.1"},
		Limits:          sip.Limits{RequestsPerSecond: 1e4, Burst: 1e4},
	}, sip.Options{Logger: e.log.With("component", "sip"), Handler: gw})
	if err != nil {
		e.t.Fatal(err)
	}
	gw.Attach(srv)
	if err := srv.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.gw.cfg.FarKind = func(r Route) string {
		if r.CallType == "user" && len(srv.Registrar().Lookup(r.Callee)) > 0 && len(e.srv.Sessions(r.Callee)) == 0 {
			return "rtp"
		}
		return ""
	}
	e.t.Cleanup(func() { // before env.close (cleanups run last-in first-out)
		gw.Drain()
		e.core.Close()
		gw.Close()
		_ = srv.Close()
	})
	return srv, addr
}

func baresipHeard(t *testing.T, b *peers.Baresip, want, other float64) {
	t.Helper()
	samples, rate, err := b.Heard()
	if err != nil {
		t.Fatalf("baresip recording: %v", err)
	}
	if len(samples) < rate {
		t.Fatalf("baresip heard only %d samples", len(samples))
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), want, other)
	t.Logf("baresip heard %.1f s: %.0f Hz (ratio %.1f), rms %.0f", float64(len(samples))/float64(rate), f, ratio, audiotest.RMS(tail))
	if f != want || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Fatalf("baresip heard %.0f Hz (ratio %.1f, rms %.0f), want %v Hz", f, ratio, audiotest.RMS(tail), want)
	}
}

// registeredBob starts baresip (apiTone, PCMU, auto-answer) registered as SIP user bob.
func registeredBob(t *testing.T, srv *sip.Server, addr string) *peers.Baresip {
	t.Helper()
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: apiTone,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=pcmu", addr, sipBobPass)})
	// (baresip may report REGISTER_OK before its control socket is read: watch the registrar.)
	peers.WaitFor(t, 20*time.Second, "baresip registered as bob", func() bool { return len(srv.Registrar().Lookup("bob")) == 1 })
	return bob
}

// TestBrowserVertoAndBaresip: a Verto client calls a SIP phone registered as user bob
// (baresip, auto-answer) and is called by it; audio is checked both ways each time, and each
// side hangs up once.
func TestBrowserVertoAndBaresip(t *testing.T) {
	e := newEnv(t, envOpts{})
	srv, addr := e.withSIP()
	e.withAssets()
	v := e.browser(vertoTone, "/page")
	v.vertoLogin("alice")
	ctx := testCtx(t, 120*time.Second)

	bob := registeredBob(t, srv, addr)

	// 1. Verto → the registered phone (call type user, plain-RTP far side), Verto hangs up.
	v.vertoCall("bob")
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	v.waitState("active")
	v.hears(swMeasure, apiTone)
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

	// 2. The phone calls the Verto user; the client rings with bob's caller id, answers, and
	// the phone hangs up.
	n = len(bob.Events())
	if err := bob.Dial(ctx, "sip:alice@"+addr); err != nil {
		t.Fatal(err)
	}
	v.waitState("ringing")
	var num string
	v.eval(`window.call.options.remoteCallerNumber`, &num)
	if num != "bob" {
		t.Fatalf("SW shows caller number %q, want bob", num)
	}
	v.eval(`window.call.answer(), true`, nil)
	v.waitState("active")
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", n); err != nil {
		t.Fatal(err)
	}
	v.hears(swMeasure, apiTone)
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

func sippScenario(t *testing.T, name string) string {
	return filepath.Join(peers.RepoRoot(t), "testdata", "sipp", name)
}

// TestVertoCallsSIPp: a Verto client (Go, SW-shaped) calls SIP URLs served by SIPp through the
// SIP glue: 183 with SDP becomes verto.media (the session's answer for the page), 200 then
// verto.answer, the phone's BYE verto.bye; a 486 ends the call with USER_BUSY.
func TestVertoCallsSIPp(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withSIP()
	c := e.dial("alice")
	ctx := testCtx(t, 40*time.Second)

	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: sippScenario(t, "uas_answer.xml"), Calls: 1, Timeout: 30 * time.Second})
	id := uuid.NewString()
	if m, err := c.Invite(ctx, id, "sip:bob@"+uas.Addr(), pionOffer(t)); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	media := next(t, c, "verto.media")
	if media.Str("callID") != id || !strings.Contains(media.Str("sdp"), "a=fingerprint:") {
		t.Fatalf("verto.media %+v", media.Params)
	}
	if ans := next(t, c, "verto.answer"); ans.Str("callID") != id || ans.Str("sdp") != "" {
		t.Fatalf("verto.answer %+v", ans.Params)
	}
	if bye := next(t, c, "verto.bye"); bye.Str("callID") != id || bye.Str("cause") != "NORMAL_CLEARING" {
		t.Fatalf("verto.bye %+v", bye.Params)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	e.idle()

	busy := peers.StartSIPp(t, peers.SIPpOptions{Scenario: sippScenario(t, "uas_busy.xml"), Calls: 1, Timeout: 30 * time.Second})
	id = uuid.NewString()
	if m, err := c.Invite(ctx, id, "sip-bob@"+busy.Addr(), pionOffer(t)); err != nil || m.Code() != 0 {
		t.Fatalf("invite: %v %+v", err, m)
	}
	if bye := next(t, c, "verto.bye"); bye.Str("callID") != id || bye.Str("cause") != "USER_BUSY" {
		t.Fatalf("verto.bye %+v", bye.Params)
	}
	if r, err := busy.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	e.idle()
}
