package sipgw_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// dialogOf reads the Call-ID and the two tags of the answered INVITE dialog from a SIPp
// message trace (-trace_msg): what a Replaces naming that dialog carries.
func dialogOf(t *testing.T, trace string) (callID, localTag, remoteTag string) {
	t.Helper()
	var out string
	peers.WaitFor(t, waitLimit, "the 200 to the INVITE in "+trace, func() bool {
		b, _ := os.ReadFile(trace)
		for _, m := range strings.Split(string(b), "----------------------------------------------") {
			if strings.Contains(m, "SIP/2.0 200 OK") && strings.Contains(m, "INVITE") && strings.Contains(m, "CSeq: 2 INVITE") {
				out = m
				return true
			}
		}
		return false
	})
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s not in\n%s", re, out)
		}
		return m[1]
	}
	return find(`(?m)^Call-ID:\s*(\S+)`), find(`(?m)^To:.*;tag=([^;>\s]+)`), find(`(?m)^From:.*;tag=([^;>\s]+)`)
}

// holdCall starts SIPp as alice calling target through nkbridge (until nkbridge hangs up)
// and returns it with the Replaces value naming its dialog.
func holdCall(t *testing.T, e *env, target string) (*peers.SIPp, string) {
	trace := filepath.Join(t.TempDir(), "a2.log")
	a2 := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uac_call_until_bye.xml"), Remote: e.addr,
		Service: "sip-carol%40" + target, Calls: 1, Timeout: 45 * time.Second,
		Args: []string{"-au", "alice", "-ap", alicePass, "-trace_msg", "-message_file", trace}})
	callID, ourTag, aliceTag := dialogOf(t, trace)
	return a2, callID + ";to-tag=" + ourTag + ";from-tag=" + aliceTag
}

// TestSIPpReferAttended: attended transfer (REFER with Refer-To ...?Replaces=, RFC 3891).
// Alice (SIPp, digest) holds two calls through nkbridge: one to carol (a SIPp phone, the
// "consultation" call) and one to bob (another SIPp phone). On bob's call she REFERs with a
// Refer-To whose Replaces names her call to carol: nkbridge answers 202, NOTIFY 100, re-INVITEs
// bob toward the media of carol's call, NOTIFY 200, then BYEs both of alice's dialogs. Bob
// then hangs up and carol gets BYE: bob and carol were in one call. Without Replaces support
// the REFER gets 501 (or the scenarios time out).
func TestSIPpReferAttended(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	carol := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transfer_target.xml"), Calls: 1, Timeout: 45 * time.Second})
	a2, replaces := holdCall(t, e, carol.Addr())
	bob := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transferee.xml"), Calls: 1, Timeout: 45 * time.Second})
	a1 := <-startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_refer_blind.xml"), Remote: e.addr, Service: "sip-bob%40" + bob.Addr(), Calls: 1,
		Keys: map[string]string{"refer_to": "sip:carol@" + e.addr + "?Replaces=" + url.QueryEscape(replaces)},
		Args: []string{"-au", "alice", "-ap", alicePass}, Timeout: 40 * time.Second,
	})
	a1.check(t, 1)
	for name, p := range map[string]*peers.SIPp{"alice's other call": a2, "bob": bob, "carol": carol} {
		if r, err := p.Wait(ctx); err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls+r.Stats.IncomingCalls == 0 {
			t.Fatalf("sipp %s: %v %+v", name, err, r)
		}
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && sipgw.LegCount(e.gw) == 0
	})
}

// TestSIPpInviteReplaces: INVITE with Replaces (RFC 3891). Alice (SIPp, digest) calls carol
// through nkbridge; then alice, from another device (another SIPp, same user), sends an INVITE
// whose Replaces names the first dialog: nkbridge answers it with the media of that call's
// place, BYEs the first device, and when the new device hangs up, carol gets BYE. Without
// Replaces support the INVITE is routed as a new call to its Request-URI user and the first
// device never gets its BYE.
func TestSIPpInviteReplaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	carol := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transfer_target.xml"), Calls: 1, Timeout: 45 * time.Second})
	first, replaces := holdCall(t, e, carol.Addr())
	x := <-startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_invite_replaces.xml"), Remote: e.addr, Service: "nobody", Calls: 1,
		Keys: map[string]string{"replaces": replaces},
		Args: []string{"-au", "alice", "-ap", alicePass}, Timeout: 40 * time.Second,
	})
	x.check(t, 1)
	for name, p := range map[string]*peers.SIPp{"first device": first, "carol": carol} {
		if r, err := p.Wait(ctx); err != nil || r.ExitCode != 0 {
			t.Fatalf("sipp %s: %v %+v", name, err, r)
		}
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && sipgw.LegCount(e.gw) == 0
	})
}

// TestSIPpInviteReplacesRefused: an INVITE whose Replaces names another user's call (bob, digest,
// replacing alice's dialog) gets 403, one naming no dialog 481; alice's call is untouched: when
// nkbridge hangs it up, alice's device and carol both get their BYE.
func TestSIPpInviteReplacesRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	carol := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transfer_target.xml"), Calls: 1, Timeout: 45 * time.Second})
	first, replaces := holdCall(t, e, carol.Addr())
	for _, c := range []struct{ scen, user, pass, replaces string }{
		{"uac_invite_replaces_403.xml", "bob", bobPass, replaces},
		{"uac_invite_replaces_481.xml", "alice", alicePass, "nosuchcall@x;to-tag=1;from-tag=2"},
	} {
		r := <-startSIPp(ctx, t, peers.SIPpOptions{Scenario: scenario(t, c.scen), Remote: e.addr, Service: "nobody", Calls: 1,
			Keys: map[string]string{"replaces": c.replaces}, Args: []string{"-au", c.user, "-ap", c.pass}, Timeout: 30 * time.Second})
		r.check(t, 1)
	}
	if m := e.core.ListCalls(); len(m) != 1 {
		t.Fatalf("calls after the refused replacements: %v, want alice's only", m)
	}
	// The call is still whole: hang it up from nkbridge's side and both devices get BYE.
	for _, id := range e.core.ListCalls() {
		_ = e.core.HangupCall(id, nil)
	}
	for name, p := range map[string]*peers.SIPp{"alice": first, "carol": carol} {
		if r, err := p.Wait(ctx); err != nil || r.ExitCode != 0 {
			t.Fatalf("sipp %s: %v %+v", name, err, r)
		}
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && sipgw.LegCount(e.gw) == 0
	})
}
