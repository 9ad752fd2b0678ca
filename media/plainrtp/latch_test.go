package plainrtp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// latchRig is an endpoint with a peer (the address of its SDP) and a stranger, counting
// what the endpoint delivers from each (by SSRC).
type latchRig struct {
	t        *testing.T
	ep       *Endpoint
	peer     *net.UDPConn
	stranger *net.UDPConn
	mu       sync.Mutex
	got      map[uint32]int
	seq      uint16
}

const (
	peerSSRC     = 1111
	strangerSSRC = 6666
)

func newLatchRig(t *testing.T, mode LatchMode, strangerIP netip.Addr) *latchRig {
	t.Helper()
	pool, err := NewPortPool(lo, 41100, 41200, 0, nil)
	must(t, err)
	must(t, pool.SetLatchMode(mode))
	pool.relatch = 150 * time.Millisecond
	ep, err := pool.Open()
	must(t, err)
	t.Cleanup(func() { ep.Close() })
	r := &latchRig{t: t, ep: ep, got: map[uint32]int{}}
	must(t, ep.Start(Handlers{AcceptPT: func(pt uint8) bool { return pt == 0 }, RTP: func(p *rtp.Packet) {
		r.mu.Lock()
		r.got[p.SSRC]++
		r.mu.Unlock()
	}}))
	r.peer, err = net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
	must(t, err)
	t.Cleanup(func() { r.peer.Close() })
	r.stranger, err = net.ListenUDP("udp", &net.UDPAddr{IP: strangerIP.AsSlice()})
	must(t, err)
	t.Cleanup(func() { r.stranger.Close() })
	ep.SetRemote(r.peer.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{})
	return r
}

func (r *latchRig) send(c *net.UDPConn, ssrc uint32) {
	r.seq++
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: r.seq, SSRC: ssrc}, Payload: make([]byte, 160)}).Marshal()
	if _, err := c.WriteToUDPAddrPort(b, r.ep.LocalAddr()); err != nil {
		r.t.Fatal(err)
	}
}

// waitCount waits until the endpoint has seen n packets in all (delivered or dropped).
func (r *latchRig) waitCount(n uint64) {
	r.t.Helper()
	peers.WaitFor(r.t, 2*time.Second, fmt.Sprintf("the endpoint to see %d packets", n), func() bool {
		st := r.ep.Stats()
		return st.PacketsIn+st.Dropped >= n
	})
}

func (r *latchRig) delivered(ssrc uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[ssrc]
}

// receivedAny reports whether c receives anything within d.
func receivedAny(c *net.UDPConn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	_, err := c.Read(buf)
	return err == nil
}

// strangerDuringSilence: after seen packets, the peer stays silent past the relatch delay
// while the stranger sends five more; the endpoint then sends, and the stranger must get
// nothing and have had nothing delivered, the peer's one packet only.
func (r *latchRig) strangerDuringSilence(seen uint64) {
	r.t.Helper()
	time.Sleep(300 * time.Millisecond) // the scenario: silence longer than the relatch delay
	for range 5 {
		r.send(r.stranger, strangerSSRC)
	}
	r.waitCount(seen + 5)
	must(r.t, r.ep.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2}, Payload: []byte{1}}))
	if receivedAny(r.stranger, 200*time.Millisecond) {
		r.t.Fatal("the stranger received the call's audio")
	}
	if r.delivered(strangerSSRC) != 0 || r.delivered(peerSSRC) != 1 {
		r.t.Fatalf("delivered %v", r.got)
	}
}

// TestLatchStrictStranger: in strict mode (the default) a stranger on the same host that
// sends first, and keeps sending while the peer is silent, is never accepted nor answered.
func TestLatchStrictStranger(t *testing.T) {
	r := newLatchRig(t, LatchStrict, lo)
	if r.ep.LatchMode() != LatchStrict {
		t.Fatalf("mode %q", r.ep.LatchMode())
	}
	r.send(r.stranger, strangerSSRC) // first packet of all: before the fix it latched
	r.send(r.peer, peerSSRC)
	r.waitCount(2)
	r.strangerDuringSilence(2)
	if !receivedAny(r.peer, time.Second) {
		t.Fatal("the peer received nothing")
	}
	if st := r.ep.Stats(); st.Strangers != 6 || st.Remote != r.peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("stats %+v", st)
	}
}

// TestLatchIPNATPort: in ip mode a peer whose NAT changed its port is accepted (and
// answered on that port), a stranger on another host never.
func TestLatchIPNATPort(t *testing.T) {
	r := newLatchRig(t, LatchIP, netip.MustParseAddr("127.0.0.2"))
	natted, err := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()}) // the peer's host, another port
	must(t, err)
	defer natted.Close()
	r.send(r.stranger, strangerSSRC)
	r.send(natted, peerSSRC)
	r.waitCount(2)
	must(t, r.ep.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2}, Payload: []byte{1}}))
	if !receivedAny(natted, time.Second) {
		t.Fatal("the NATed peer received nothing")
	}
	r.strangerDuringSilence(2)
	if !receivedAny(natted, time.Second) {
		t.Fatal("the NATed peer lost the call's audio")
	}
}

// TestLatchAnyNoRelatchToStranger: in any mode the first source wins, but after the peer
// goes silent a source on another host does not take over.
func TestLatchAnyNoRelatchToStranger(t *testing.T) {
	r := newLatchRig(t, LatchAny, netip.MustParseAddr("127.0.0.2"))
	r.ep.SetRemote(netip.AddrPortFrom(netip.MustParseAddr("10.1.2.3"), 4000), netip.AddrPort{}) // private SDP address
	r.send(r.peer, peerSSRC)
	r.waitCount(1)
	r.strangerDuringSilence(1)
	if !receivedAny(r.peer, time.Second) {
		t.Fatal("the peer received nothing")
	}
}

