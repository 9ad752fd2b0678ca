package plainrtp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

// Errors of PortPool.Open.
var (
	// ErrNoPorts is returned when every port pair of the pool is in use or quarantined.
	ErrNoPorts = errors.New("plainrtp: no free RTP ports")
	// ErrOwnerQuota is returned when the owner already holds its quota of port pairs.
	ErrOwnerQuota = errors.New("plainrtp: the owner holds its quota of RTP port pairs")
	// ErrReserve is returned when only the reserved pairs are left and the owner already
	// holds enough pairs for one call.
	ErrReserve = errors.New("plainrtp: only the reserved RTP port pairs are left")
)

// callPairs is how many pairs an owner may always take from the reserve: one call with two
// plain-RTP legs.
const callPairs = 2

// randomProbes is how many random pairs allocate tries before scanning from a random start.
const randomProbes = 16

// PortPool hands out RTP/RTCP port pairs (even RTP port, RTCP on the next odd one) from a
// range in random order (a port number tells nothing about the next call's), and keeps
// released pairs in quarantine for a while so that stale packets of an ended call cannot reach
// a new one. Pairs are counted per owner (SetOwnerLimits). It is safe for concurrent use.
type PortPool struct {
	ip         netip.Addr
	min, max   int
	quarantine time.Duration
	log        *slog.Logger
	rtcpEvery  time.Duration
	latch      LatchMode
	relatch    time.Duration
	perOwner   int // 0: no limit
	reserve    int
	readBuf    int // SO_RCVBUF of RTP sockets; <= 0: kernel default

	mu       sync.Mutex
	used     map[int]string // port -> owner ("" for none)
	owned    map[string]int // owner -> pairs held
	released map[int]time.Time
	closed   bool
	bufCheck bool // the first RTP socket's buffer was checked (and a cap logged)
}

// NewPortPool returns a pool binding on ip with RTP ports in [min, max] (min is rounded up to
// even; the RTCP port max+1 may be used). quarantine is how long a released pair stays unused.
func NewPortPool(ip netip.Addr, min, max int, quarantine time.Duration, log *slog.Logger) (*PortPool, error) {
	if min%2 == 1 {
		min++
	}
	if min < 1024 || max > 65534 || min > max {
		return nil, fmt.Errorf("plainrtp: bad RTP port range %d-%d (needs 1024 <= min <= max <= 65534)", min, max)
	}
	if !ip.IsValid() {
		return nil, errors.New("plainrtp: no bind address for the RTP port pool")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PortPool{ip: ip, min: min, max: max, quarantine: quarantine, log: log, rtcpEvery: 5 * time.Second,
		latch: LatchStrict, relatch: relatchAfter, used: map[int]string{}, owned: map[string]int{}, released: map[int]time.Time{}}, nil
}

// SetReadBuffer sets the kernel receive buffer (SO_RCVBUF) asked for on the RTP socket of
// pairs opened afterwards, in bytes; <= 0: the kernel default (the default). The first
// socket's grant is checked: a cap by net.core.rmem_max is logged once.
func (p *PortPool) SetReadBuffer(bytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readBuf, p.bufCheck = bytes, false
}

// Pairs returns how many port pairs the range holds.
func (p *PortPool) Pairs() int { return (p.max-p.min)/2 + 1 }

// SetLatchMode sets which sources endpoints opened afterwards accept RTP from (default
// LatchStrict).
func (p *PortPool) SetLatchMode(m LatchMode) error {
	if !m.Valid() {
		return fmt.Errorf("plainrtp: bad latch mode %q (want strict, ip or any)", m)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latch = m
	return nil
}

// SetOwnerLimits bounds what one owner (a user) may hold: at most perOwner pairs (0: no
// limit), and, once no more than reserve pairs are free, no pair beyond its first two (one
// call's worth) — so that one owner cannot take the whole range from everyone else.
// Allocations without an owner are bounded by neither.
func (p *PortPool) SetOwnerLimits(perOwner, reserve int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.perOwner, p.reserve = max(perOwner, 0), max(reserve, 0)
}

// Owned returns how many pairs owner holds.
func (p *PortPool) Owned(owner string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owned[owner]
}

// SetRTCPInterval sets how often endpoints opened afterwards send RTCP sender reports
// (default 5 s).
func (p *PortPool) SetRTCPInterval(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d > 0 {
		p.rtcpEvery = d
	}
}

// IP returns the address the pool binds on.
func (p *PortPool) IP() netip.Addr { return p.ip }

// InUse returns how many port pairs are currently allocated.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

// Quarantined returns how many released pairs are still in quarantine.
func (p *PortPool) Quarantined() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for _, t := range p.released {
		if now.Sub(t) < p.quarantine {
			n++
		}
	}
	return n
}

// Close makes the pool refuse new allocations (endpoints already open stay usable).
func (p *PortPool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// admitLocked applies the owner limits.
func (p *PortPool) admitLocked(owner string) error {
	if owner == "" {
		return nil
	}
	held := p.owned[owner]
	if p.perOwner > 0 && held >= p.perOwner {
		return fmt.Errorf("%w (%d)", ErrOwnerQuota, p.perOwner)
	}
	if p.reserve > 0 && held >= callPairs && p.freeLocked() <= p.reserve {
		return fmt.Errorf("%w (%d kept for others)", ErrReserve, p.reserve)
	}
	return nil
}

// freeLocked counts the pairs neither in use nor in quarantine.
func (p *PortPool) freeLocked() int {
	now := time.Now()
	n := p.Pairs() - len(p.used)
	for _, t := range p.released {
		if now.Sub(t) < p.quarantine {
			n--
		}
	}
	return n
}

// allocate binds a free, non-quarantined pair chosen at random.
func (p *PortPool) allocate(owner string) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, 0, errors.New("plainrtp: port pool closed")
	}
	if err := p.admitLocked(owner); err != nil {
		return nil, nil, 0, err
	}
	now := time.Now()
	pairs := p.Pairs()
	try := func(port int) (a, b *net.UDPConn, ok bool) {
		if _, used := p.used[port]; used {
			return nil, nil, false
		}
		if t, ok := p.released[port]; ok {
			if now.Sub(t) < p.quarantine {
				return nil, nil, false
			}
			delete(p.released, port)
		}
		a, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			return nil, nil, false
		}
		b, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port+1))))
		if err != nil {
			a.Close()
			return nil, nil, false
		}
		if p.readBuf > 0 {
			if !p.bufCheck {
				p.bufCheck = true
				sockbuf.Apply(a, p.readBuf, "media.rtp_read_buffer", "rtp udp", p.log)
			} else {
				_ = a.SetReadBuffer(p.readBuf)
			}
		}
		p.used[port] = owner
		p.owned[owner]++
		return a, b, true
	}
	if len(p.used) < pairs {
		for range min(randomProbes, pairs) {
			port := p.min + 2*rand.IntN(pairs)
			if a, b, ok := try(port); ok {
				return a, b, port, nil
			}
		}
	}
	start := rand.IntN(pairs)
	for i := range pairs {
		port := p.min + 2*((start+i)%pairs)
		if a, b, ok := try(port); ok {
			return a, b, port, nil
		}
	}
	return nil, nil, 0, ErrNoPorts
}

func (p *PortPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if owner, ok := p.used[port]; ok {
		if p.owned[owner]--; p.owned[owner] <= 0 {
			delete(p.owned, owner)
		}
	}
	delete(p.used, port)
	if p.quarantine > 0 {
		p.released[port] = time.Now()
	}
}
