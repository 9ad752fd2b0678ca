package sip

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterBucketsAndBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := newRateLimiter[netip.Addr](2, 4, 3)
	r.now = func() time.Time { return now }
	a := netip.MustParseAddr("127.0.0.1")
	for i := 0; i < 4; i++ {
		if !r.allow(a) {
			t.Fatalf("burst request %d refused", i)
		}
	}
	if r.allow(a) {
		t.Fatal("request beyond burst allowed")
	}
	now = now.Add(time.Second) // refills 2 tokens
	if a1, a2, a3 := r.allow(a), r.allow(a), r.allow(a); !a1 || !a2 || a3 {
		t.Fatal("refill rate wrong")
	}
	for i := 0; i < 20; i++ {
		r.allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	if n := r.len(); n > 3 {
		t.Fatalf("table grew to %d entries, bound is 3", n)
	}
}
