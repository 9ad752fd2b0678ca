package plainrtp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/nkbridge/nkbridge/internal/peers"
)

var lo = netip.MustParseAddr("127.0.0.1")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const sipOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\n"

func TestParseAndAnswer(t *testing.T) {
	d, err := ParseSDP([]byte(sipOffer))
	if err != nil {
		t.Fatal(err)
	}
	if d.Port != 40000 || d.Addr != lo || len(d.Codecs) != 3 || d.Direction != SendOnly || d.PTime != 20 {
		t.Fatalf("parsed %+v", d)
	}
	ans, err := Answer(d, lo, 20000, DefaultCodecs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ans.MainCodec(); c.PT != 8 || c.Name != "PCMA" {
		t.Fatalf("chose %+v (offer order PCMA first)", c)
	}
	if te, ok := ans.TelephoneEvent(8000); !ok || te.PT != 101 {
		t.Fatalf("te %+v", te)
	}
	if ans.Direction != RecvOnly || ans.RTCPPort != 20001 {
		t.Fatalf("answer %+v", ans)
	}
	ans2, err := Answer(d, lo, 20000, DefaultCodecs(), []Codec{PCMU})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ans2.MainCodec(); c.Name != "PCMU" {
		t.Fatalf("prefer PCMU: %+v", c)
	}
	// Round trip through Marshal.
	back, err := ParseSDP(ans.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if back.Port != 20000 || back.RTCPPort != 20001 || len(back.Codecs) != 2 {
		t.Fatalf("round trip %+v\n%s", back, ans.Marshal())
	}
	if c, err := Negotiated(Offer(lo, 1234, nil, 1), back); err != nil || c.Name != "PCMA" {
		t.Fatalf("negotiated %v %v", c, err)
	}
	if _, err := Answer(d, lo, 20000, []Codec{Opus}, nil); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("no common codec: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	base := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	cases := map[string]string{
		"no audio":    base + "m=video 4000 RTP/AVP 96\r\n",
		"port 0 only": base + "m=audio 0 RTP/AVP 0\r\n",
		"big port":    base + "m=audio 70000 RTP/AVP 0\r\n",
		"srtp":        base + "m=audio 4000 RTP/SAVP 0\r\n",
		"hostname":    strings.Replace(base, "c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com", 1) + "m=audio 4000 RTP/AVP 0\r\n",
		"no codecs":   base + "m=audio 4000 RTP/AVP 18\r\n",
		"bad pt":      base + "m=audio 4000 RTP/AVP 300\r\n",
		"garbage":     "hello world",
		"10k lines":   base + "m=audio 4000 RTP/AVP 0\r\n" + strings.Repeat("a=x\r\n", 10000),
		"huge":        base + "m=audio 4000 RTP/AVP 0\r\ni=" + strings.Repeat("x", MaxSDPSize) + "\r\n",
		"bad rtcp":    base + "m=audio 4000 RTP/AVP 0\r\na=rtcp:99999\r\n",
		"multicast":   strings.Replace(base, "127.0.0.1\r\nt=", "239.1.1.1/16\r\nt=", 1) + "m=audio 4000 RTP/AVP 0\r\n",
	}
	for name, s := range cases {
		if _, err := ParseSDP([]byte(s)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestQuarantine(t *testing.T) {
	pool, err := NewPortPool(lo, 41000, 41000, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := pool.Open()
	if err != nil {
		t.Fatal(err)
	}
	if ep.Port() != 41000 || pool.InUse() != 1 {
		t.Fatalf("port %d in use %d", ep.Port(), pool.InUse())
	}
	if _, err := pool.Open(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second open: %v", err)
	}
	ep.Close()
	if pool.InUse() != 0 || pool.Quarantined() != 1 {
		t.Fatalf("after close: in use %d quarantined %d", pool.InUse(), pool.Quarantined())
	}
	if _, err := pool.Open(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("open during quarantine: %v", err)
	}
	var ep2 *Endpoint
	peers.WaitFor(t, 5*time.Second, "the port out of quarantine", func() bool { ep2, err = pool.Open(); return err == nil })
	ep2.Close()
}

// TestLatchingGarbageAndRTCP checks symmetric RTP in LatchAny mode: the endpoint answers the
// address the peer really sends from (not the one in its SDP), drops garbage and foreign
// sources, and exchanges RTCP.
func TestLatchingGarbageAndRTCP(t *testing.T) {
	pool, err := NewPortPool(lo, 41010, 41020, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(t, pool.SetLatchMode(LatchAny))
	pool.SetRTCPInterval(100 * time.Millisecond)
	ep, err := pool.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	var mu sync.Mutex
	var got []uint16
	var rtcpIn int
	must(t, ep.Start(Handlers{
		AcceptPT: func(pt uint8) bool { return pt == 0 },
		RTP: func(p *rtp.Packet) {
			mu.Lock()
			got = append(got, p.SequenceNumber)
			mu.Unlock()
		},
		RTCP: func([]rtcp.Packet) { mu.Lock(); rtcpIn++; mu.Unlock() },
	}))
	// The SDP claims port 9 (nobody there); the peer really sends from a NAT-ed socket.
	ep.SetRemote(netip.AddrPortFrom(lo, 9), netip.AddrPort{})
	peer, _ := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
	defer peer.Close()
	peerRTCP, _ := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice(), Port: peer.LocalAddr().(*net.UDPAddr).Port + 1})
	if peerRTCP != nil {
		defer peerRTCP.Close()
	}
	other, _ := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
	defer other.Close()
	to := net.UDPAddrFromAddrPort(ep.LocalAddr())
	send := func(c *net.UDPConn, seq uint16, pt uint8) {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: 5}, Payload: make([]byte, 160)}).Marshal()
		c.WriteToUDP(b, to)
	}
	peer.WriteToUDP([]byte("garbage that is not RTP"), to)
	peer.WriteToUDP([]byte{0x80}, to)
	send(peer, 1, 96) // wrong payload type
	send(peer, 2, 0)  // latches
	seen := func(n uint64) func() bool {
		return func() bool { st := ep.Stats(); return st.PacketsIn+st.Dropped >= n }
	}
	peers.WaitFor(t, 5*time.Second, "the latching packet", seen(4))
	send(other, 3, 0) // another source while the latched one is alive: dropped
	send(peer, 4, 0)
	peers.WaitFor(t, 5*time.Second, "the last two packets", seen(6))
	mu.Lock()
	if len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Fatalf("delivered %v", got)
	}
	mu.Unlock()
	st := ep.Stats()
	if st.Dropped != 4 || !st.Latched || st.Remote.Port() != uint16(peer.LocalAddr().(*net.UDPAddr).Port) {
		t.Fatalf("stats %+v", st)
	}
	// We now send to where the peer really is.
	must(t, ep.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 9}, Payload: []byte{1, 2, 3}}))
	peer.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	n, err := peer.Read(buf)
	if err != nil {
		t.Fatalf("peer got nothing back: %v", err)
	}
	var back rtp.Packet
	if back.Unmarshal(buf[:n]) != nil || back.SequenceNumber != 9 || back.SSRC != ep.SSRC() {
		t.Fatalf("back %+v", back.Header)
	}
	// RTCP: our sender reports reach the peer's RTP port + 1, and its reports reach us.
	if peerRTCP != nil {
		peerRTCP.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := peerRTCP.Read(buf)
		if err != nil {
			t.Fatalf("no RTCP sender report: %v", err)
		}
		pk, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if sr, ok := pk[0].(*rtcp.SenderReport); !ok || sr.SSRC != ep.SSRC() || sr.PacketCount != 1 {
			t.Fatalf("rtcp %+v", pk[0])
		}
		rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 5}})
		peerRTCP.WriteToUDP(rr, &net.UDPAddr{IP: lo.AsSlice(), Port: ep.Port() + 1})
		peers.WaitFor(t, 2*time.Second, "the receiver report at our RTCP handler", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return rtcpIn > 0
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzParseSDP(f *testing.F) {
	f.Add([]byte(sipOffer))
	f.Add(Offer(lo, 20000, nil, 1).Marshal())
	f.Add([]byte("v=0\r\nm=audio 0 RTP/AVP\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseSDP(b)
		if err != nil {
			return
		}
		if d.Port < 1 || d.Port > 65535 || len(d.Codecs) == 0 || !d.Addr.IsValid() {
			t.Fatalf("accepted invalid description %+v", d)
		}
		// Whatever we accept we can answer or refuse cleanly, and re-parse our own output.
		if a, err := Answer(d, lo, 20000, DefaultCodecs(), nil); err == nil {
			if _, err := ParseSDP(a.Marshal()); err != nil {
				t.Fatalf("own answer unparsable: %v\n%s", err, a.Marshal())
			}
		}
	})
}
