package media

import (
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// A regular 20 ms stream has no jitter and no loss; a gap in sequence numbers counts as loss;
// arrival times that wander make jitter grow to the RFC 3550 estimate.
func TestTrafficLossAndJitter(t *testing.T) {
	var tr traffic
	var rx rxStats
	t0 := time.Unix(1700000000, 0)
	pkt := func(seq uint16, ts uint32) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SSRC: 9, SequenceNumber: seq, Timestamp: ts}, Payload: make([]byte, 160)}
	}
	for i := 0; i < 50; i++ {
		tr.received(&rx, 8000, pkt(uint16(65500+i), uint32(i*160)), t0.Add(time.Duration(i)*20*time.Millisecond))
	}
	if tr.pin.Load() != 50 || tr.bin.Load() != 50*160 || tr.lost.Load() != 0 {
		t.Fatalf("regular stream: in %d bytes %d lost %d", tr.pin.Load(), tr.bin.Load(), tr.lost.Load())
	}
	if j := math.Float64frombits(rx.jitter.Load()); j != 0 {
		t.Fatalf("regular stream jitter %v, want 0", j)
	}
	// Skip 3 packets (seq wraps through 0 on the way), then alternate arrivals 10 ms early/late.
	for i := 53; i < 400; i++ {
		skew := 10 * time.Millisecond
		if i%2 == 0 {
			skew = -skew
		}
		tr.received(&rx, 8000, pkt(uint16(65500+i), uint32(i*160)), t0.Add(time.Duration(i)*20*time.Millisecond+skew))
	}
	if got := tr.lost.Load(); got != 3 {
		t.Fatalf("lost = %d, want 3", got)
	}
	// |D| is 20 ms every packet, so J converges to 20 ms.
	if j := math.Float64frombits(rx.jitter.Load()); math.Abs(j-0.020) > 0.001 {
		t.Fatalf("jitter = %v s, want about 0.020", j)
	}
	// Duplicates and a telephone-event packet count as received, not as loss.
	before := tr.lost.Load()
	tr.received(&rx, 8000, pkt(uint16(65500+399-65536), 399*160), t0.Add(8*time.Second))
	tr.received(&rx, 0, pkt(uint16(65500+400-65536), 399*160), time.Time{})
	if tr.lost.Load() != before {
		t.Fatalf("duplicate/event counted as loss")
	}
	tr.sent(160)
	if tr.pout.Load() != 1 || tr.bout.Load() != 160 {
		t.Fatal("sent not counted")
	}
}

func BenchmarkTrafficReceived(b *testing.B) {
	var tr traffic
	var rx rxStats
	p := &rtp.Packet{Header: rtp.Header{SSRC: 1}, Payload: make([]byte, 160)}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.SequenceNumber++
		p.Timestamp += 160
		tr.received(&rx, 8000, p, now.Add(time.Duration(i)*20*time.Millisecond))
	}
}
