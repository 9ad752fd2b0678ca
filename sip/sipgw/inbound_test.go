package sipgw_test

import (
	"context"
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
