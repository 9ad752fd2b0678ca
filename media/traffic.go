package media

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Traffic is the engine's RTP traffic: cumulative counters since the engine started (they
// only grow, also while sessions live) and the receive jitter of the live streams.
type Traffic struct {
	// PacketsIn/BytesIn count RTP packets (and payload bytes) received on any leg with a
	// negotiated payload type; PacketsOut/BytesOut those sent to a leg.
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// Lost counts packets missing from received streams (sequence number gaps).
	Lost uint64
	// Streams is the number of live received streams that have a jitter figure; JitterMax
	// and JitterMean are their RFC 3550 interarrival jitter, in seconds (0 when none).
	Streams               int
	JitterMax, JitterMean float64
}

// traffic holds the engine's counters; the media path adds to them without allocating.
type traffic struct {
	pin, pout, bin, bout, lost atomic.Uint64
}

// maxGap is the largest forward sequence jump counted as loss; larger jumps are a restarted
// or new stream.
const maxGap = 3000

// rxStats tracks one received stream (a pipe's source) for loss and jitter. The pipe's mutex
// guards every field but jitter, which scrapes read.
type rxStats struct {
	started bool
	ssrc    uint32
	maxSeq  uint16
	hasTr   bool // transit holds an audio packet's transit time
	transit int64
	jit     float64 // in timestamp units
	jitter  atomic.Uint64
	lost    atomic.Uint64 // this stream's share of traffic.lost (per-leg records)
}

// received counts an incoming packet and updates loss and, when rate is not 0 (telephone
// events share the stream's sequence numbers but not its timing), jitter at clock rate rate.
func (t *traffic) received(r *rxStats, rate uint32, pkt *rtp.Packet, now time.Time) {
	t.pin.Add(1)
	t.bin.Add(uint64(len(pkt.Payload)))
	var transit int64
	if rate != 0 {
		transit = now.UnixNano()/int64(time.Millisecond)*int64(rate)/1000 - int64(pkt.Timestamp)
	}
	if !r.started || pkt.SSRC != r.ssrc {
		r.started, r.ssrc, r.maxSeq, r.transit, r.hasTr, r.jit = true, pkt.SSRC, pkt.SequenceNumber, transit, rate != 0, 0
		r.jitter.Store(0)
		return
	}
	d := int16(pkt.SequenceNumber - r.maxSeq)
	if d <= 0 {
		return // duplicate or late: no jitter sample (RFC 3550 uses in-order packets)
	}
	if d > 1 {
		if d > maxGap {
			r.maxSeq, r.transit, r.hasTr = pkt.SequenceNumber, transit, rate != 0
			return
		}
		t.lost.Add(uint64(d - 1))
		r.lost.Add(uint64(d - 1))
	}
	r.maxSeq = pkt.SequenceNumber
	if rate == 0 {
		return
	}
	dt := transit - r.transit
	r.transit = transit
	if !r.hasTr {
		r.hasTr = true
		return
	}
	if dt < 0 {
		dt = -dt
	}
	r.jit += (float64(dt) - r.jit) / 16
	r.jitter.Store(math.Float64bits(r.jit / float64(rate)))
}

// sent counts a packet sent with payload bytes.
func (t *traffic) sent(payload int) {
	t.pout.Add(1)
	t.bout.Add(uint64(payload))
}

// Traffic returns the engine's RTP traffic counters and the jitter of live streams. It walks
// the live sessions (for jitter) and is meant for scrapes, not the media path.
func (e *Engine) Traffic() Traffic {
	out := Traffic{
		PacketsIn: e.traffic.pin.Load(), PacketsOut: e.traffic.pout.Load(),
		BytesIn: e.traffic.bin.Load(), BytesOut: e.traffic.bout.Load(), Lost: e.traffic.lost.Load(),
	}
	e.mu.Lock()
	ss := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		ss = append(ss, s)
	}
	e.mu.Unlock()
	sum := 0.0
	for _, s := range ss {
		ps := s.pipes.Load()
		if ps == nil {
			continue
		}
		for _, row := range ps {
			for _, p := range row {
				if p == nil || p.k != kindAudio {
					continue
				}
				j := math.Float64frombits(p.rx.jitter.Load())
				if j <= 0 {
					continue
				}
				out.Streams++
				sum += j
				out.JitterMax = max(out.JitterMax, j)
			}
		}
	}
	if out.Streams > 0 {
		out.JitterMean = sum / float64(out.Streams)
	}
	return out
}
