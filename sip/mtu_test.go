package sip

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestNeedsStream(t *testing.T) {
	for _, tc := range []struct {
		tp   string
		size int
		want bool
	}{
		{"UDP", 1300, false},
		{"UDP", 1301, true},
		{"udp", 4000, true},
		{"UDP", 200, false},
		{"TCP", 4000, false},
		{"TLS", 4000, false},
		{"WS", 4000, false},
	} {
		if got := needsStream(tc.tp, tc.size); got != tc.want {
			t.Errorf("needsStream(%q, %d) = %v, want %v", tc.tp, tc.size, got, tc.want)
		}
	}
}

// webrtcSizedSDP is an offer the size of a browser's (ICE candidates, fingerprint, many
// codecs): well over 1300 bytes.
func webrtcSizedSDP() []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	b.WriteString("a=group:BUNDLE 0\r\na=msid-semantic: WMS stream\r\n")
	b.WriteString("m=audio 40000 RTP/AVP 111 63 9 0 8 13 110 126\r\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp %d 127.0.0.1 %d typ host generation 0 network-id %d\r\n", 1000+i, 2122260223-i, 40000+i, i)
	}
	b.WriteString("a=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg7c2sPr\r\na=ice-options:trickle\r\n")
	b.WriteString("a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n")
	b.WriteString("a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n")
	b.WriteString("a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=sendrecv\r\na=rtcp-mux\r\n")
	b.WriteString("a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n")
	b.WriteString("a=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")
	b.WriteString("a=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n")
	b.WriteString("a=ssrc:3735928559 cname:4TOk42mSjXCkVIa6\r\na=ssrc:3735928559 msid:stream audio\r\n")
	return []byte(b.String())
}

// A call to a UDP target (a SIP URL without transport parameter, or a phone registered over
// UDP) with a WebRTC-sized offer goes over TCP to the same host:port (RFC 3261 §18.1.1) and is
// established there; nothing is sent over UDP.
func TestSIPpOutboundLargeInviteOverTCP(t *testing.T) {
	t.Run("sip-url", func(t *testing.T) {
		largeInviteOverTCP(t, func(t *testing.T, s *Server, port int) DialOptions {
			return DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice"}
		})
	})
	t.Run("registered-udp", func(t *testing.T) {
		largeInviteOverTCP(t, func(t *testing.T, s *Server, port int) DialOptions {
			p := newPeer(t)
			if res := p.register(t, s, "bob", "hunter2", fmt.Sprintf("<sip:bob@127.0.0.1:%d>", port), 60); res.StatusCode != 200 {
				t.Fatalf("register: %s", res.StartLine())
			}
			bs := s.Registrar().Lookup("bob")
			if len(bs) != 1 || !strings.EqualFold(bs[0].Transport, "udp") {
				t.Fatalf("bindings %+v", bs)
			}
			return DialOptions{Binding: &bs[0]}
		})
	})
}

func largeInviteOverTCP(t *testing.T, opts func(*testing.T, *Server, int) DialOptions) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	offer := webrtcSizedSDP()
	if len(offer) <= udpMaxRequest {
		t.Fatalf("offer only %d bytes", len(offer))
	}
	port := freePort(t)
	// The UDP side of the same port: held by the test, which checks that nothing arrives there.
	udp, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	r := startSIPpPort(t, "uas_answer.xml", port, "-t", "t1")
	waitBoundNet(t, "tcp", port)

	rec := newRecorder(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	o := opts(t, s, port)
	o.Offer, o.Events = offer, rec
	c, err := s.Dial(ctx, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if tp := c.Info().Transport; tp != "tcp" {
		t.Fatalf("call transport %q, want tcp", tp)
	}
	if !strings.Contains(string(c.RemoteSDP()), "o=bob 1 2") {
		t.Fatalf("answer SDP %q", c.RemoteSDP())
	}
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
	r.wait(t)
	_ = udp.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if n, _, err := udp.ReadFrom(make([]byte, 65536)); err == nil {
		t.Fatalf("%d bytes arrived over UDP", n)
	}
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}

// When the TCP attempt for a too-large INVITE fails, Dial returns an error naming the size
// and the cause, and the server keeps working.
func TestOutboundLargeInviteTCPRefused(t *testing.T) {
	s := startServer(t, outboundConfig(), nil)
	port := freePort(t) // nothing listens on it
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	offer := webrtcSizedSDP()
	_, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", port), Caller: "alice", Offer: offer})
	if err == nil {
		t.Fatal("Dial succeeded with nobody listening")
	}
	msg := err.Error()
	if !strings.Contains(msg, "bytes is over the 1300-byte UDP limit") || !strings.Contains(msg, "over TCP to 127.0.0.1:"+fmt.Sprint(port)+" failed") {
		t.Fatalf("error %q does not name the size and the TCP failure", msg)
	}
	if strings.Contains(msg, "larger than MTU") {
		t.Fatalf("error %q: sent over UDP", msg)
	}
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}
