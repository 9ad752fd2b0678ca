// Package mixer is the audio core of nkbridge's conferences (mcu rooms): a jitter buffer per
// participant, decoding to a common 48 kHz rate with packet loss concealment, the mix where
// every participant hears the sum of the others but never itself (saturating, no wrap-around),
// per-participant encoding (Opus, G.711), and talk detection. It knows nothing of RTP sessions
// or the control API; package media/room drives it with 20 ms ticks.
package mixer

// Rate is the mixer's internal PCM rate and FrameSamples one 20 ms frame at that rate.
const (
	Rate         = 48000
	FrameSamples = Rate / 50
)

// Packet is one received RTP audio payload.
type Packet struct {
	Seq     uint16
	TS      uint32
	Payload []byte
}

// Pop results of a JitterBuffer.
const (
	PopOK    = iota // a packet in order
	PopLost         // the next packet is missing but later ones are there: conceal one
	PopEmpty        // nothing to play (not primed yet, or underrun)
)

// JitterBuffer reorders packets by sequence number and releases them one at a time after a
// priming delay of Target packets. Duplicates and packets older than the playout point are
// dropped; at most Max packets are held (the oldest go first). The zero value is not usable:
// use NewJitterBuffer.
type JitterBuffer struct {
	target, max int
	pkts        []Packet // sorted by sequence (serial arithmetic relative to next)
	next        uint16
	started     bool // next is valid
	primed      bool
	empties     int
	// Counters.
	Late, Duplicate, Overflow, Lost, Drained uint64
}

// NewJitterBuffer returns a buffer that starts playing once target packets are queued and
// holds at most max (max >= target+1).
func NewJitterBuffer(target, max int) *JitterBuffer {
	if target < 1 {
		target = 1
	}
	if max <= target {
		max = target + 1
	}
	return &JitterBuffer{target: target, max: max}
}

// Len is the number of queued packets.
func (j *JitterBuffer) Len() int { return len(j.pkts) }

// Push queues a packet; its payload is copied.
func (j *JitterBuffer) Push(p Packet) {
	if j.started && int16(p.Seq-j.next) < 0 {
		if int16(p.Seq-j.next) < -1000 { // a restarted stream: start over
			j.Reset()
		} else {
			j.Late++
			return
		}
	}
	ref := p.Seq
	if j.started {
		ref = j.next
	} else if len(j.pkts) > 0 {
		ref = j.pkts[0].Seq
		if int16(p.Seq-ref) < 0 {
			ref = p.Seq
		}
	}
	// insertion point
	i := len(j.pkts)
	for i > 0 && int16(j.pkts[i-1].Seq-ref) > int16(p.Seq-ref) {
		i--
	}
	if i > 0 && j.pkts[i-1].Seq == p.Seq {
		j.Duplicate++
		return
	}
	p.Payload = append([]byte(nil), p.Payload...)
	j.pkts = append(j.pkts, Packet{})
	copy(j.pkts[i+1:], j.pkts[i:])
	j.pkts[i] = p
	for len(j.pkts) > j.max {
		j.Overflow++
		j.pkts = j.pkts[1:]
		if j.started {
			j.next = j.pkts[0].Seq
		}
	}
}

// Pop releases the next packet in order (PopOK), says one is missing (PopLost: conceal it) or
// that nothing is due (PopEmpty). After an underrun of more than a few frames the buffer primes
// again.
func (j *JitterBuffer) Pop() (Packet, int) {
	if !j.primed {
		if len(j.pkts) < j.target {
			return Packet{}, PopEmpty
		}
		j.primed = true
		if !j.started {
			j.started = true
			j.next = j.pkts[0].Seq
		}
	}
	if len(j.pkts) == 0 {
		j.empties++
		if j.empties > 3 {
			j.primed = false
			j.started = false
		}
		return Packet{}, PopEmpty
	}
	j.empties = 0
	// Latency control: when far more than the target is queued (a burst, or a sender that
	// runs fast), drop the oldest so the delay comes back down.
	if len(j.pkts) > 2*j.target+2 {
		j.Drained++
		j.next = j.pkts[1].Seq
		j.pkts = j.pkts[1:]
	}
	if j.pkts[0].Seq == j.next {
		p := j.pkts[0]
		j.pkts = j.pkts[1:]
		j.next++
		return p, PopOK
	}
	// j.pkts[0] is later than next: one packet lost (a long gap is skipped at once).
	if gap := int(uint16(j.pkts[0].Seq - j.next)); gap > j.max {
		j.Lost += uint64(gap)
		j.next = j.pkts[0].Seq
		return Packet{}, PopLost
	}
	j.next++
	j.Lost++
	return Packet{}, PopLost
}

// Reset forgets everything queued.
func (j *JitterBuffer) Reset() {
	j.pkts = j.pkts[:0]
	j.started, j.primed, j.empties = false, false, 0
}
