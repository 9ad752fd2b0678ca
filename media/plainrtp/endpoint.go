package plainrtp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// relatchAfter is how long the latched source must be silent before another port of the same
// host may take its place (a NAT that rebinds the peer's port).
const relatchAfter = 2 * time.Second

// LatchMode says which sources an endpoint accepts RTP (and RTCP) from. In every mode a
// source on another host than the one accepted is never latched to while the call lasts, and
// nothing is accepted before the peer's address is known (SetRemote), except in LatchAny.
type LatchMode string

// Latch modes (the configuration's media.rtp_latch).
const (
	// LatchStrict accepts RTP only from the address and port of the peer's SDP (c=, m=), and
	// RTCP only from that host's RTP or RTCP port. Media is sent to the SDP's address.
	LatchStrict LatchMode = "strict"
	// LatchIP accepts RTP from the SDP's IP address on any port and sends to the port it
	// really comes from (a NAT in front of the peer that keeps its address but not its port).
	// A different port of that host takes over only after relatchAfter of silence.
	LatchIP LatchMode = "ip"
	// LatchAny latches to the first source that sends valid RTP (a phone behind a NAT whose SDP
	// names a private address); after that only the same host (after silence) or the SDP's
	// exact address takes over. A stranger who sends first wins the race: use it only for
	// phones that need it.
	LatchAny LatchMode = "any"
)

// Valid reports whether m is one of the latch modes.
func (m LatchMode) Valid() bool { return m == LatchStrict || m == LatchIP || m == LatchAny }

// Handlers receive what an Endpoint reads. They are called from the endpoint's read goroutines;
// the packet is valid only during the call.
type Handlers struct {
	// AcceptPT says which payload types are valid; packets with others are dropped (nil accepts
	// all).
	AcceptPT func(pt uint8) bool
	// RTP receives each valid RTP packet.
	RTP func(p *rtp.Packet)
	// RTCP receives each parsed RTCP compound packet (optional).
	RTCP func(p []rtcp.Packet)
}

// Stats are an endpoint's counters.
type Stats struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	Dropped               uint64 // garbage, wrong payload type or wrong source
	RTCPIn, RTCPOut       uint64
	LastIn                time.Time // zero if nothing received yet
	Remote                netip.AddrPort
	Latched               bool
	Strangers             uint64 // valid RTP/RTCP refused because of its source
}

// Endpoint is one plain RTP/RTCP port pair. Open it with PortPool.Open, point it at the peer
// with SetRemote (from the peer's SDP), Start reading, WriteRTP to send, Close to release.
// Which sources it accepts, and whether it sends to where the peer really sends from
// (symmetric RTP), is the pool's LatchMode.
type Endpoint struct {
	pool      *PortPool
	rtpConn   *net.UDPConn
	rtcpConn  *net.UDPConn
	port      int
	ssrc      uint32
	rtcpEvery time.Duration
	mode      LatchMode
	relatch   time.Duration // relatchAfter, shorter in tests

	mu         sync.Mutex
	expect     netip.AddrPort // the peer's RTP address from its SDP
	expectRTCP netip.AddrPort
	remote     netip.AddrPort
	remoteRTCP netip.AddrPort
	latched    bool
	rtcpLatch  bool
	lastIn     time.Time
	handlers   Handlers
	started    bool
	wbuf       []byte
	sbuf       []byte     // SRTP output
	srtp       *srtpState // nil: plain RTP (srtp_endpoint.go)
	lastTS     uint32
	octets     uint32
	sent       uint32

	packetsIn, packetsOut, bytesIn, bytesOut, dropped, rtcpIn, rtcpOut, strangers atomic.Uint64

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// Open allocates a port pair with no owner and returns an endpoint on it (not yet reading).
func (p *PortPool) Open() (*Endpoint, error) { return p.OpenFor("") }

// OpenFor allocates a port pair counted against owner's limits (SetOwnerLimits; "" is no
// owner) and returns an endpoint on it (not yet reading). The errors are ErrNoPorts,
// ErrOwnerQuota and ErrReserve (wrapped).
func (p *PortPool) OpenFor(owner string) (*Endpoint, error) {
	a, b, port, err := p.allocate(owner)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	every, mode, relatch := p.rtcpEvery, p.latch, p.relatch
	p.mu.Unlock()
	return &Endpoint{pool: p, rtpConn: a, rtcpConn: b, port: port, ssrc: rand.Uint32(), rtcpEvery: every,
		mode: mode, relatch: relatch, wbuf: make([]byte, 1500), sbuf: make([]byte, 1600), done: make(chan struct{})}, nil
}

// Port returns the RTP port (RTCP is Port()+1).
func (e *Endpoint) Port() int { return e.port }

// LocalAddr returns the bound RTP address.
func (e *Endpoint) LocalAddr() netip.AddrPort {
	return netip.AddrPortFrom(e.pool.ip, uint16(e.port))
}

// SSRC returns the SSRC this endpoint sends with.
func (e *Endpoint) SSRC() uint32 { return e.ssrc }

// LatchMode returns the endpoint's latch mode.
func (e *Endpoint) LatchMode() LatchMode { return e.mode }

// SetRemote sets the peer's address from its SDP: where RTP and RTCP go until the peer's real
// source is learned, and which source is accepted (LatchMode). An invalid rtcp address means
// RTP port + 1.
func (e *Endpoint) SetRemote(rtpAddr, rtcpAddr netip.AddrPort) {
	rtpAddr = unmap(rtpAddr)
	rtcpAddr = unmap(rtcpAddr)
	if !rtcpAddr.IsValid() && rtpAddr.IsValid() {
		rtcpAddr = netip.AddrPortFrom(rtpAddr.Addr(), rtpAddr.Port()+1)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expect, e.expectRTCP = rtpAddr, rtcpAddr
	if !e.latched {
		e.remote = rtpAddr
	}
	if !e.rtcpLatch {
		e.remoteRTCP = rtcpAddr
	}
}

// ResetLatch forgets the latched source (for a re-INVITE that moves the peer): until the
// next valid packet arrives, the endpoint sends to the address given by SetRemote.
func (e *Endpoint) ResetLatch() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latched, e.rtcpLatch = false, false
	e.remote, e.remoteRTCP = e.expect, e.expectRTCP
}

func unmap(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// SetRemoteFromSDP points the endpoint at the stream described by d.
func (e *Endpoint) SetRemoteFromSDP(d *Description) {
	r := netip.AddrPortFrom(d.Addr, uint16(d.Port))
	var c netip.AddrPort
	switch {
	case d.RTCPMux:
		c = r
	case d.RTCPPort != 0:
		c = netip.AddrPortFrom(d.Addr, uint16(d.RTCPPort))
	}
	e.SetRemote(r, c)
}

// Start begins reading; it may be called once.
func (e *Endpoint) Start(h Handlers) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("plainrtp: endpoint already started")
	}
	select {
	case <-e.done:
		return errors.New("plainrtp: endpoint closed")
	default:
	}
	e.started = true
	e.handlers = h
	e.wg.Add(3)
	go e.readRTP()
	go e.readRTCP()
	go e.reportLoop()
	return nil
}

