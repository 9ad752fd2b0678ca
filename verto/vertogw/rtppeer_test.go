package vertogw

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/dtmf"
	"github.com/nkbridge/nkbridge/media/plainrtp"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/pion/rtp"
)

// rtpPeer is a plain-RTP phone on 127.0.0.1 standing in for a SIP device (the SIP stack is not
// part of these tests): registered as the resolver of call type "sip", it answers the far
// offer with PCMU + telephone-event, plays a tone, decodes what it receives and detects
// RFC 4733 digits.
type rtpPeer struct {
	t    *testing.T
	tone float64

	mu       sync.Mutex
	invites  int
	conn     *net.UDPConn
	pcm      []int16 // the last received samples (8 kHz), bounded
	digits   []rune
	hangups  []*signaling.Error
	stop     chan struct{}
	wg       sync.WaitGroup
	answered chan struct{}
}

func newRTPPeer(t *testing.T, tone float64) *rtpPeer {
	p := &rtpPeer{t: t, tone: tone, answered: make(chan struct{}, 4)}
	t.Cleanup(p.close)
	return p
}

func (p *rtpPeer) Resolve(_ context.Context, dest signaling.Destination) ([]signaling.Invitee, error) {
	return []signaling.Invitee{p}, nil
}

func (p *rtpPeer) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	if inv.Offer.SDPType() != "rtp" {
		return signaling.Errorf(signaling.CodeInvalidParameters, "rtp peer: want an RTP offer, got %q", inv.Offer.SDPType())
	}
	offer, err := plainrtp.ParseSDP([]byte(inv.Offer.SDP()))
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	supported := []plainrtp.Codec{plainrtp.PCMU}
	for _, c := range offer.Codecs {
		if c.IsTelephoneEvent() && c.Rate == 8000 {
			supported = append(supported, c)
		}
	}
	ans, err := plainrtp.Answer(offer, netip.MustParseAddr("127.0.0.1"), port, supported, []plainrtp.Codec{plainrtp.PCMU})
	if err != nil {
		conn.Close()
		return err
	}
	te, _ := ans.TelephoneEvent(8000)
	remote := &net.UDPAddr{IP: offer.Addr.AsSlice(), Port: offer.Port}
	p.mu.Lock()
	p.invites++
	p.conn = conn
	p.pcm, p.digits = nil, nil
	p.stop = make(chan struct{})
	stop := p.stop
	p.mu.Unlock()
	p.wg.Add(2)
	go p.send(conn, remote, stop)
	go p.receive(conn, te.PT)
	h.Ringing(nil)
	go func() {
		if err := h.Accepted(signaling.Desc{"sdp": string(ans.Marshal()), "sdp_type": "rtp"}, ""); err != nil {
			p.t.Errorf("rtp peer: accepted: %v", err)
		}
		p.answered <- struct{}{}
	}()
	return nil
}

func (p *rtpPeer) Hangup(err *signaling.Error) {
	p.mu.Lock()
	p.hangups = append(p.hangups, err)
	p.mu.Unlock()
	p.close()
}

func (p *rtpPeer) close() {
	p.mu.Lock()
	conn, stop := p.conn, p.stop
	p.conn, p.stop = nil, nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	if conn != nil {
		conn.Close()
	}
	p.wg.Wait()
}

// send plays the tone as PCMU, 20 ms per packet, for as long as the call lasts (bounded).
func (p *rtpPeer) send(conn *net.UDPConn, to *net.UDPAddr, stop chan struct{}) {
	defer p.wg.Done()
	samples := audiotest.Tone(p.tone, 8000, 8000, 8000)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: plainrtp.PCMU.PT, SSRC: 0x1234}}
	for i := 0; i < 3000; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		pl := make([]byte, 160)
		for j := range pl {
			pl[j] = codec.LinearToUlaw(samples[(i*160+j)%len(samples)])
		}
		pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = uint16(i), uint32(i*160), pl
		b, _ := pkt.Marshal()
		if _, err := conn.WriteToUDP(b, to); err != nil {
			return
		}
	}
}

func (p *rtpPeer) receive(conn *net.UDPConn, tePT uint8) {
	defer p.wg.Done()
	var det dtmf.Detector
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		p.mu.Lock()
		switch {
		case tePT != 0 && pkt.PayloadType == tePT:
			if d, ok := det.Push(pkt.Timestamp, pkt.Payload); ok {
				p.digits = append(p.digits, d)
			}
		case pkt.PayloadType == plainrtp.PCMU.PT:
			for _, b := range pkt.Payload {
				p.pcm = append(p.pcm, codec.UlawToLinear(b))
			}
			if len(p.pcm) > 16000 {
				p.pcm = append([]int16(nil), p.pcm[len(p.pcm)-8000:]...)
			}
		}
		p.mu.Unlock()
	}
}

// heard returns the dominant frequency (among candidates) of the last half second received.
func (p *rtpPeer) heard(candidates ...float64) (float64, float64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.pcm
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	if len(s) < 1600 {
		return 0, 0, len(s)
	}
	f, r := audiotest.Dominant(s, 8000, candidates...)
	return f, r, len(s)
}

func (p *rtpPeer) gotDigits() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.digits)
}

func (p *rtpPeer) hangupCodes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, e := range p.hangups {
		out = append(out, e.Code)
	}
	return out
}
