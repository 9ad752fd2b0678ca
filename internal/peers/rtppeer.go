package peers

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
)

// RTPPeer is a plain-RTP phone on a loopback UDP socket: a stand-in for a SIP
// device in tests that need no SIP stack. It decodes what it receives by
// payload type (the names it learned from an SDP or from Learn) to 8 kHz,
// detects RFC 4733 digits, and sends tones and digits paced in real time with
// its own SSRC and running sequence number and timestamp.
type RTPPeer struct {
	t    testing.TB
	conn *net.UDPConn
	done chan struct{}

	mu        sync.Mutex
	to        netip.AddrPort
	names     map[uint8]string // payload type -> lower-case codec name
	ssrc      uint32
	seq       uint16
	ts        uint32
	amplitude float64
	pcm       []int16 // received, decoded at 8 kHz
	pkts      int
	from      netip.AddrPort
	digits    []rune
	tePTs     []uint8 // the payload type of each telephone-event packet received
	det       dtmf.Detector
}

// NewRTPPeer opens the peer's socket on 127.0.0.1; it is closed when the
// test ends. It knows no payload type until Learn or UseSDP.
func NewRTPPeer(t testing.TB) *RTPPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &RTPPeer{t: t, conn: conn, done: make(chan struct{}), names: map[uint8]string{},
		ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(), amplitude: 8000}
	go p.read()
	t.Cleanup(func() { conn.Close(); <-p.done })
	return p
}

// Port is the peer's RTP port.
func (p *RTPPeer) Port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// Conn is the peer's socket, for tests that send something else from it
// (RTCP, junk) or close it early.
func (p *RTPPeer) Conn() *net.UDPConn { return p.conn }

// SetAmplitude sets the amplitude of the tones sent (default 8000).
func (p *RTPPeer) SetAmplitude(a float64) {
	p.mu.Lock()
	p.amplitude = a
	p.mu.Unlock()
}

// Learn maps payload type pt to codec name (e.g. "pcmu", "telephone-event").
func (p *RTPPeer) Learn(pt uint8, name string) {
	p.mu.Lock()
	p.names[pt] = strings.ToLower(name)
	p.mu.Unlock()
}

// SetRemote points the peer at to.
func (p *RTPPeer) SetRemote(to netip.AddrPort) {
	p.mu.Lock()
	p.to = to
	p.mu.Unlock()
}

// Remote is where the peer sends.
func (p *RTPPeer) Remote() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.to
}

// SDP is the peer's offer or answer: PCMU and telephone-event/8000 (PT
// 101), direction "" meaning sendrecv.
func (p *RTPPeer) SDP(direction string) string {
	if direction == "" {
		direction = "sendrecv"
	}
	return fmt.Sprintf("v=0\r\no=peer 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"+
		"a=fmtp:101 0-15\r\na=ptime:20\r\na=%s\r\n", p.Port(), direction)
}

var (
	reMAudio = regexp.MustCompile(`(?m)^m=audio (\d+) `)
	reConn   = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
	reRTPMap = regexp.MustCompile(`(?m)^a=rtpmap:(\d+) ([^/\s]+)/`)
)

// UseSDP points the peer at the audio address of the far end's SDP (which
// must be 127.0.0.1) and learns its payload types.
func (p *RTPPeer) UseSDP(sdp string) {
	p.t.Helper()
	m, c := reMAudio.FindStringSubmatch(sdp), reConn.FindStringSubmatch(sdp)
	if m == nil || c == nil {
		p.t.Fatalf("peers.RTPPeer: no audio address in SDP:\n%s", sdp)
	}
	port, _ := strconv.Atoi(m[1])
	ip, err := netip.ParseAddr(c[1])
	if err != nil || ip != netip.MustParseAddr("127.0.0.1") {
		p.t.Fatalf("peers.RTPPeer: SDP address %q is not 127.0.0.1", c[1])
	}
	p.SetRemote(netip.AddrPortFrom(ip, uint16(port)))
	for _, r := range reRTPMap.FindAllStringSubmatch(sdp, -1) {
		pt, _ := strconv.Atoi(r[1])
		p.Learn(uint8(pt), r[2])
	}
}

func (p *RTPPeer) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	decs := map[string]codec.Decoder{}
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		p.mu.Lock()
		p.pkts++
		p.from = from
		name := p.names[pkt.PayloadType]
		switch {
		case name == "telephone-event":
			p.tePTs = append(p.tePTs, pkt.PayloadType)
			if d, ok := p.det.Push(pkt.Timestamp, pkt.Payload); ok {
				p.digits = append(p.digits, d)
			}
		case name != "":
			d := decs[name]
			if d == nil {
				if d, err = codec.NewDecoder(name, 8000); err != nil {
					p.mu.Unlock()
					continue
				}
				decs[name] = d
			}
			p.pcm, _ = d.Decode(p.pcm, pkt.Payload)
		}
		p.mu.Unlock()
	}
}

