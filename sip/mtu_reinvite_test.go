package sip

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A re-INVITE over 1300 bytes in a dialog with a UDP peer goes over TCP to the peer's
// contact (RFC 3261 §18.1.1), like an initial INVITE: one SIPp answers the call over UDP, a
// second SIPp on the TCP side of the same port gets the large re-INVITE (and then the BYE,
// since the dialog stays on TCP).
func TestSIPpReinviteLargeOverTCP(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	port := freePort(t)
	udp := startSIPpPort(t, "uas_answer_hold_open.xml", port)
	tcp := startSIPpPort(t, "uas_reinvite_bye.xml", port, "-t", "t1")
	waitBoundNet(t, "tcp", port)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if tp := c.Info().Transport; tp != "udp" {
		t.Fatalf("call transport %q, want udp", tp)
	}
	udp.wait(t) // the UDP side saw INVITE/200/ACK and is gone
	big := webrtcSizedSDP()
	ans, err := c.Reinvite(ctx, big)
	if err != nil {
		t.Fatalf("Reinvite of %d bytes: %v", len(big), err)
	}
	if !strings.Contains(string(ans), "o=bob 1 3") {
		t.Fatalf("re-INVITE answer %q", ans)
	}
	if tp := c.Info().Transport; tp != "tcp" {
		t.Fatalf("call transport after the large re-INVITE %q, want tcp", tp)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	tcp.wait(t)
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}

// When the TCP attempt for a large re-INVITE fails, Reinvite says so and the dialog stays on
// UDP (later requests, such as the BYE, are sent as before).
func TestReinviteLargeTCPRefusedStaysUDP(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	port := freePort(t)
	startSIPpPort(t, "uas_answer_hold_open.xml", port) // nothing on TCP
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	_, err = c.Reinvite(ctx, webrtcSizedSDP())
	if err == nil || !strings.Contains(err.Error(), "over the 1300-byte UDP limit") {
		t.Fatalf("Reinvite error %v, want one naming the UDP limit", err)
	}
	if tp := c.Info().Transport; tp != "udp" {
		t.Fatalf("call transport %q after the failed TCP attempt, want udp", tp)
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer hcancel()
	_ = c.Hangup(hctx) // SIPp is gone: no answer expected, the call ends anyway
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}