func TestLatchModeValid(t *testing.T) {
	pool, err := NewPortPool(lo, 41300, 41302, 0, nil)
	must(t, err)
	if err := pool.SetLatchMode("sometimes"); err == nil {
		t.Fatal("bad mode accepted")
	}
}

// TestPortsRandomOrder: consecutive allocations are not sequential, so a port number tells
// nothing about the next call's.
func TestPortsRandomOrder(t *testing.T) {
	pool, err := NewPortPool(lo, 41400, 41798, 0, nil)
	must(t, err)
	var ports []int
	for range 20 {
		ep, err := pool.Open()
		must(t, err)
		defer ep.Close()
		ports = append(ports, ep.Port())
	}
	seq := 0
	for i := 1; i < len(ports); i++ {
		if ports[i]-ports[i-1] == 2 {
			seq++
		}
	}
	// Random among 200 pairs: a step of exactly one pair is rare (expected 0.1 in 19).
	if seq > 3 {
		t.Fatalf("ports handed out in sequence: %v", ports)
	}
	t.Logf("ports %v", ports)
}

// TestPortsRandomFullRange: random order still finds the last free pair.
func TestPortsRandomFullRange(t *testing.T) {
	pool, err := NewPortPool(lo, 41500, 41538, 0, nil)
	must(t, err)
	seen := map[int]bool{}
	for range pool.Pairs() {
		ep, err := pool.Open()
		must(t, err)
		defer ep.Close()
		if seen[ep.Port()] || ep.Port()%2 != 0 || ep.Port() < 41500 || ep.Port() > 41538 {
			t.Fatalf("port %d", ep.Port())
		}
		seen[ep.Port()] = true
	}
	if _, err := pool.Open(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("full pool: %v", err)
	}
}

// TestOwnerLimits: one owner cannot take more than its quota, nor eat the reserve beyond
// one call; others (and owner-less legs) still get ports.
func TestOwnerLimits(t *testing.T) {
	pool, err := NewPortPool(lo, 41600, 41618, 0, nil) // 10 pairs
	must(t, err)
	pool.SetOwnerLimits(6, 3)
	var eps []*Endpoint
	defer func() {
		for _, ep := range eps {
			ep.Close()
		}
	}()
	open := func(owner string) error {
		ep, err := pool.OpenFor(owner)
		if err == nil {
			eps = append(eps, ep)
		}
		return err
	}
	for range 6 {
		must(t, open("mallory"))
	}
	if err := open("mallory"); !errors.Is(err, ErrOwnerQuota) {
		t.Fatalf("7th pair: %v", err)
	}
	must(t, open("bob")) // 3 free left now: the reserve
	must(t, open("bob")) // a user's first call comes from the reserve
	if err := open("bob"); !errors.Is(err, ErrReserve) {
		t.Fatalf("bob's third pair from the reserve: %v", err)
	}
	must(t, open("carol"))
	if pool.Owned("mallory") != 6 || pool.Owned("bob") != 2 {
		t.Fatalf("owned %d %d", pool.Owned("mallory"), pool.Owned("bob"))
	}
	eps[0].Close()
	if pool.Owned("mallory") != 5 {
		t.Fatalf("after close: %d", pool.Owned("mallory"))
	}
	if err := open(""); err != nil { // no owner: not limited
		t.Fatal(err)
	}
}

// FuzzLatch drives the latch decision with arbitrary sources and timings and checks the rule
// every mode keeps: strict accepts only the SDP's address, ip only the SDP's host, and any —
// once latched — only the latched host or the SDP's address.
func FuzzLatch(f *testing.F) {
	f.Add(uint8(0), []byte{0x10, 0x00, 0x05, 0x20, 0x00})
	f.Add(uint8(1), []byte{0x11, 0x01, 0x30, 0xff, 0x01, 0x02})
	f.Add(uint8(2), []byte{0x33, 0x00, 0x22, 0xff, 0x31, 0xff, 0x00})
	f.Fuzz(func(t *testing.T, m uint8, steps []byte) {
		if len(steps) > 200 {
			steps = steps[:200]
		}
		mode := []LatchMode{LatchStrict, LatchIP, LatchAny}[m%3]
		hosts := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
			netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::1")}
		sdp := netip.AddrPortFrom(hosts[0], 4000)
		e := &Endpoint{mode: mode, relatch: relatchAfter}
		e.SetRemote(sdp, netip.AddrPort{})
		now := time.Unix(1_700_000_000, 0)
		var latchedHost netip.Addr
		for _, b := range steps {
			now = now.Add(time.Duration(b&0x0f) * 250 * time.Millisecond)
			from := netip.AddrPortFrom(hosts[b>>4&3], uint16(4000+int(b>>6)))
			ok := e.latchAt(from, now)
			if !ok {
				continue
			}
			switch {
			case mode == LatchStrict && from != sdp:
				t.Fatalf("strict accepted %v", from)
			case mode == LatchIP && from.Addr() != sdp.Addr():
				t.Fatalf("ip accepted %v", from)
			case mode == LatchAny && latchedHost.IsValid() && from.Addr() != latchedHost && from != sdp:
				t.Fatalf("any re-latched from %v to %v", latchedHost, from)
			}
			latchedHost = from.Addr()
			if st := e.Stats(); st.Remote != from && mode != LatchStrict {
				t.Fatalf("sending to %v after accepting %v", st.Remote, from)
			}
		}
	})
}
