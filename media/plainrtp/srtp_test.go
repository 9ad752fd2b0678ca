package plainrtp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/peers"
)

var key30 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 30))
var key28 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 28))

func TestParseCrypto(t *testing.T) {
	good := map[string]Crypto{
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30:                         {Tag: 1, Suite: SuiteAES80},
		"2 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|2^31":               {Tag: 2, Suite: SuiteAES32, Lifetime: 1 << 31},
		"3 AEAD_AES_128_GCM inline:" + key28:                                {Tag: 3, Suite: SuiteGCM},
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4":           {Tag: 1, Suite: SuiteAES80, Lifetime: 1 << 20, MKI: []byte{0, 0, 0, 1}},
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|258:2":              {Tag: 1, Suite: SuiteAES80, MKI: []byte{1, 2}},
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.TrimRight(key30, "="): {Tag: 1, Suite: SuiteAES80},
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=0 WSH=64":       {Tag: 1, Suite: SuiteAES80},
	}
	for v, want := range good {
		c, err := ParseCrypto(v)
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if c.Tag != want.Tag || c.Suite != want.Suite || c.Lifetime != want.Lifetime || !bytes.Equal(c.MKI, want.MKI) || len(c.Key) == 0 {
			t.Errorf("%q: %+v, want %+v", v, c, want)
		}
		back, err := ParseCrypto(c.String())
		if err != nil || !sameCrypto(back, c) || back.Lifetime != c.Lifetime {
			t.Errorf("%q: round trip %q: %+v %v", v, c.String(), back, err)
		}
	}
	bad := []string{
		"", "1", "1 AES_CM_128_HMAC_SHA1_80", "x AES_CM_128_HMAC_SHA1_80 inline:" + key30,
		"1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key30,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key28,              // GCM-sized key for AES-CM
		"3 AEAD_AES_128_GCM inline:" + key30,                     // AES-CM-sized key for GCM
		"1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!",         // bad base64
		"1 AES_CM_128_HMAC_SHA1_80 uri:http://x/" + key30,        // not inline
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^99",    // lifetime
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|0",       // lifetime
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:0",     // MKI length
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|300:1",   // MKI value too big
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:1|2:1", // two MKIs
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|a|b|c",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.Repeat("A", 2000),
	}
	for _, v := range bad {
		if _, err := ParseCrypto(v); !errors.Is(err, ErrBadCrypto) {
			t.Errorf("%q: %v, want ErrBadCrypto", v, err)
		}
	}
	unsupported := []string{
		"1 F8_128_HMAC_SHA1_80 inline:" + key30,
		"1 AES_256_CM_HMAC_SHA1_80 inline:" + key30,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNENCRYPTED_SRTP",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNAUTHENTICATED_SRTP",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=24",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " SOMETHING_NEW",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4;inline:" + key30 + "|2^20|2:4",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:5",
	}
	for _, v := range unsupported {
		if _, err := ParseCrypto(v); !errors.Is(err, ErrCryptoUnsupported) {
			t.Errorf("%q: %v, want ErrCryptoUnsupported", v, err)
		}
	}
}

func FuzzParseCrypto(f *testing.F) {
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4")
	f.Add("3 AEAD_AES_128_GCM inline:" + key28 + " KDR=0")
	f.Add("1 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|2^20|1:4;inline:" + key30 + "|2^20|2:4")
	f.Add("9 X inline:|||")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseCrypto(v)
		if err != nil {
			if !errors.Is(err, ErrBadCrypto) && !errors.Is(err, ErrCryptoUnsupported) {
				t.Fatalf("%q: unexpected error kind %v", v, err)
			}
			return
		}
		if _, _, _, err := c.Profile(); err != nil {
			t.Fatalf("%q accepted but unusable: %v", v, err)
		}
		back, err := ParseCrypto(c.String())
		if err != nil || !sameCrypto(back, c) {
			t.Fatalf("%q: round trip %q: %v", v, c.String(), err)
		}
		if _, err := newContext(c); err != nil {
			t.Fatalf("%q: no context: %v", v, err)
		}
	})
}

const savpOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"

