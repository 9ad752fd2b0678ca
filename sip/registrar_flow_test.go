package sip

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// sipgoPeer is a plain sipgo UA used as a second, independent SIP stack in tests.
type sipgoPeer struct {
	ua  *sipgo.UserAgent
	cli *sipgo.Client
}

func newPeer(t *testing.T) *sipgoPeer {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(testLogger(t))),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(testLogger(t))))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return &sipgoPeer{ua: ua, cli: cli}
}

// register sends REGISTER for user with the given contact and Expires, answering the digest
// challenge, and returns the final response.
func (p *sipgoPeer) register(t *testing.T, s *Server, user, pw, contact string, expires int) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "127.0.0.1", Port: s.port("udp")})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: user, Host: "127.0.0.1"}})
	from := &sip.FromHeader{Address: sip.Uri{User: user, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	if contact != "" {
		req.AppendHeader(sip.NewHeader("Contact", contact))
	}
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	res, err := p.cli.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		return res
	}
	res, err = p.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRegisterIntervalTooBriefAndAORCheck(t *testing.T) {
	s := startServer(t, testConfig(), nil) // MinExpires 30s
	p := newPeer(t)
	res := p.register(t, s, "alice", "secret", "<sip:alice@127.0.0.1:5999>", 10)
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "30" {
		t.Fatalf("short expiry: %s", res.StartLine())
	}
	res = p.register(t, s, "alice", "secret", "<sip:alice@127.0.0.1:5999>", 100000)
	if res.StatusCode != 200 {
		t.Fatalf("register: %s", res.StartLine())
	}
	bs := s.Registrar().Lookup("alice")
	if len(bs) != 1 || time.Until(bs[0].Expires) > time.Hour+time.Second {
		t.Fatalf("bindings %+v (expiry must be clamped to 1h)", bs)
	}
	// bob's credentials cannot register alice's AOR.
	res = p.registerAs(t, s, "alice", "bob", "hunter2")
	if res.StatusCode != 403 {
		t.Fatalf("cross-user register: %s", res.StartLine())
	}
}

func (p *sipgoPeer) registerAs(t *testing.T, s *Server, aor, user, pw string) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "127.0.0.1", Port: s.port("udp")})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: aor, Host: "127.0.0.1"}})
	from := &sip.FromHeader{Address: sip.Uri{User: aor, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Contact", "<sip:x@127.0.0.1:5998>"))
	res, err := p.cli.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("no challenge: %v %v", res, err)
	}
	res, err = p.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A device registered with our registrar is reached by Dial with its Binding (the router's
// `user` resolver path); SIPp plays the registered phone.
func TestSIPpDialRegisteredContact(t *testing.T) {
	sippPath(t)
	s := startServer(t, testConfig(), nil) // no outbound domains at all
	r := startSIPp(t, "uas_answer.xml", "")
	p := newPeer(t)
	if res := p.register(t, s, "bob", "hunter2", fmt.Sprintf("<sip:bob@127.0.0.1:%d>", r.port), 60); res.StatusCode != 200 {
		t.Fatalf("register: %s", res.StartLine())
	}
	bs := s.Registrar().Lookup("bob")
	if len(bs) != 1 {
		t.Fatalf("bindings %+v", bs)
	}
	// A SIP URL to the same place is refused (not an allowed domain) ...
	if _, err := s.Authorize("alice", fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port)); err == nil {
		t.Fatal("open relay: arbitrary SIP URL allowed")
	}
	// ... but the registered contact is reachable.
	rec := newRecorder(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Binding: &bs[0], Offer: []byte(testSDP), Events: rec})
	if err != nil {
		t.Fatalf("Dial registered contact: %v", err)
	}
	if c.Info().ToUser != "bob" {
		t.Fatalf("info %+v", c.Info())
	}
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
	r.wait(t)
}

func TestRateLimitAnswers503(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.RequestsPerSecond, cfg.Limits.Burst = 0.01, 3 // no refill within the test
	s := startServer(t, cfg, nil)
	codes := map[int]int{}
	for i := 0; i < 8; i++ {
		got := sendUDP(t, s.target("udp"), optionsMsg("UDP", fmt.Sprintf("rl%d", i)), time.Second)
		if len(got) == 1 {
			codes[got[0]]++
		}
	}
	if codes[200] != 3 || codes[503] != 5 {
		t.Fatalf("codes %v: want 3 OK then 5×503", codes)
	}
}
