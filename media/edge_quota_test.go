package media

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// TestEdgeRTPPortQuota (issue 13.6): one user cannot hold more than media.rtp_ports_per_user
// RTP port pairs, nor take the reserve beyond one call; the refusal names the setting, and
// another user still gets ports.
func TestEdgeRTPPortQuota(t *testing.T) {
	e := newTestEngine(t, func(c *Config) {
		c.RTPPortMax = c.RTPPortMin + 18 // 10 pairs
		c.RTPPortsPerUser, c.RTPPortsReserve = 6, 3
	})
	ctx := context.Background()
	start := func(user string) (*Session, error) {
		p := newRTPPeer(t)
		s, _, err := e.StartEcho(ctx, Description{Kind: KindRTP, SDP: p.description(plainrtp.PCMU).String()}, SessionOptions{Owner: user})
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	for range 6 {
		if _, err := start("mallory"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := start("mallory")
	if !errors.Is(err, ErrPortQuota) || !strings.Contains(err.Error(), "media.rtp_ports_per_user") {
		t.Fatalf("7th session of one user: %v", err)
	}
	if e.Sessions() != 6 || e.Pool().InUse() != 6 {
		t.Fatalf("a refused session left %d sessions %d ports", e.Sessions(), e.Pool().InUse())
	}
	for range 2 { // another user's call comes out of the reserve
		if _, err := start("bob"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := start("bob"); !errors.Is(err, ErrPortQuota) || !strings.Contains(err.Error(), "media.rtp_ports_reserve") {
		t.Fatalf("bob's third pair: %v", err)
	}
	if _, err := start("carol"); err != nil {
		t.Fatalf("carol's first call: %v", err)
	}
}