func (e *Endpoint) readRTP() {
	defer e.wg.Done()
	buf := make([]byte, 1500)
	plain := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, from, err := e.rtpConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := buf[:n]
		if n >= 2 && b[1] >= 192 && b[1] <= 223 { // RTCP multiplexed on the RTP port
			e.handleRTCP(b, from)
			continue
		}
		if n < 12 || b[0]>>6 != 2 || pkt.Unmarshal(b) != nil {
			e.dropped.Add(1)
			continue
		}
		if st := e.srtpNow(); st != nil {
			d, err := st.unprotectRTP(plain[:0], b, &pkt.Header)
			if err != nil || pkt.Unmarshal(d) != nil {
				e.dropped.Add(1) // not authenticated with the peer's key, or replayed
				continue
			}
		}
		if e.handlers.AcceptPT != nil && !e.handlers.AcceptPT(pkt.PayloadType) {
			e.dropped.Add(1)
			continue
		}
		if !e.latch(from) {
			e.dropped.Add(1)
			e.strangers.Add(1)
			continue
		}
		e.packetsIn.Add(1)
		e.bytesIn.Add(uint64(n))
		if e.handlers.RTP != nil {
			e.handlers.RTP(&pkt)
		}
	}
}

// latch says whether a valid RTP packet from from is the peer's, and learns where to send
// (see LatchMode).
func (e *Endpoint) latch(from netip.AddrPort) bool { return e.latchAt(unmap(from), time.Now()) }

func (e *Endpoint) latchAt(from netip.AddrPort, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.acceptRTPLocked(from, now) {
		return false
	}
	if !e.latched || from != e.remote {
		e.remote = from
		e.latched = true
		if !e.rtcpLatch && from != e.expect {
			e.remoteRTCP = netip.AddrPortFrom(from.Addr(), from.Port()+1)
		}
	}
	e.lastIn = now
	return true
}

func (e *Endpoint) acceptRTPLocked(from netip.AddrPort, now time.Time) bool {
	if from == e.remote || (e.expect.IsValid() && from == e.expect) {
		return true // the SDP's own address always is the peer
	}
	silent := now.Sub(e.lastIn) >= e.relatch
	switch e.mode {
	case LatchIP:
		if !e.expect.IsValid() || from.Addr() != e.expect.Addr() {
			return false
		}
		return !e.latched || silent
	case LatchAny:
		if !e.latched {
			return true
		}
		return from.Addr() == e.remote.Addr() && silent
	}
	return false
}

