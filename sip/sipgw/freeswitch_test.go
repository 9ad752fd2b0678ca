package sipgw_test

import (
	"context"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/fsbridge"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// withFreeSWITCH serves park on the fake FreeSWITCH (fsbridge on the env's engine).
func withFreeSWITCH(t *testing.T, e *env) (*fakefs.Server, *fakefs.SIPAgent) {
	t.Helper()
	const password = "ClueCon-test"
	fs, err := fakefs.Start(fakefs.Options{Password: password, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := fakefs.StartSIP(fs, fakefs.SIPOptions{Logger: e.log})
	if err != nil {
		fs.Close()
		t.Fatal(err)
	}
	svc, err := fsbridge.Start(context.Background(), fsbridge.Config{ESLAddr: fs.Addr(), Password: password,
		SIPAddr: agent.Addr(), Engine: e.eng, Rooms: e.core.Bus(), Logger: e.log})
	if err != nil {
		agent.Close()
		fs.Close()
		t.Fatal(err)
	}
	e.closeBackends = append(e.closeBackends, func() { svc.Close(); agent.Close(); fs.Close() })
	e.core.Backends().Register("freeswitch", svc.Backend, fsbridge.Types()...)
	e.core.Backends().SetDefault(signaling.TypePark, "freeswitch")
	peers.WaitFor(t, 5*time.Second, "Event Socket connected", svc.Client().Connected)
	return fs, agent
}

// TestSIPDTMFAndHoldOnFreeSWITCH: a SIP trunk call to the park extension served by FreeSWITCH
// gets in-dialog features by the same path as on the embedded engine (the session's
// capabilities): SIPp's INFO digit 5 reaches FreeSWITCH's channel as RFC 2833 and its
// re-INVITEs hold (answered recvonly) and resume (sendrecv).
func TestSIPDTMFAndHoldOnFreeSWITCH(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	fs, agent := withFreeSWITCH(t, e)
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_info_hold.xml"), Remote: e.addr, Calls: 1, Service: "park",
		Timeout: 45 * time.Second,
	})
	// The digit, read from the channel while the call lasts (SIPp holds and resumes it after
	// the INFO).
	var digits string
	var r *sippRun
	peers.WaitFor(t, waitLimit, "a digit at FreeSWITCH's channel, or the end of the call", func() bool {
		for _, ch := range fs.Channels() {
			if d := agent.Digits(ch.UUID); d != "" {
				digits = d
			}
		}
		if digits != "" {
			return true
		}
		select {
		case x := <-done:
			r = &x
			return true
		default:
			return false
		}
	})
	if digits != "5" {
		t.Fatalf("FreeSWITCH's channel received digits %q, want 5", digits)
	}
	if r == nil {
		x := <-done
		r = &x
	}
	r.check(t, 1)
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}
