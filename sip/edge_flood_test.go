package sip

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// TestEdgeInviteFloodPerCaller (issue 13.10c): one user's burst of 30 calls to another is cut
// at the per-caller rate with 503 naming sip.caller_invite_rate; the victim's handler sees only
// the burst; another caller still reaches the victim.
func TestEdgeInviteFloodPerCaller(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.CallerInviteRate, cfg.Limits.CallerInviteBurst = 1, 5
	cfg.Limits.CalleeInviteRate, cfg.Limits.CalleeInviteBurst = 1000, 1000
	var reached atomic.Int64
	s := startServer(t, cfg, declineAll(&reached))
	msgs := floodRun(t, s, "alice", "secret", "victim", 30)
	declined := strings.Count(msgs, "SIP/2.0 603 ")
	limited := strings.Count(msgs, "SIP/2.0 503 Service Unavailable (too many calls from alice: sip.caller_invite_rate)")
	t.Logf("flood of 30: %d reached the callee, %d refused by the caller limit", declined, limited)
	if declined < 5 || declined > 7 || declined+limited != 30 || reached.Load() != int64(declined) {
		t.Fatalf("declined %d limited %d reached %d", declined, limited, reached.Load())
	}
	msgs = floodRun(t, s, "bob", "hunter2", "victim", 1)
	if strings.Count(msgs, "SIP/2.0 603 ") != 1 {
		t.Fatalf("another caller did not reach the victim:\n%s", msgs)
	}
}

// TestEdgeInviteFloodPerCallee: calls to one callee beyond its rate get 486 naming
// sip.callee_invite_rate; calls to someone else still go through.
func TestEdgeInviteFloodPerCallee(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.CallerInviteRate, cfg.Limits.CallerInviteBurst = 1000, 1000
	cfg.Limits.CalleeInviteRate, cfg.Limits.CalleeInviteBurst = 1, 5
	var reached atomic.Int64
	s := startServer(t, cfg, declineAll(&reached))
	msgs := floodRun(t, s, "alice", "secret", "victim", 30)
	declined := strings.Count(msgs, "SIP/2.0 603 ")
	busy := strings.Count(msgs, "SIP/2.0 486 Busy Here (too many calls to this callee: sip.callee_invite_rate)")
	t.Logf("flood of 30: %d reached the callee, %d refused by the callee limit", declined, busy)
	if declined < 5 || declined > 7 || declined+busy != 30 {
		t.Fatalf("declined %d busy %d", declined, busy)
	}
	msgs = floodRun(t, s, "alice", "secret", "someone", 1)
	if strings.Count(msgs, "SIP/2.0 603 ") != 1 {
		t.Fatalf("a call to another callee was refused:\n%s", msgs)
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
	deadline := time.Now().Add(5 * time.Second)
	for s.Calls() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls, want %d", s.Calls(), n)
		}
		time.Sleep(10 * time.Millisecond)
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
