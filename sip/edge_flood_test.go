package sip

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/sip/registrar"
)

// floodRun has user flood callee with n calls from SIPp at 100 calls/s, each answered 603 by
// the handler if it gets through, and returns SIPp's message log.
func floodRun(t *testing.T, s *Server, user, pass, callee string, n int) string {
	t.Helper()
	r := startSIPp(t, "uac_invite_flood.xml", s.target("udp"), "-s", callee, "-au", user, "-ap", pass,
		"-key", "caller", user, "-m", strconv.Itoa(n), "-r", "100", "-l", strconv.Itoa(n))
	r.wait(t)
	msgs, err := os.ReadFile(filepath.Join(r.dir, "msg.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(msgs)
}

// declineAll is a handler that counts the calls that reach it and declines them.
func declineAll(reached *atomic.Int64) *recorder {
	r := newRecorder(func(c *Call) { reached.Add(1); _ = c.Reject(603, "Decline") })
	r.calls = make(chan *Call, 100)
	return r
}

// TestEdgeInviteFlood (issue 13.10c): one user's burst of 30 calls to another is cut at the
// per-caller rate (503 naming sip.caller_invite_rate) or at the callee's (486 naming
// sip.callee_invite_rate): the victim's handler sees only the burst, and a call outside the
// limit that tripped (another caller, another callee) still goes through.
func TestEdgeInviteFlood(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		callerBurst, calleeBurst int
		refusal                  string
		user, pass, callee       string // the call that must still pass
	}{
		{"per caller", 5, 1000, "SIP/2.0 503 Service Unavailable (too many calls from alice: sip.caller_invite_rate)", "bob", "hunter2", "victim"},
		{"per callee", 1000, 5, "SIP/2.0 486 Busy Here (too many calls to this callee: sip.callee_invite_rate)", "alice", "secret", "someone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Limits.CallerInviteRate, cfg.Limits.CallerInviteBurst = 1, tc.callerBurst
			cfg.Limits.CalleeInviteRate, cfg.Limits.CalleeInviteBurst = 1, tc.calleeBurst
			var reached atomic.Int64
			s := startServer(t, cfg, declineAll(&reached))
			msgs := floodRun(t, s, "alice", "secret", "victim", 30)
			declined, refused := strings.Count(msgs, "SIP/2.0 603 "), strings.Count(msgs, tc.refusal)
			t.Logf("flood of 30: %d reached the callee, %d refused", declined, refused)
			if declined < 5 || declined > 7 || declined+refused != 30 || reached.Load() != int64(declined) {
				t.Fatalf("declined %d refused %d reached %d", declined, refused, reached.Load())
			}
			if msgs := floodRun(t, s, tc.user, tc.pass, tc.callee, 1); strings.Count(msgs, "SIP/2.0 603 ") != 1 {
				t.Fatalf("%s calling %s was refused:\n%s", tc.user, tc.callee, msgs)
			}
		})
	}
}

// TestEdgeCallsPerSource (issue 13.6): one non-trunk address holds at most
// sip.max_calls_per_source calls at once; the excess gets 503 naming the setting, and the
// address gets its room back when its calls end.
func TestEdgeCallsPerSource(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxCallsPerSource = 2
	cfg.Limits.CallerInviteRate, cfg.Limits.CallerInviteBurst = 1000, 1000
	cfg.Limits.CalleeInviteRate, cfg.Limits.CalleeInviteBurst = 1000, 1000
	var reached atomic.Int64
	rec := newRecorder(func(c *Call) {
		reached.Add(1)
		_ = c.Ringing(nil)
		go func() { // hold the call a while, then decline it
			select {
			case <-c.Done():
			case <-time.After(time.Second):
				_ = c.Reject(603, "Decline")
			}
		}()
	})
	rec.calls = make(chan *Call, 100)
	s := startServer(t, cfg, rec)
	msgs := floodRun(t, s, "alice", "secret", "victim", 5)
	declined := strings.Count(msgs, "SIP/2.0 603 ")
	limited := strings.Count(msgs, "SIP/2.0 503 Service Unavailable (too many calls from this address: sip.max_calls_per_source)")
	if declined != 2 || limited != 3 || reached.Load() != 2 {
		t.Fatalf("declined %d limited %d reached %d", declined, limited, reached.Load())
	}
	waitCalls(t, s, 0)
	msgs = floodRun(t, s, "alice", "secret", "victim", 1)
	if strings.Count(msgs, "SIP/2.0 603 ") != 1 {
		t.Fatalf("the address did not get its room back:\n%s", msgs)
	}
}

func waitCalls(t *testing.T, s *Server, n int) {
	t.Helper()
	if !peers.Poll(5*time.Second, func() bool { return s.Calls() == n }) {
		t.Fatalf("%d calls, want %d", s.Calls(), n)
	}
}

// TestEdgeRegistrationsPerSource (issue 13.6): one address holds at most
// sip.max_registrations_per_source bindings over all users; the next REGISTER gets 403 naming
// the setting.
func TestEdgeRegistrationsPerSource(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRegistrationsPerSource = 1
	s := startServer(t, cfg, newRecorder(nil))
	// A phone on this address already holds the one binding allowed.
	if _, err := s.Registrar().Apply(registrar.Update{AOR: "alice", Expires: 120, CallID: "held", CSeq: 1,
		Contacts: []registrar.ContactUpdate{{Contact: "sip:alice@127.0.0.1:5999", Expires: -1}}, Source: "127.0.0.1:5999"}); err != nil {
		t.Fatal(err)
	}
	bob := startSIPp(t, "register_auth.xml", s.target("udp"), "-s", "bob", "-au", "bob", "-ap", "hunter2")
	err := <-bob.done
	bob.done <- err
	msgs, _ := os.ReadFile(filepath.Join(bob.dir, "msg.log"))
	if err == nil || !strings.Contains(string(msgs), "SIP/2.0 403 Forbidden (too many registrations from this address: sip.max_registrations_per_source)") {
		t.Fatalf("bob's REGISTER: %v\n%s", err, msgs)
	}
	if len(s.Registrar().Lookup("bob")) != 0 {
		t.Fatal("bob registered")
	}
}