// acceptRTCPLocked says whether RTCP from from is the peer's.
func (e *Endpoint) acceptRTCPLocked(from netip.AddrPort) bool {
	switch {
	case e.expect.IsValid() && (from == e.expect || from == e.expectRTCP):
		return true
	case e.rtcpLatch && from == e.remoteRTCP:
		return true
	}
	switch e.mode {
	case LatchIP:
		return e.expect.IsValid() && from.Addr() == e.expect.Addr()
	case LatchAny:
		return e.latched && from.Addr() == e.remote.Addr()
	}
	return false
}

func (e *Endpoint) readRTCP() {
	defer e.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := e.rtcpConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.handleRTCP(buf[:n], from)
	}
}

func (e *Endpoint) handleRTCP(b []byte, from netip.AddrPort) {
	if st := e.srtpNow(); st != nil {
		d, err := st.unprotectRTCP(nil, b)
		if err != nil {
			e.dropped.Add(1)
			return
		}
		b = d
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		e.dropped.Add(1)
		return
	}
	from = unmap(from)
	e.mu.Lock()
	if !e.acceptRTCPLocked(from) {
		e.mu.Unlock()
		e.dropped.Add(1)
		e.strangers.Add(1)
		return
	}
	e.remoteRTCP, e.rtcpLatch = from, true
	e.mu.Unlock()
	e.rtcpIn.Add(1)
	if e.handlers.RTCP != nil {
		e.handlers.RTCP(pkts)
	}
}

// reportLoop sends an RTCP sender report periodically while we are sending.
func (e *Endpoint) reportLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.rtcpEvery)
	defer t.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
			e.mu.Lock()
			sent, octets, ts := e.sent, e.octets, e.lastTS
			e.mu.Unlock()
			if sent == 0 {
				continue
			}
			_ = e.WriteRTCP([]rtcp.Packet{&rtcp.SenderReport{SSRC: e.ssrc, NTPTime: ntpTime(time.Now()),
				RTPTime: ts, PacketCount: sent, OctetCount: octets}})
		}
	}
}

func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return sec<<32 | frac
}

// WriteRTP sends p to the peer with this endpoint's SSRC (p.SSRC is overwritten). Packets are
// dropped silently while the peer's address is unknown.
func (e *Endpoint) WriteRTP(p *rtp.Packet) error {
	p.SSRC = e.ssrc
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.remote.IsValid() || e.remote.Port() == 0 {
		return nil
	}
	n, err := p.MarshalTo(e.wbuf)
	if err != nil {
		return fmt.Errorf("plainrtp: marshal: %w", err)
	}
	out := e.wbuf[:n]
	if e.srtp != nil {
		if out, err = e.srtp.protectRTP(e.sbuf[:0], out, &p.Header); err != nil {
			return fmt.Errorf("plainrtp: SRTP: %w", err)
		}
	}
	if _, err := e.rtpConn.WriteToUDPAddrPort(out, e.remote); err != nil {
		return err
	}
	e.sent++
	e.octets += uint32(len(p.Payload))
	e.lastTS = p.Timestamp
	e.packetsOut.Add(1)
	e.bytesOut.Add(uint64(n))
	return nil
}

// WriteRTCP sends an RTCP compound packet to the peer's RTCP address.
func (e *Endpoint) WriteRTCP(pkts []rtcp.Packet) error {
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	e.mu.Lock()
	to, rtpTo, st := e.remoteRTCP, e.remote, e.srtp
	e.mu.Unlock()
	if !to.IsValid() || to.Port() == 0 {
		return nil
	}
	if st != nil {
		if b, err = st.protectRTCP(nil, b); err != nil {
			return fmt.Errorf("plainrtp: SRTCP: %w", err)
		}
	}
	conn := e.rtcpConn
	if to == rtpTo { // rtcp-mux
		conn = e.rtpConn
	}
	if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
		return err
	}
	e.rtcpOut.Add(1)
	return nil
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{PacketsIn: e.packetsIn.Load(), PacketsOut: e.packetsOut.Load(),
		BytesIn: e.bytesIn.Load(), BytesOut: e.bytesOut.Load(), Dropped: e.dropped.Load(),
		RTCPIn: e.rtcpIn.Load(), RTCPOut: e.rtcpOut.Load(), LastIn: e.lastIn,
		Remote: e.remote, Latched: e.latched, Strangers: e.strangers.Load()}
}

// Close stops the endpoint, waits for its goroutines and puts its ports in quarantine.
// It is safe to call more than once.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		close(e.done)
		e.rtpConn.Close()
		e.rtcpConn.Close()
		e.wg.Wait()
		e.pool.release(e.port)
	})
	return nil
}
