package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// trunkObserver records trunk host state changes.
type trunkObserver struct {
	nopObserver
	mu      sync.Mutex
	changes []string // "host up" / "host down"
}

func (o *trunkObserver) TrunkHostState(trunk, host string, up bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := "down"
	if up {
		st = "up"
	}
	o.changes = append(o.changes, trunk+" "+host+" "+st)
}

// count returns how often change was reported (every host is reported up once at Start).
func (o *trunkObserver) count(change string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.changes {
		if c == change {
			n++
		}
	}
	return n
}

// startTrunkHost starts a SIPp trunk host (trunk_host.xml, no call limit) on port.
func startTrunkHost(t *testing.T, port int) *peers.SIPp {
	t.Helper()
	return peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario("trunk_host.xml"), Port: port,
		Timeout: 60 * time.Second, Logger: testLogger(t)})
}

func startTrunkServer(t *testing.T, tr Trunk) (*Server, *trunkObserver) {
	t.Helper()
	cfg := testConfig()
	cfg.Trunks = []Trunk{tr}
	obs := &trunkObserver{}
	return startServerWith(t, cfg, Options{Logger: testLogger(t), Observer: obs}), obs
}

// callVia places a call to the trunk (target host: its first host), hangs it up, and returns
// the address of the host that answered.
func callVia(t *testing.T, s *Server, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: "sip:+15550100@" + host, Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	src := c.Info().Source
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	<-c.Done()
	return src
}

// Failover: calls go to the first host while its OPTIONS are answered; when that SIPp is
// stopped the host goes down (after down_after failures) and calls go to the second; both
// down: 503 naming the trunk; the first restarted: up again (after up_after answers) and
// preferred again.
func TestSIPpTrunkFailoverWithKeepAlive(t *testing.T) {
	sippPath(t)
	pa, pb := freePort(t), freePort(t)
	a, b := startTrunkHost(t, pa), startTrunkHost(t, pb)
	ha, hb := fmt.Sprintf("127.0.0.1:%d", pa), fmt.Sprintf("127.0.0.1:%d", pb)
	s, obs := startTrunkServer(t, Trunk{Name: "carrier", Host: ha, Hosts: []string{hb},
		OptionsInterval: 200 * time.Millisecond, OptionsTimeout: 150 * time.Millisecond, DownAfter: 2, UpAfter: 2})

	for i := 0; i < 2; i++ {
		if got := callVia(t, s, hb); got != ha {
			t.Fatalf("call %d answered by %s, want the first host %s", i, got, ha)
		}
	}
	a.Stop()
	peers.WaitFor(t, 15*time.Second, "host a down", func() bool { return obs.count("carrier "+ha+" down") == 1 })
	if got := callVia(t, s, ha); got != hb {
		t.Fatalf("with host a down, call answered by %s, want %s", got, hb)
	}
	b.Stop()
	peers.WaitFor(t, 15*time.Second, "host b down", func() bool { return obs.count("carrier "+hb+" down") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{Target: "sip:+15550100@" + ha, Caller: "alice", Offer: []byte(testSDP)})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || !strings.Contains(se.Reason, "trunk carrier: every host is down") {
		t.Fatalf("all hosts down: %v, want 503 naming the trunk", err)
	}
	startTrunkHost(t, pa)
	peers.WaitFor(t, 15*time.Second, "host a up", func() bool { return obs.count("carrier "+ha+" up") == 2 })
	if got := callVia(t, s, hb); got != ha {
		t.Fatalf("after host a came back, call answered by %s", got)
	}
	for _, h := range s.TrunkHosts() {
		if h.Up != (h.Host == ha) {
			t.Fatalf("hosts %+v", s.TrunkHosts())
		}
	}
}

// Round robin: consecutive calls alternate between the hosts that are up.
func TestSIPpTrunkRoundRobin(t *testing.T) {
	sippPath(t)
	pa, pb := freePort(t), freePort(t)
	startTrunkHost(t, pa)
	startTrunkHost(t, pb)
	ha, hb := fmt.Sprintf("127.0.0.1:%d", pa), fmt.Sprintf("127.0.0.1:%d", pb)
	s, _ := startTrunkServer(t, Trunk{Name: "carrier", Hosts: []string{ha, hb}, Balance: BalanceRoundRobin})
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, callVia(t, s, ha))
	}
	if got[0] == got[1] || got[0] != got[2] || got[1] != got[3] {
		t.Fatalf("calls answered by %v: not alternating", got)
	}
}

