package media

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// srtpPeer is an SRTP phone: pion/srtp directly over a loopback socket, PCMU only. Every
// datagram it receives is checked not to carry the plain audio it decrypts to.
type srtpPeer struct {
	t     testing.TB
	conn  *net.UDPConn
	key   plainrtp.Crypto // ours
	mu    sync.Mutex
	to    netip.AddrPort
	tx    *srtp.Context
	rx    *srtp.Context
	pcm   []int16
	pkts  int
	plain int // datagrams whose payload was readable without decryption
	done  chan struct{}
}

func newSRTPPeer(t testing.TB, suite string) *srtpPeer {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(t, err)
	k, err := plainrtp.NewCrypto(1, suite)
	must(t, err)
	p := &srtpPeer{t: t, conn: conn, key: k, done: make(chan struct{})}
	p.tx = srtpContext(t, k)
	go p.read()
	t.Cleanup(func() { conn.Close(); <-p.done })
	return p
}

func srtpContext(t testing.TB, c plainrtp.Crypto) *srtp.Context {
	prof, key, salt, err := c.Profile()
	must(t, err)
	ctx, err := srtp.CreateContext(key, salt, prof)
	must(t, err)
	return ctx
}

func (p *srtpPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// offer is the peer's RTP/SAVP offer with its key (tag 1).
func (p *srtpPeer) offer() string {
	d := plainrtp.Offer(loopback, p.port(), []plainrtp.Codec{plainrtp.PCMU}, 7)
	d.Profile = "RTP/SAVP"
	d.Crypto = []plainrtp.Crypto{p.key}
	return d.String()
}

// use points the peer at the engine side d, whose key decrypts what the engine sends.
func (p *srtpPeer) use(d *plainrtp.Description, engineKey plainrtp.Crypto) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to = netip.AddrPortFrom(d.Addr, uint16(d.Port))
	p.rx = srtpContext(p.t, engineKey)
}

func (p *srtpPeer) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	dec, _ := codec.NewDecoder("pcmu", 8000)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		if n >= 2 && buf[1] >= 192 && buf[1] <= 223 {
			continue // SRTCP
		}
		p.mu.Lock()
		if p.rx == nil {
			p.mu.Unlock()
			continue
		}
		var h rtp.Header
		hl, herr := h.Unmarshal(buf[:n])
		clear, err := p.rx.DecryptRTP(nil, buf[:n], nil)
		if err == nil && herr == nil {
			p.pkts++
			if bytes.Contains(buf[:n], clear[hl:min(hl+16, len(clear))]) {
				p.plain++
			}
			p.pcm, _ = dec.Decode(p.pcm, clear[hl:])
		}
		p.mu.Unlock()
	}
}

func (p *srtpPeer) sendTone(ctx context.Context, freq float64, d time.Duration) {
	ssrc := rand.Uint32()
	sendTone(ctx, "pcmu", freq, d, func(pkt *rtp.Packet) {
		pkt.PayloadType, pkt.SSRC = 0, ssrc
		b, _ := pkt.Marshal()
		p.mu.Lock()
		out, err := p.tx.EncryptRTP(nil, b, nil)
		to := p.to
		p.mu.Unlock()
		if err == nil {
			_, _ = p.conn.WriteToUDPAddrPort(out, to)
		}
	})
}

func (p *srtpPeer) heard() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}