// WriteRTP sends pkt with the peer's SSRC (its sequence number and
// timestamp as they are).
func (p *RTPPeer) WriteRTP(pkt *rtp.Packet) {
	p.mu.Lock()
	to := p.to
	pkt.SSRC = p.ssrc
	p.mu.Unlock()
	b, _ := pkt.Marshal()
	_, _ = p.conn.WriteToUDPAddrPort(b, to)
}

// Write sends one packet with the peer's SSRC and next sequence number.
func (p *RTPPeer) Write(pt uint8, marker bool, ts uint32, payload []byte) {
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	p.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
}

// SendTone sends d/20ms packets of a freq Hz tone in codec name as payload
// type pt, one every 20 ms (fewer if ctx ends).
func (p *RTPPeer) SendTone(ctx context.Context, pt uint8, name string, freq float64, d time.Duration) {
	n := int(d / (20 * time.Millisecond))
	p.sendTone(ctx, pt, name, freq, func(i int, _ time.Time) bool { return i < n })
}

// SendToneFor sends a freq Hz tone in codec name as payload type pt every
// 20 ms for d of wall-clock time (a late tick's packets are not made up) or
// until ctx ends.
func (p *RTPPeer) SendToneFor(ctx context.Context, pt uint8, name string, freq float64, d time.Duration) {
	end := time.Now().Add(d)
	p.sendTone(ctx, pt, name, freq, func(_ int, now time.Time) bool { return now.Before(end) })
}

func (p *RTPPeer) sendTone(ctx context.Context, pt uint8, name string, freq float64, more func(i int, now time.Time) bool) {
	enc, err := codec.NewEncoder(name, 8000)
	if err != nil {
		p.t.Errorf("peers.RTPPeer: %v", err)
		return
	}
	step := uint32(enc.ClockRate() / 50)
	p.mu.Lock()
	amp := p.amplitude
	p.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 1500)
	for i := 0; more(i, time.Now()); i++ {
		pcm := make([]int16, 160)
		for j := range pcm { // the tone's phase runs on across packets
			pcm[j] = int16(amp * math.Sin(2*math.Pi*freq*float64(i*160+j)/8000))
		}
		nb, err := enc.Encode(buf, pcm)
		if err != nil {
			p.t.Errorf("peers.RTPPeer: %v", err)
			return
		}
		p.mu.Lock()
		p.ts += step
		ts := p.ts
		p.mu.Unlock()
		p.Write(pt, i == 0, ts, append([]byte(nil), buf[:nb]...))
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // real-time pacing: one packet per 20 ms
		}
	}
}

// SendDigit sends one RFC 4733 event of 100 ms as payload type pt at clock
// rate, its packets paced in real time.
func (p *RTPPeer) SendDigit(digit rune, pt uint8, rate int) {
	pkts, err := dtmf.Generate(digit, 100, 20, rate)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ts += uint32(rate / 50)
	ts := p.ts
	p.mu.Unlock()
	start := time.Now()
	for _, k := range pkts {
		time.Sleep(time.Until(start.Add(time.Duration(k.SendMS) * time.Millisecond))) // real-time pacing of the digit's packets
		p.Write(pt, k.Marker, ts, k.Payload)
	}
}

// Heard returns a copy of the audio decoded so far and the number of
// packets received.
func (p *RTPPeer) Heard() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}

// Reset forgets what was heard (audio and packet count).
func (p *RTPPeer) Reset() {
	p.mu.Lock()
	p.pcm, p.pkts = nil, 0
	p.mu.Unlock()
}

// Count is the number of packets received.
func (p *RTPPeer) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pkts
}

// From is the address the last packet came from.
func (p *RTPPeer) From() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.from
}

// WaitHeard waits up to d until at least samples samples were decoded and
// returns what was heard then (the caller judges it).
func (p *RTPPeer) WaitHeard(samples int, d time.Duration) ([]int16, int) {
	Poll(d, func() bool { pcm, _ := p.Heard(); return len(pcm) >= samples })
	return p.Heard()
}

// Digits returns the RFC 4733 digits detected so far.
func (p *RTPPeer) Digits() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.digits)
}

// EventPTs returns the payload type of every telephone-event packet received.
func (p *RTPPeer) EventPTs() []uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint8(nil), p.tePTs...)
}
