package sip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEdgeChallengeNotRetransmitted (issue 13.10b): the 407 to an unauthenticated INVITE is
// sent once, statelessly, even when no ACK ever comes (a forged source cannot make nkbridge
// send it 11 times), and a retransmitted INVITE still gets its answer.
func TestEdgeChallengeNotRetransmitted(t *testing.T) {
	s := startServer(t, testConfig(), newRecorder(nil))
	r := startSIPp(t, "uac_invite_noack.xml", s.target("udp"), "-s", "bob")
	r.wait(t)
	msgs, err := os.ReadFile(filepath.Join(r.dir, "msg.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(msgs), "SIP/2.0 407 ")
	t.Logf("407 answers received in 4 s without ACK: %d", n)
	if n != 1 {
		t.Fatalf("the 407 arrived %d times (retransmitted without ACK):\n%s", n, msgs)
	}
}
