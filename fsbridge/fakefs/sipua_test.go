package fakefs

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// sipRaw sends one hand-written SIP request over UDP and returns the first final
// response's status line.
func sipRaw(t *testing.T, a *SIPAgent, extra, body string) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	me := conn.LocalAddr().String()
	id := time.Now().UnixNano()
	req := fmt.Sprintf("INVITE sip:park@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%d\r\n"+
		"From: <sip:nkbridge@127.0.0.1>;tag=abc\r\n"+
		"To: <sip:park@%s>\r\n"+
		"Call-ID: raw-%d@127.0.0.1\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:nkbridge@%s>\r\n"+
		"Max-Forwards: 70\r\n%s"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s", a.Addr(), me, id, a.Addr(), id, me, extra, len(body), body)
	ua, _ := net.ResolveUDPAddr("udp", a.Addr())
	if _, err := conn.WriteToUDP([]byte(req), ua); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			// ACK the final response (as a UAC must), so the agent's transaction ends.
			to := ""
			for _, l := range strings.Split(string(buf[:n]), "\r\n") {
				if strings.HasPrefix(strings.ToLower(l), "to:") {
					to = l
				}
			}
			ack := fmt.Sprintf("ACK sip:park@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%d\r\n"+
				"From: <sip:nkbridge@127.0.0.1>;tag=abc\r\n%s\r\nCall-ID: raw-%d@127.0.0.1\r\nCSeq: 1 ACK\r\n"+
				"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", a.Addr(), me, id, to, id)
			_, _ = conn.WriteToUDP([]byte(ack), ua)
			return line
		}
	}
}

// startSIP starts a fake and its SIP stand-in, closed when the test ends.
func startSIP(t *testing.T, opts Options) (*Server, *SIPAgent) {
	t.Helper()
	fs, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	a, err := StartSIP(fs, SIPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return fs, a
}

const rawSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// The stand-in applies the shipped dialplan: no (or a malformed) X-NKB-Session → 403,
// no channel; an SDP it cannot answer → 488.
func TestSIPAgentRefuses(t *testing.T) {
	fs, a := startSIP(t, Options{})
	if got := sipRaw(t, a, "", rawSDP); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("no session header: %q", got)
	}
	if got := sipRaw(t, a, "X-NKB-Session: bad id\r\n", rawSDP); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("malformed session header: %q", got)
	}
	if got := sipRaw(t, a, "X-NKB-Session: s1\r\n", strings.Replace(rawSDP, "RTP/AVP 0", "RTP/AVP 18", 1)); !strings.HasPrefix(got, "SIP/2.0 488") {
		t.Fatalf("unanswerable SDP: %q", got)
	}
	if n := len(fs.Channels()); n != 0 {
		t.Fatalf("%d channels after refused calls", n)
	}
	a.SetReject(503)
	if got := sipRaw(t, a, "X-NKB-Session: s1\r\n", rawSDP); !strings.HasPrefix(got, "SIP/2.0 503") {
		t.Fatalf("SetReject: %q", got)
	}
}
