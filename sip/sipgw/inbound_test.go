package sipgw_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
)

// TestSIPpEchoExtension: SIPp (a trunk on loopback) calls the echo extension
// with a PCMU tone stream; nkbridge answers with the embedded echo and the
// caller's RTP comes back to SIPp; SIPp's BYE stops the session.
func TestSIPpEchoExtension(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	type result struct {
		res *peers.SIPpResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
			Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"), Remote: e.addr, Service: "echo", Calls: 1,
			Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
			Args: []string{"-d", "3000"}, Timeout: 30 * time.Second,
		})
		done <- result{res, err}
	}()
	// While the call is up: one echo session whose caller leg receives and sends RTP.
	var in, out uint64
	waitFor(t, ctx, "echoed RTP", func() bool {
		for _, sid := range e.core.ListSessions() {
			if m, ok := e.be.Media(sid); ok && m.Type() == "echo" {
				st := m.Stats()[media.SideCaller]
				in, out = st.PacketsIn, st.PacketsOut
			}
		}
		return in >= 50 && out >= 50
	})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.ExitCode != 0 || r.res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp: exit %d stats %+v\n%s\n%s", r.res.ExitCode, r.res.Stats, r.res.Errors, r.res.Output)
	}
	t.Logf("echo: %d RTP packets in, %d echoed", in, out)
	waitFor(t, ctx, "session stopped after BYE", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

// TestSIPpDTMFAndHoldThroughGateway: SIPp (authenticated as alice) calls
// baresip through nkbridge with the sip- prefix (sip-bob@127.0.0.1:PORT).
// SIPp's INFO digit 5 reaches baresip as RFC 4733; baresip's RFC 4733 digit 7
// reaches SIPp as INFO (its SDP has no telephone-event); SIPp's re-INVITE
// sendonly is answered recvonly and puts the media on hold (no media timeout),
// sendrecv resumes it.
func TestSIPpDTMFAndHoldThroughGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{media: func(c *media.Config) { c.MediaTimeout = 2 * time.Second }})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600})
	type result struct {
		res *peers.SIPpResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
			Scenario: scenario(t, "uac_dtmf_hold.xml"), Remote: e.addr, Calls: 1,
			Service: fmt.Sprintf("sip-bob%%40127.0.0.1%%3A%d", bob.SIPPort()),
			Args:    []string{"-au", "alice", "-ap", alicePass}, Timeout: 45 * time.Second,
		})
		done <- result{res, err}
	}()
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	ev, _, err := bob.WaitEvent(ctx, "CALL_DTMF_START", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Param != "5" {
		t.Fatalf("baresip got DTMF %q, want 5", ev.Param)
	}
	if _, err := bob.Command(ctx, "sndcode", "7"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := bob.Command(ctx, "sndcode", ""); err != nil { // key release
		t.Logf("sndcode release: %v", err)
	}
	var held *embeddedMediaHeld
	waitFor(t, ctx, "media on hold", func() bool {
		held = findHeld(e)
		return held != nil && held.held
	})
	// SIPp sends no RTP while held, longer than the media timeout: the session must survive.
	time.Sleep(2500 * time.Millisecond)
	if h := findHeld(e); h == nil || !h.held {
		t.Fatalf("held session gone or resumed early: %+v", h)
	}
	waitFor(t, ctx, "media resumed", func() bool { h := findHeld(e); return h != nil && !h.held })
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.ExitCode != 0 || r.res.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp: exit %d stats %+v\n%s\n%s", r.res.ExitCode, r.res.Stats, r.res.Errors, r.res.Output)
	}
	waitFor(t, ctx, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

type embeddedMediaHeld struct {
	id   string
	held bool
}

// findHeld returns the hold state of the (one) proxy session.
func findHeld(e *env) *embeddedMediaHeld {
	for _, sid := range e.core.ListSessions() {
		if m, ok := e.be.Media(sid); ok && m.Type() == "proxy" {
			return &embeddedMediaHeld{id: sid, held: m.Held()}
		}
	}
	return nil
}
