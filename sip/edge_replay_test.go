package sip

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var authLineRe = regexp.MustCompile(`(?m)^Authorization: Digest [^\r\n]*nc=00000001[^\r\n]*`)

// TestEdgeReplayedNonceCountIsStale (issue 13.10a): a REGISTER whose nonce count was already
// used (captured and replayed, or a phone reusing its nc) gets 401 stale=true and does not
// count as a failed login: five replays, more than auth_max_failures (3 here), do not lock the
// phone's address out, and it registers right after.
func TestEdgeReplayedNonceCountIsStale(t *testing.T) {
	s := startServer(t, testConfig(), newRecorder(nil))
	first := startSIPp(t, "register_auth.xml", s.target("udp"), "-s", "alice", "-au", "alice", "-ap", "secret")
	first.wait(t)
	msgs, err := os.ReadFile(filepath.Join(first.dir, "msg.log"))
	if err != nil {
		t.Fatal(err)
	}
	used := authLineRe.Find(msgs)
	if used == nil {
		t.Fatalf("no nc=00000001 credentials in the first run:\n%s", msgs)
	}
	r := startSIPp(t, "register_replay_nc.xml", s.target("udp"), "-s", "alice", "-au", "alice", "-ap", "secret",
		"-key", "replay_auth", string(used))
	r.wait(t)
	msgs, _ = os.ReadFile(filepath.Join(r.dir, "msg.log"))
	if n := strings.Count(string(msgs), string(used)); n != 5 {
		t.Fatalf("the replayed header was sent %d times:\n%s", n, msgs)
	}
	if s.failures.Blocked(mustAddr("127.0.0.1")) {
		t.Fatal("source blocked after replays")
	}
}
