package sipgw_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// derivedScenario writes a copy of testdata/sipp/name with the first old replaced by new.
func derivedScenario(t *testing.T, name, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(scenario(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", name, old)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A carrier's call (trunk network) with P-Asserted-Identity to registered user bob: bob's
// device sees the asserted caller (number and name) in From, not the carrier's From.
func TestSIPpAssertedIdentityReachesCallee(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback, gw: func(g *sipgw.Config) { g.UserFarSide = "auto" }})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: derivedScenario(t, "uas_answer.xml",
		`<ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote_from"/>`,
		`<ereg regexp="^ *&quot;Carrier Alice&quot; &lt;sip:\+15551230000@.*" search_in="hdr" header="From:" check_it="true" assign_to="remote_from"/>`),
		Calls: 1, Timeout: 30 * time.Second})
	registerAt(t, ctx, e, "bob", bobPass, uas.Port())
	uac, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{Scenario: derivedScenario(t, "uac_early_far_bye.xml",
		"      Max-Forwards: 70\n", "      Max-Forwards: 70\n      P-Asserted-Identity: \"Carrier Alice\" <sip:+15551230000@carrier.example;user=phone>\n"),
		Remote: e.addr, Service: "bob", Calls: 1, Timeout: 30 * time.Second})
	if err != nil || uac.ExitCode != 0 || uac.Stats.SuccessfulCalls != 1 {
		t.Fatalf("uac: %v %+v\n%s", err, uac, uac.Errors)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls != 1 {
		t.Fatalf("uas (checks From): %v %+v\n%s", err, r, r.Errors)
	}
}
