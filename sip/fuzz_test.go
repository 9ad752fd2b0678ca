package sip

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/nkbridge/nkbridge/internal/peers"
)

// fakeTx is a ServerTransaction that records responses, for driving handlers without sockets.
type fakeTx struct {
	res  []*sip.Response
	done chan struct{}
}

func newFakeTx() *fakeTx { return &fakeTx{done: make(chan struct{})} }

func (f *fakeTx) Terminate()                         {}
func (f *fakeTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (f *fakeTx) Done() <-chan struct{}              { return f.done }
func (f *fakeTx) Err() error                         { return nil }
func (f *fakeTx) Respond(r *sip.Response) error      { f.res = append(f.res, r); return nil }
func (f *fakeTx) Acks() <-chan *sip.Request          { return nil }
func (f *fakeTx) OnCancel(sip.FnTxCancel) bool       { return true }

// Connection is where stateless answers go: recorded like the transaction's.
func (f *fakeTx) Connection() sip.Connection { return fakeConn{f} }

type fakeConn struct{ tx *fakeTx }

func (fakeConn) LocalAddr() net.Addr    { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }
func (fakeConn) Ref(int) int            { return 1 }
func (fakeConn) TryClose() (int, error) { return 1, nil }
func (fakeConn) Close() error           { return nil }
func (c fakeConn) WriteMsg(m sip.Message) error {
	if r, ok := m.(*sip.Response); ok {
		c.tx.res = append(c.tx.res, r)
	}
	return nil
}

func (f *fakeTx) final() *sip.Response {
	for _, r := range f.res {
		if r.StatusCode >= 200 {
			return r
		}
	}
	return nil
}

const glueInvite = "INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK1\r\n" +
	"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n" +
	"Contact: <sip:a@127.0.0.1:5070>\r\nSupported: timer\r\nSession-Expires: 1800;refresher=uac\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n" +
	"Content-Length: 116\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"

func glueSeeds() []string {
	return []string{
		glueInvite,
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK2\r\nFrom: <sip:alice@127.0.0.1>;tag=2\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5070>;expires=60, <sip:alice@127.0.0.2>\r\nExpires: 30\r\nAuthorization: Digest username=\"alice\", realm=\"127.0.0.1\", nonce=\"x\", uri=\"sip:127.0.0.1\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK3\r\nFrom: <sip:a@127.0.0.1>;tag=3\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nRequire: timer, foo\r\nContent-Length: 0\r\n\r\n",
		"INFO sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK4\r\nFrom: <sip:a@127.0.0.1>;tag=4\r\nTo: <sip:b@127.0.0.1>;tag=x\r\nCall-ID: i1\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 21\r\n\r\nSignal=5\r\nDuration=99\r\n",
		"BYE sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK5\r\nFrom: <sip:a@127.0.0.1>;tag=5\r\nTo: <sip:b@127.0.0.1>;tag=y\r\nCall-ID: b1\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
		"UPDATE sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK6\r\nFrom: <sip:a@127.0.0.1>;tag=6\r\nTo: <sip:b@127.0.0.1>;tag=z\r\nCall-ID: u1\r\nCSeq: 3 UPDATE\r\nSession-Expires: 90;refresher=uas\r\nContent-Length: 0\r\n\r\n",
	}
}

// FuzzRequestGlue feeds parsed SIP requests straight into the server's handlers (validation,
// registrar, auth, INVITE/in-dialog glue) and checks that every request except ACK gets a final
// response and that no call is left behind.
func FuzzRequestGlue(f *testing.F) {
	for _, s := range glueSeeds() {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "sipp", "torture", "*.sip"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add([]byte(strings.ReplaceAll(string(b), "\n", "\r\n")))
		}
	}
	cfg := trunkConfig()
	cfg.Listen = []Listen{{Transport: "udp", Addr: "127.0.0.1:0"}}
	cfg.Limits.RequestsPerSecond = 1e9
	srv, err := New(cfg, Options{Logger: testLogger(f), Handler: rejectAll{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("127.0.0.1:5070")
		req.SetTransport("UDP")
		tx := newFakeTx()
		handler := map[sip.RequestMethod]func(*sip.Request, sip.ServerTransaction){
			sip.INVITE: srv.onInvite, sip.REGISTER: srv.onRegister, sip.OPTIONS: srv.onOptions,
			sip.ACK: srv.onAck, sip.BYE: srv.onBye, sip.CANCEL: srv.onCancel, sip.INFO: srv.onInfo,
			sip.UPDATE: srv.onUpdate,
		}[req.Method]
		if handler == nil {
			handler = srv.onNoRoute
		}
		if srv.validRequest(req, tx) {
			handler(req, tx)
		}
		if !req.IsAck() && tx.final() == nil {
			t.Fatalf("no final response to %s", req.StartLine())
		}
		for _, r := range tx.res {
			if r.StatusCode == 200 && req.Method == sip.INVITE {
				t.Fatalf("fuzzed INVITE answered 200")
			}
		}
		peers.PollEvery(time.Second, time.Millisecond, func() bool { return srv.Calls() == 0 }) // checked below
		if n := srv.Calls(); n != 0 {
			t.Fatalf("%d calls left", n)
		}
	})
}

func FuzzParseDTMF(f *testing.F) {
	f.Add("application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add("application/dtmf-relay", []byte("Signal=11\nDuration=0"))
	f.Add("application/dtmf", []byte("#"))
	f.Add("text/plain", []byte("5"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		d, err := ParseDTMF(ct, body)
		if err != nil {
			return
		}
		if !validDigit(d.Digit) || d.Duration <= 0 || d.Duration > time.Minute {
			t.Fatalf("bad DTMF %+v", d)
		}
	})
}

func FuzzSessionExpires(f *testing.F) {
	f.Add("1800;refresher=uac")
	f.Add("90")
	f.Add("0;refresher=x")
	f.Fuzz(func(t *testing.T, v string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Host: "h"})
		req.AppendHeader(sip.NewHeader("Session-Expires", v))
		se, r, err := parseSessionExpires(req)
		if err != nil {
			return
		}
		if se <= 0 || se > 86400*time.Second || (r != "" && r != "uac" && r != "uas") {
			t.Fatalf("accepted %q as %v %q", v, se, r)
		}
	})
}

func TestParseDTMF(t *testing.T) {
	cases := []struct {
		ct, body string
		digit    rune
		ms       int
		ok       bool
	}{
		{"application/dtmf-relay", "Signal=5\r\nDuration=200\r\n", '5', 200, true},
		{"Application/DTMF-Relay; charset=x", "Signal= 11\r\n", '#', 160, true},
		{"application/dtmf-relay", "Signal=10", '*', 160, true},
		{"application/dtmf", " 9 ", '9', 160, true},
		{"application/dtmf-relay", "Duration=100", 0, 0, false},
		{"application/dtmf-relay", "Signal=Z", 0, 0, false},
		{"application/dtmf", "55", 0, 0, false},
		{"text/plain", "5", 0, 0, false},
	}
	for _, c := range cases {
		d, err := ParseDTMF(c.ct, []byte(c.body))
		if (err == nil) != c.ok || c.ok && (d.Digit != c.digit || d.Duration != time.Duration(c.ms)*time.Millisecond) {
			t.Errorf("%q %q: %+v %v", c.ct, c.body, d, err)
		}
	}
}

type rejectAll struct{}

func (rejectAll) HandleInvite(c *Call) { _ = c.Reject(486, "") }