func TestParseSDPCrypto(t *testing.T) {
	offer := savpOffer + "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + key30 + "\r\n" +
		"a=crypto:2 AEAD_AES_128_GCM inline:" + key28 + "\r\n" +
		"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "\r\n"
	d, err := ParseSDP([]byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	if d.Profile != "RTP/SAVP" || len(d.Crypto) != 2 || d.Crypto[0].Suite != SuiteGCM || d.Crypto[1].Tag != 3 {
		t.Fatalf("parsed %+v", d)
	}
	ans, err := Answer(d, lo, 20000, DefaultCodecs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Profile != "RTP/SAVP" || len(ans.Crypto) != 1 || ans.Crypto[0].Tag != 2 || ans.Crypto[0].Suite != SuiteGCM ||
		bytes.Equal(ans.Crypto[0].Key, d.Crypto[0].Key) {
		t.Fatalf("answer %+v", ans)
	}
	text := string(ans.Marshal())
	if !strings.Contains(text, "m=audio 20000 RTP/SAVP 0 101\r\n") || !strings.Contains(text, "a=crypto:2 AEAD_AES_128_GCM inline:") {
		t.Fatalf("answer SDP:\n%s", text)
	}
	back, err := ParseSDP(ans.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	tx, rx, err := SRTPKeys(d, back, false)
	if err != nil || !sameCrypto(*tx, ans.Crypto[0]) || !sameCrypto(*rx, d.Crypto[0]) {
		t.Fatalf("keys %+v %+v %v", tx, rx, err)
	}

	// A plain offer gets a plain answer; an offer of ours with SDES answered plain is plain
	// (best effort) unless it was RTP/SAVP.
	plainOff := Offer(lo, 20000, nil, 1)
	must(t, plainOff.AddSDES())
	if !strings.Contains(plainOff.String(), "RTP/AVP") || strings.Count(plainOff.String(), "a=crypto:") != 3 {
		t.Fatalf("best-effort offer:\n%s", plainOff)
	}
	plainAns, _ := ParseSDP([]byte(sipOffer))
	if tx, rx, err := SRTPKeys(plainOff, plainAns, true); tx != nil || rx != nil || err != nil {
		t.Fatalf("best effort answered plain: %v %v %v", tx, rx, err)
	}
	plainOff.Profile = "RTP/SAVP"
	if _, _, err := SRTPKeys(plainOff, plainAns, true); !errors.Is(err, ErrNoCrypto) {
		t.Fatalf("SAVP answered plain: %v", err)
	}
	wrongTag := &Description{Crypto: []Crypto{{Tag: 7, Suite: SuiteAES80, Key: make([]byte, 30)}}}
	if _, _, err := SRTPKeys(plainOff, wrongTag, true); !errors.Is(err, ErrBadCrypto) {
		t.Fatalf("unknown tag: %v", err)
	}

	rejects := map[string]string{
		"SAVP without crypto": savpOffer,
		"SAVP only unknown":   savpOffer + "a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + key30 + "\r\n",
		"wrong key length":    savpOffer + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key28 + "\r\n",
		"bad base64":          savpOffer + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:@@@@\r\n",
		"duplicate tag":       savpOffer + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "\r\na=crypto:1 AEAD_AES_128_GCM inline:" + key28 + "\r\n",
		"many lines":          savpOffer + strings.Repeat("a=crypto:1 F8_128_HMAC_SHA1_80 inline:"+key30+"\r\n", MaxCryptoLines+1),
		"AVP with a bad line": strings.Replace(savpOffer, "SAVP", "AVP", 1) + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xx\r\n",
		"DTLS-SRTP not SDES":  strings.Replace(savpOffer, "RTP/SAVP", "UDP/TLS/RTP/SAVP", 1),
	}
	for name, sdp := range rejects {
		if _, err := ParseSDP([]byte(sdp)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// srtpPair opens two endpoints of one pool, a and b, pointed at each other, with SDES keys.
func srtpPair(t *testing.T, pool *PortPool, suite string) (a, b *Endpoint, ka, kb Crypto) {
	t.Helper()
	var err error
	if a, err = pool.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = pool.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if ka, err = NewCrypto(1, suite); err != nil {
		t.Fatal(err)
	}
	if kb, err = NewCrypto(1, suite); err != nil {
		t.Fatal(err)
	}
	must(t, a.SetSRTP(&ka, &kb))
	must(t, b.SetSRTP(&kb, &ka))
	return a, b, ka, kb
}

// Packets on the wire are SRTP: a PCMU payload written by an SRTP endpoint does not appear in
// the UDP datagram (it is encrypted, with an authentication tag), the peer endpoint decrypts
// it back to the same payload, and a packet protected with another key is dropped. For each
// suite, RTP and RTCP.
func TestSRTPOnTheWire(t *testing.T) {
	pool, err := NewPortPool(lo, 41900, 41940, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool.SetRTCPInterval(50 * time.Millisecond)
	for _, suite := range []string{SuiteAES80, SuiteAES32, SuiteGCM} {
		t.Run(suite, func(t *testing.T) {
			a, b, _, kb := srtpPair(t, pool, suite)
			// A sniffer stands where b's peer is: it sees what a sends on the wire.
			sniff, err := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
			if err != nil {
				t.Fatal(err)
			}
			defer sniff.Close()
			a.SetRemote(sniff.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{})
			payload := bytes.Repeat([]byte{0xff, 0x7f, 0x55, 0x2a}, 40) // 160 bytes of PCMU
			p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 100, Timestamp: 160}, Payload: payload}
			must(t, a.WriteRTP(p))
			buf := make([]byte, 1500)
			_ = sniff.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := sniff.ReadFromUDP(buf)
			if err != nil {
				t.Fatal(err)
			}
			wire := append([]byte(nil), buf[:n]...)
			if bytes.Contains(wire, payload[:16]) {
				t.Fatalf("plain PCMU payload visible on the wire")
			}
			if n <= 12+len(payload) {
				t.Fatalf("%d bytes on the wire: no authentication tag", n)
			}
			var h rtp.Header
			if _, err := h.Unmarshal(wire); err != nil || h.SequenceNumber != 100 || h.PayloadType != 0 {
				t.Fatalf("SRTP header %+v %v (the header stays in the clear)", h, err)
			}

			// b (holding a's key) decrypts the very datagram; a replay of it is dropped.
			var mu sync.Mutex
			var got [][]byte
			var rtcpIn int
			must(t, b.Start(Handlers{
				AcceptPT: func(pt uint8) bool { return pt == 0 },
				RTP: func(p *rtp.Packet) {
					mu.Lock()
					got = append(got, append([]byte(nil), p.Payload...))
					mu.Unlock()
				},
				RTCP: func([]rtcp.Packet) { mu.Lock(); rtcpIn++; mu.Unlock() },
			}))
			b.SetRemote(a.LocalAddr(), netip.AddrPort{})
			to := net.UDPAddrFromAddrPort(b.LocalAddr())
			if _, err := sniff.WriteToUDP(wire, to); err != nil { // from the sniffer: latch any? no, strict: wrong source
				t.Fatal(err)
			}
			// Send it again from a's own address (the source b expects): accepted once.
			a.SetRemote(b.LocalAddr(), netip.AddrPort{})
			p.SequenceNumber = 101
			must(t, a.WriteRTP(p))
			peers.WaitFor(t, 5*time.Second, "b decrypts a's packet", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
			mu.Lock()
			if !bytes.Equal(got[0], payload) {
				t.Fatalf("decrypted payload differs")
			}
			mu.Unlock()

			// Protected with the wrong key (b's own): dropped.
			wrong, err := newContext(kb)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 102, SSRC: a.SSRC()}, Payload: payload}).Marshal()
			forged, err := wrong.ctx.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			dropped := b.Stats().Dropped
			c, err := net.DialUDP("udp", nil, to)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(forged)
			_, _ = c.Write(plain) // plain RTP to an SRTP endpoint: dropped too
			peers.WaitFor(t, 5*time.Second, "forged and plain packets dropped", func() bool { return b.Stats().Dropped >= dropped+2 })
			mu.Lock()
			if len(got) != 1 {
				t.Fatalf("%d packets accepted, want 1", len(got))
			}
			mu.Unlock()

			// SRTCP: a's sender reports reach b decrypted.
			must(t, a.Start(Handlers{}))
			for i := 0; i < 3; i++ {
				p.SequenceNumber++
				must(t, a.WriteRTP(p))
			}
			peers.WaitFor(t, 5*time.Second, "b gets a's SRTCP report", func() bool { mu.Lock(); defer mu.Unlock(); return rtcpIn > 0 })
		})
	}
}

// A re-INVITE that repeats the keys keeps the contexts (the peer's rollover counter and replay
// window carry on); a new key replaces them, and the old key no longer works.
func TestSRTPRekey(t *testing.T) {
	pool, err := NewPortPool(lo, 41950, 41960, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b, ka, kb := srtpPair(t, pool, SuiteAES80)
	st := b.srtpNow()
	must(t, b.SetSRTP(&kb, &ka))
	if nst := b.srtpNow(); nst.rxRTP != st.rxRTP || nst.txCtx != st.txCtx {
		t.Fatal("same keys: contexts replaced")
	}
	var mu sync.Mutex
	n := 0
	must(t, b.Start(Handlers{RTP: func(*rtp.Packet) { mu.Lock(); n++; mu.Unlock() }}))
	b.SetRemote(a.LocalAddr(), netip.AddrPort{})
	a.SetRemote(b.LocalAddr(), netip.AddrPort{})
	send := func(seq uint16) {
		must(t, a.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq}, Payload: make([]byte, 160)}))
	}
	send(1)
	peers.WaitFor(t, 5*time.Second, "first packet", func() bool { mu.Lock(); defer mu.Unlock(); return n == 1 })
	ka2, _ := NewCrypto(1, SuiteAES80)
	must(t, b.SetSRTP(&kb, &ka2)) // a rekeys (its re-INVITE) but b hears about it first
	if nst := b.srtpNow(); nst.rxRTP == st.rxRTP || nst.txCtx != st.txCtx {
		t.Fatal("new peer key: receive context kept, or send context replaced")
	}
	dropped := b.Stats().Dropped
	send(2) // still under the old key: refused now
	peers.WaitFor(t, 5*time.Second, "old-key packet dropped", func() bool { return b.Stats().Dropped > dropped })
	must(t, a.SetSRTP(&ka2, &kb))
	send(3)
	peers.WaitFor(t, 5*time.Second, "new-key packet", func() bool { mu.Lock(); defer mu.Unlock(); return n == 2 })
	must(t, b.SetSRTP(nil, nil))
	if b.SRTP() {
		t.Fatal("SRTP still on")
	}
	if err := b.SetSRTP(&kb, nil); !errors.Is(err, ErrBadCrypto) {
		t.Fatalf("one-way keys: %v", err)
	}
}

// A peer key with an MKI (RFC 4568 "|MKI:length"): the peer puts the MKI in every packet,
// and the endpoint, keyed with that attribute, authenticates and decrypts them.
func TestSRTPPeerMKI(t *testing.T) {
	pool, err := NewPortPool(lo, 41970, 41980, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pool.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ours, _ := NewCrypto(1, SuiteAES80)
	peerKey, err := ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|258:2")
	if err != nil {
		t.Fatal(err)
	}
	must(t, b.SetSRTP(&ours, &peerKey))
	var mu sync.Mutex
	n := 0
	must(t, b.Start(Handlers{RTP: func(*rtp.Packet) { mu.Lock(); n++; mu.Unlock() }}))
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	b.SetRemote(peer.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{})
	sender, err := newContext(peerKey) // with the MKI: it goes into every packet
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 99}, Payload: make([]byte, 160)}).Marshal()
	pkt, err := sender.ctx.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != len(plain)+2+10 { // MKI (2) and the 80-bit tag
		t.Fatalf("%d bytes: no MKI in the packet", len(pkt))
	}
	if _, err := peer.WriteToUDP(pkt, net.UDPAddrFromAddrPort(b.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, 5*time.Second, "the MKI packet accepted", func() bool { mu.Lock(); defer mu.Unlock(); return n == 1 })
}
