package peers_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// TestSIPpUACAgainstUAS runs SIPp's built-in uac against its built-in uas on loopback: every
// call completes on both sides.
func TestSIPpUACAgainstUAS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const calls = 5
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: "uas", Calls: calls, Timeout: 30 * time.Second})
	uac, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: "uac", Remote: uas.Addr(), Calls: calls, Rate: 10, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("uac: %v", err)
	}
	if uac.ExitCode != 0 || uac.Stats.SuccessfulCalls != calls || uac.Stats.FailedCalls != 0 || uac.Stats.OutgoingCalls != calls {
		t.Fatalf("uac: exit %d, stats %+v\nerrors: %s\n%s", uac.ExitCode, uac.Stats, uac.Errors, uac.Output)
	}
	srv, err := uas.Wait(ctx)
	if err != nil {
		t.Fatalf("uas: %v", err)
	}
	if srv.ExitCode != 0 || srv.Stats.IncomingCalls != calls || srv.Stats.SuccessfulCalls != calls {
		t.Fatalf("uas: exit %d, stats %+v\nerrors: %s", srv.ExitCode, srv.Stats, srv.Errors)
	}
}

// TestSIPpFailure checks that failures are reported: a uac calling a port where nobody
// answers times out and exits non-zero with failed calls counted.
func TestSIPpFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dead := peers.FreeUDPPort(t) // nobody listens there
	res, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: "uac", Remote: "127.0.0.1:" + strconv.Itoa(dead), Calls: 1,
		RecvTimeout: 500 * time.Millisecond, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("uac: %v", err)
	}
	if res.ExitCode == 0 || res.Stats.FailedCalls != 1 || res.Stats.SuccessfulCalls != 0 {
		t.Fatalf("uac to a dead port: exit %d, stats %+v", res.ExitCode, res.Stats)
	}
}

func TestParseSIPpStats(t *testing.T) {
	csv := "StartTime;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(C);OutgoingCall(C)\n" +
		"2026-01-01\t00:00:00.0 1.0;1;1;1;0;1\n" +
		"2026-01-01\t00:00:01.0 2.0;0;2;3;1;4\n"
	st, err := peers.ParseSIPpStats(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if st.SuccessfulCalls != 3 || st.FailedCalls != 1 || st.OutgoingCalls != 4 || st.CurrentCalls != 0 || st.Int("SuccessfulCall(P)") != 2 {
		t.Errorf("stats %+v", st)
	}
	for _, bad := range []string{"", "only;a;header\n"} {
		if _, err := peers.ParseSIPpStats(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseSIPpStats(%q): no error", bad)
		}
	}
}

// TestSIPpCustomScenario runs XML scenarios (-sf) with a -key value checked by the server.
func TestSIPpCustomScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: "testdata/sipp/options-uas.xml", Calls: 3, Timeout: 20 * time.Second})
	uac, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: "testdata/sipp/options-uac.xml", Remote: uas.Addr(), Service: "echo", Calls: 3, Rate: 20,
		Keys: map[string]string{"probe": "nkb-42"}, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if uac.ExitCode != 0 || uac.Stats.SuccessfulCalls != 3 {
		t.Fatalf("uac: exit %d, stats %+v\n%s\n%s", uac.ExitCode, uac.Stats, uac.Errors, uac.Output)
	}
	srv, err := uas.Wait(ctx)
	if err != nil || srv.ExitCode != 0 || srv.Stats.SuccessfulCalls != 3 {
		t.Fatalf("uas: %v, %+v", err, srv)
	}

	// A wrong key value makes the server's regexp check fail the calls.
	uas2 := peers.StartSIPp(t, peers.SIPpOptions{Scenario: "testdata/sipp/options-uas.xml", Calls: 1, Timeout: 10 * time.Second})
	_, _ = peers.RunSIPp(ctx, t, peers.SIPpOptions{
		Scenario: "testdata/sipp/options-uac.xml", Remote: uas2.Addr(), Calls: 1,
		Keys: map[string]string{"probe": "wrong"}, RecvTimeout: time.Second, Timeout: 10 * time.Second,
	})
	srv2, err := uas2.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if srv2.ExitCode == 0 || srv2.Stats.SuccessfulCalls != 0 {
		t.Errorf("uas accepted a wrong probe: exit %d, %+v", srv2.ExitCode, srv2.Stats)
	}
}