// max_calls and cps per trunk: a call over either gets 503 naming the setting.
func TestSIPpTrunkMaxCallsAndCPS(t *testing.T) {
	sippPath(t)
	p := freePort(t)
	startTrunkHost(t, p)
	h := fmt.Sprintf("127.0.0.1:%d", p)
	s, _ := startTrunkServer(t, Trunk{Name: "carrier", Host: h, MaxCalls: 1, CPS: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dial := func() (*Call, error) {
		return s.Dial(ctx, DialOptions{Target: "sip:+15550100@" + h, Caller: "alice", Offer: []byte(testSDP)})
	}
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	var se *StatusError
	if _, err := dial(); !errors.As(err, &se) || se.Code != 503 || !strings.Contains(se.Reason, "sip.trunks[].max_calls") {
		t.Fatalf("second concurrent call: %v, want 503 naming sip.trunks[].max_calls", err)
	}
	_ = c.Hangup(ctx)
	<-c.Done()
	// The two calls above used the burst of 2; the next within the second is over the rate.
	if _, err := dial(); !errors.As(err, &se) || se.Code != 503 || !strings.Contains(se.Reason, "sip.trunks[].cps") {
		t.Fatalf("call over the rate: %v, want 503 naming sip.trunks[].cps", err)
	}
	if n := s.Calls(); n != 0 {
		t.Fatalf("%d calls left", n)
	}
}

// The per-source request limit (sip.request_rate) does not throttle a trunk's SBC: its
// requests get the trunk's own rate; the same burst from a non-trunk source is refused.
func TestTrunkSourceEscapesPerSourceRate(t *testing.T) {
	for _, trunked := range []bool{true, false} {
		t.Run(fmt.Sprint("trunk=", trunked), func(t *testing.T) {
			cfg := testConfig()
			cfg.Limits.RequestsPerSecond, cfg.Limits.Burst = 5, 5
			if trunked {
				cfg.Trunks = []Trunk{{Name: "sbc", Networks: []string{"127.0.0.1/32"}, RequestRate: 500}}
			}
			s := startServer(t, cfg, nil)
			conn, err := net.Dial("udp", s.target("udp"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const n = 40
			for i := 0; i < n; i++ {
				msg := fmt.Sprintf("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKopt%d\r\n"+
					"From: <sip:sbc@127.0.0.1>;tag=t%d\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt%d\r\nCSeq: 1 OPTIONS\r\n"+
					"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", conn.LocalAddr(), i, i, i)
				if _, err := conn.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
			}
			ok, refused := 0, 0
			buf := make([]byte, 65536)
			for ok+refused < n {
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("after %d ok, %d refused: %v", ok, refused, err)
				}
				switch {
				case strings.HasPrefix(string(buf[:m]), "SIP/2.0 200"):
					ok++
				case strings.HasPrefix(string(buf[:m]), "SIP/2.0 503") && strings.Contains(string(buf[:m]), "sip.request_rate"):
					refused++
				}
			}
			if trunked && ok != n || !trunked && refused == 0 {
				t.Fatalf("trunk %v: %d answered, %d refused", trunked, ok, refused)
			}
		})
	}
}

// Inbound destination mapping: a trunk call's dialled user (DID) listed in the trunk's
// Destinations carries what it maps to; an unlisted one carries none (routed as dialled).
func TestSIPpTrunkInboundDestination(t *testing.T) {
	sippPath(t)
	for _, c := range []struct{ did, want string }{{"+15550100", "conf-sales"}, {"+15550199", ""}} {
		cfg := testConfig()
		cfg.Trunks = []Trunk{{Name: "carrier", Networks: []string{"127.0.0.1/32"}, Destinations: map[string]string{"+15550100": "conf-sales"}}}
		rec := newRecorder(answerAfterRinging)
		s := startServer(t, cfg, rec)
		r := startSIPp(t, "uac_call.xml", s.target("udp"), "-s", c.did)
		call := rec.waitCall(t, r)
		r.wait(t)
		rec.waitEnd(t)
		if info := call.Info(); info.Destination != c.want || info.Trunk != "carrier" || info.ToUser != c.did {
			t.Fatalf("DID %s: call info %+v, want destination %q", c.did, info, c.want)
		}
	}
}

// Inbound calls from a trunk count against its max_calls: while one call rings, a second
// INVITE from the trunk gets 503 naming sip.trunks[].max_calls.
func TestSIPpTrunkInboundMaxCalls(t *testing.T) {
	sippPath(t)
	release := make(chan struct{})
	rec := newRecorder(func(c *Call) {
		_ = c.Ringing(nil)
		<-release
		_ = c.Reject(486, "Busy Here")
	})
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Networks: []string{"127.0.0.1/32"}, MaxCalls: 1}}
	s := startServer(t, cfg, rec)
	defer close(release)
	first := startSIPp(t, "uac_call.xml", s.target("udp"), "-s", "echo")
	rec.waitCall(t, first)

	conn, err := net.Dial("udp", s.target("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	inv := fmt.Sprintf("INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bKmax2\r\n"+
		"From: <sip:carrier@127.0.0.1>;tag=m2\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: max2\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:carrier@%s>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		conn.LocalAddr(), conn.LocalAddr(), len(body), body)
	if _, err := conn.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no final answer to the second call: %v", err)
		}
		res := string(buf[:n])
		if strings.HasPrefix(res, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(res, "SIP/2.0 503") || !strings.Contains(res, "sip.trunks[].max_calls") {
			t.Fatalf("second call answered %q", strings.SplitN(res, "\r\n", 2)[0])
		}
		break
	}
	select {
	case c := <-rec.calls:
		t.Fatalf("second call reached the handler: %+v", c.Info())
	default:
	}
}

// A host that refuses the call with 503 (an overloaded SBC) passes it to the next host, even
// without keep-alives; a callee's refusal (486) does not.
func TestSIPpTrunkFailoverOn503(t *testing.T) {
	sippPath(t)
	b, err := os.ReadFile(scenario("uas_busy.xml"))
	if err != nil {
		t.Fatal(err)
	}
	overloaded := filepath.Join(t.TempDir(), "uas_503.xml")
	if err := os.WriteFile(overloaded, []byte(strings.Replace(string(b), "SIP/2.0 486 Busy Here", "SIP/2.0 503 Service Unavailable", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	pa, pb := freePort(t), freePort(t)
	a := startSIPpPort(t, overloaded, pa)
	startTrunkHost(t, pb)
	ha, hb := fmt.Sprintf("127.0.0.1:%d", pa), fmt.Sprintf("127.0.0.1:%d", pb)
	s, _ := startTrunkServer(t, Trunk{Name: "carrier", Hosts: []string{ha, hb}})
	if got := callVia(t, s, ha); got != hb {
		t.Fatalf("call answered by %s, want %s after %s's 503", got, hb, ha)
	}
	a.wait(t) // the first host did get (and refuse) the call

	busy := startSIPpPort(t, "uas_busy.xml", freePort(t))
	s2, _ := startTrunkServer(t, Trunk{Name: "carrier", Hosts: []string{fmt.Sprintf("127.0.0.1:%d", busy.port), hb}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var se *StatusError
	if _, err := s2.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:+15550100@127.0.0.1:%d", busy.port), Caller: "alice", Offer: []byte(testSDP)}); !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("busy callee: %v, want 486 (no failover)", err)
	}
}