// A SIP phone offering RTP/SAVP (each suite) calls through a proxy session to a plain RTP far
// side: the engine answers RTP/SAVP with a key of its own, and audio flows both ways, checked
// by tone; what the engine sends the phone is encrypted on the wire.
func TestProxySRTPCallerToPlainRTP(t *testing.T) {
	for _, suite := range []string{plainrtp.SuiteAES80, plainrtp.SuiteAES32, plainrtp.SuiteGCM} {
		t.Run(suite, func(t *testing.T) {
			e := newTestEngine(t, nil)
			phone := newSRTPPeer(t, suite)
			far := newRTPPeer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: phone.offer()}, KindRTP, SessionOptions{})
			must(t, err)
			defer s.Close()
			if strings.Contains(farOffer.SDP, "a=crypto") {
				t.Fatalf("far offer has SDES keys without Config.SDESOffers:\n%s", farOffer.SDP)
			}
			off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
			must(t, err)
			ans, err := plainrtp.Answer(off, loopback, far.Port(), []plainrtp.Codec{plainrtp.PCMU}, nil)
			must(t, err)
			far.use(off)
			callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
			must(t, err)
			ca, err := plainrtp.ParseSDP([]byte(callerAns.SDP))
			must(t, err)
			if ca.Profile != "RTP/SAVP" || len(ca.Crypto) != 1 || ca.Crypto[0].Suite != suite || ca.Crypto[0].Tag != 1 {
				t.Fatalf("answer to the SRTP phone:\n%s", callerAns.SDP)
			}
			phone.use(ca, ca.Crypto[0])
			bothTones(t, func() { phone.sendTone(ctx, 1000, 2*time.Second) }, func() { far.sendTone(ctx, plainrtp.PCMU, 600, 2*time.Second) }, phone.heard, far.Heard)
			pp, _ := phone.heard()
			pf, _ := far.Heard()
			assertTone(t, "srtp phone", pp, 600, 1000)
			assertTone(t, "plain far", pf, 1000, 600)
			phone.mu.Lock()
			plain := phone.plain
			phone.mu.Unlock()
			if plain != 0 {
				t.Fatalf("%d packets to the SRTP phone carried readable audio", plain)
			}

			// A re-INVITE repeating the phone's key is answered with the same engine key;
			// audio goes on.
			re, err := s.ReofferRTP(SideCaller, Description{Kind: KindRTP, SDP: phone.offer()})
			must(t, err)
			rd, err := plainrtp.ParseSDP([]byte(re.SDP))
			must(t, err)
			if len(rd.Crypto) != 1 || !bytes.Equal(rd.Crypto[0].Key, ca.Crypto[0].Key) {
				t.Fatalf("re-offer answer changed our key:\n%s", re.SDP)
			}
		})
	}
}

// With Config.SDESOffers the far offer carries keys (RTP/AVP, best effort); a far side
// answering with one gets SRTP, by tone both ways.
func TestProxySDESOfferToSRTPFar(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.SDESOffers = true })
	caller := newRTPPeer(t)
	far := newSRTPPeer(t, plainrtp.SuiteGCM)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: caller.description(plainrtp.PCMU).String()}, KindRTP, SessionOptions{})
	must(t, err)
	defer s.Close()
	off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
	must(t, err)
	if off.Profile != "RTP/AVP" || len(off.Crypto) != 3 {
		t.Fatalf("far offer:\n%s", farOffer.SDP)
	}
	var gcm plainrtp.Crypto
	for _, c := range off.Crypto {
		if c.Suite == plainrtp.SuiteGCM {
			gcm = c
		}
	}
	ans := plainrtp.Offer(loopback, far.port(), []plainrtp.Codec{plainrtp.PCMU}, 9)
	ans.Profile = "RTP/SAVP"
	far.key.Tag = gcm.Tag
	ans.Crypto = []plainrtp.Crypto{far.key}
	far.use(off, gcm)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	must(t, err)
	if strings.Contains(callerAns.SDP, "a=crypto") {
		t.Fatalf("plain caller got keys:\n%s", callerAns.SDP)
	}
	ca, err := plainrtp.ParseSDP([]byte(callerAns.SDP))
	must(t, err)
	caller.use(ca)
	bothTones(t, func() { caller.sendTone(ctx, plainrtp.PCMU, 1000, 2*time.Second) }, func() { far.sendTone(ctx, 600, 2*time.Second) }, caller.Heard, far.heard)
	pc, _ := caller.Heard()
	pf, _ := far.heard()
	assertTone(t, "plain caller", pc, 600, 1000)
	assertTone(t, "srtp far", pf, 1000, 600)
}

// An RTP/SAVP offer without a usable key, or with a malformed one, is refused as a bad SDP;
// the engine keeps working.
func TestSRTPBadOffers(t *testing.T) {
	e := newTestEngine(t, nil)
	phone := newSRTPPeer(t, plainrtp.SuiteAES80)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good := phone.offer()
	for name, sdp := range map[string]string{
		"no key":      strings.Replace(good, "a=crypto:", "a=x-crypto:", 1),
		"short key":   strings.Replace(good, "inline:", "inline:AAAA", 1),
		"wrong suite": strings.Replace(good, plainrtp.SuiteAES80, "NULL_HMAC_SHA1_80", 1),
	} {
		if _, _, err := e.StartEcho(ctx, Description{Kind: KindRTP, SDP: sdp}, SessionOptions{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, _, err := e.StartEcho(ctx, Description{Kind: KindRTP, SDP: good}, SessionOptions{})
	must(t, err)
	s.Close()
}
