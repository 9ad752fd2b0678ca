package sip

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"
)

func rawInvite(branch, callID string, localPort int) []byte {
	body := testSDP
	return []byte(fmt.Sprintf("INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s\r\n"+
		"From: <sip:raw@127.0.0.1>;tag=r%s\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:raw@127.0.0.1:%d>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		localPort, branch, branch, callID, localPort, len(body), body))
}

var toTagRe = regexp.MustCompile(`(?m)^To: .*;tag=([^;\r\n]+)`)

// readUntil collects datagrams for d and returns them.
func readFor(c net.PacketConn, d time.Duration) [][]byte {
	var out [][]byte
	deadline := time.Now().Add(d)
	buf := make([]byte, 65536)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

func count(msgs [][]byte, prefix string) int {
	n := 0
	for _, m := range msgs {
		if bytes.HasPrefix(m, []byte(prefix)) {
			n++
		}
	}
	return n
}

// The 2xx to an INVITE is retransmitted over UDP until the ACK arrives (RFC 3261 §13.3.1.4),
// and a call whose 2xx is never ACKed is hung up with BYE.
func TestAnswerRetransmittedUntilACKThenByeOnTimeout(t *testing.T) {
	cfg := trunkConfig()
	cfg.AckTimeout = 2500 * time.Millisecond
	rec := newRecorder(func(c *Call) { _ = c.Answer([]byte(testSDP)) })
	s := startServer(t, cfg, rec)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	dst, _ := net.ResolveUDPAddr("udp", s.target("udp"))

	// Call 1: ACK after the second 200.
	if _, err := pc.WriteTo(rawInvite("rt1", "rt-call-1", port), dst); err != nil {
		t.Fatal(err)
	}
	msgs := readFor(pc, 1300*time.Millisecond) // 200 at 0, T1 (0.5s), +1s
	if n := count(msgs, "SIP/2.0 200"); n < 2 {
		t.Fatalf("200 sent %d times before ACK, want retransmissions", n)
	}
	var tag string
	for _, m := range msgs {
		if bytes.HasPrefix(m, []byte("SIP/2.0 200")) {
			tag = string(toTagRe.FindSubmatch(m)[1])
		}
	}
	ack := fmt.Sprintf("ACK sip:nkbridge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKrt1ack\r\n"+
		"From: <sip:raw@127.0.0.1>;tag=rrt1\r\nTo: <sip:echo@127.0.0.1>;tag=%s\r\nCall-ID: rt-call-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", port, tag)
	if _, err := pc.WriteTo([]byte(ack), dst); err != nil {
		t.Fatal(err)
	}
	if after := readFor(pc, 2500*time.Millisecond); count(after, "SIP/2.0 200") > 1 || count(after, "BYE ") != 0 {
		t.Fatalf("after ACK: %d more 200s, %d BYEs", count(after, "SIP/2.0 200"), count(after, "BYE "))
	}
	c1 := <-rec.calls
	select {
	case <-c1.Done():
		t.Fatalf("ACKed call ended: %+v", c1.End())
	default:
	}

	// Call 2: never ACKed → BYE after AckTimeout.
	if _, err := pc.WriteTo(rawInvite("rt2", "rt-call-2", port), dst); err != nil {
		t.Fatal(err)
	}
	msgs = readFor(pc, 4*time.Second)
	if count(msgs, "BYE ") == 0 {
		t.Fatalf("no BYE for an un-ACKed 200 (got %d messages)", len(msgs))
	}
	c2 := <-rec.calls
	select {
	case <-c2.Done():
		if c2.End().Cause != CauseAckTimeout {
			t.Fatalf("end %+v", c2.End())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("un-ACKed call did not end")
	}
}
