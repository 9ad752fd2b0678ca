package plainrtp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrNoPorts is returned when every port pair of the pool is in use or quarantined.
var ErrNoPorts = errors.New("plainrtp: no free RTP ports")

// PortPool hands out RTP/RTCP port pairs (even RTP port, RTCP on the next odd one) from a
// range, and keeps released pairs in quarantine for a while so that stale packets of an ended
// call cannot reach a new one. It is safe for concurrent use.
type PortPool struct {
	ip         netip.Addr
	min, max   int
	quarantine time.Duration
	log        *slog.Logger
	rtcpEvery  time.Duration

	mu       sync.Mutex
	next     int
	used     map[int]bool
	released map[int]time.Time
	closed   bool
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
	return &PortPool{ip: ip, min: min, max: max, next: min, quarantine: quarantine, log: log, rtcpEvery: 5 * time.Second,
		used: map[int]bool{}, released: map[int]time.Time{}}, nil
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

// allocate binds a free, non-quarantined pair.
func (p *PortPool) allocate() (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, 0, errors.New("plainrtp: port pool closed")
	}
	now := time.Now()
	pairs := (p.max-p.min)/2 + 1
	for range pairs {
		port := p.next
		p.next += 2
		if p.next > p.max {
			p.next = p.min
		}
		if p.used[port] {
			continue
		}
		if t, ok := p.released[port]; ok {
			if now.Sub(t) < p.quarantine {
				continue
			}
			delete(p.released, port)
		}
		a, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			continue
		}
		b, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port+1))))
		if err != nil {
			a.Close()
			continue
		}
		p.used[port] = true
		return a, b, port, nil
	}
	return nil, nil, 0, ErrNoPorts
}

func (p *PortPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
	if p.quarantine > 0 {
		p.released[port] = time.Now()
	}
}
