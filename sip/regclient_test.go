package sip

import (
	"context"
	"crypto/md5"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// regObserver records registration state changes (and ignores the traffic counts).
type regObserver struct {
	nopObserver
	mu      sync.Mutex
	changes []regChange
}

type regChange struct {
	at          time.Time
	name, state string
}

func (o *regObserver) RegistrationState(name, state string) {
	o.mu.Lock()
	o.changes = append(o.changes, regChange{time.Now(), name, state})
	o.mu.Unlock()
}

func (o *regObserver) times(state string) []time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ts []time.Time
	for _, c := range o.changes {
		if c.state == state {
			ts = append(ts, c.at)
		}
	}
	return ts
}

// registrarScenario returns registrar_refresh.xml, or its variant challenging with 407
// Proxy-Authenticate.
func registrarScenario(t *testing.T, code string) string {
	if code == "401" {
		return "registrar_refresh.xml"
	}
	b, err := os.ReadFile(scenario("registrar_refresh.xml"))
	if err != nil {
		t.Fatal(err)
	}
	x := strings.Replace(string(b), "SIP/2.0 401 Unauthorized", "SIP/2.0 407 Proxy Authentication Required", 1)
	x = strings.Replace(x, "WWW-Authenticate:", "Proxy-Authenticate:", 1)
	// SIPp's verifyauth reads only Authorization: the variant checks that credentials came in
	// Proxy-Authorization, and the test verifies their digests from SIPp's message log.
	x = strings.Replace(x, `<verifyauth assign_to="authvalid" username="pbxuser" password="pbxsecret"/>`,
		`<ereg regexp="^ *Digest .*username=&quot;pbxuser&quot;" search_in="hdr" header="Proxy-Authorization:" assign_to="authvalid"/>`, 1)
	p := filepath.Join(t.TempDir(), "registrar_refresh_407.xml")
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startRegServer starts a server with one registration at registrar (and trunk "provider")
// whose state changes go to the returned observer.
func startRegServer(t *testing.T, reg Registration, h CallHandler) (*Server, *regObserver) {
	t.Helper()
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "provider"}}
	cfg.Registrations = []Registration{reg}
	obs := &regObserver{}
	return startServerWith(t, cfg, Options{Logger: testLogger(t), Handler: h, Observer: obs}), obs
}

func pbxRegistration(registrar string) Registration {
	return Registration{Name: "itsp", Registrar: registrar, Username: "pbxuser", Password: "pbxsecret",
		ContactUser: "pbxcontact", Trunk: "provider", Expires: time.Minute, Timeout: time.Second,
		RetryMin: 100 * time.Millisecond, RetryMax: 800 * time.Millisecond}
}

// waitReg polls the registration's status until cond holds.
func waitReg(t *testing.T, s *Server, what string, cond func(RegistrationStatus) bool) RegistrationStatus {
	t.Helper()
	var st RegistrationStatus
	if !peers.Poll(15*time.Second, func() bool { st = s.Registrations()[0]; return cond(st) }) {
		t.Fatalf("registration never %s: %+v", what, st)
	}
	return st
}

// The registrar (SIPp) challenges every REGISTER (401, and 407 in the variant), verifies the
// digest, grants 2 s and fails unless each refresh arrives within those 2 s; on shutdown it
// must see the binding removed (Expires: 0, authenticated).
func TestSIPpRegistrationRefreshAndUnregister(t *testing.T) {
	sippPath(t)
	for _, v := range []struct{ code, transport string }{{"401", "udp"}, {"407", "udp"}, {"401", "tcp"}} {
		code := v.code
		t.Run(code+"/"+v.transport, func(t *testing.T) {
			port := freePort(t)
			var r *sippRun
			var tcp *peers.SIPp
			if v.transport == "tcp" {
				tcp = peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(registrarScenario(t, code)), Port: port,
					Transport: "t1", Calls: 1, Timeout: 30 * time.Second, Logger: testLogger(t)})
			} else {
				r = startSIPpPort(t, registrarScenario(t, code), port)
			}
			reg := pbxRegistration(fmt.Sprintf("127.0.0.1:%d", port))
			reg.Transport = v.transport
			s, obs := startRegServer(t, reg, nil)
			st := waitReg(t, s, "refreshed twice", func(st RegistrationStatus) bool { return st.Registrations >= 3 })
			if st.State != RegStateRegistered || time.Until(st.Expires) > 2*time.Second {
				t.Fatalf("status %+v: want registered for at most the 2 s granted", st)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// SIPp saw every refresh in time and the authenticated un-REGISTER.
			if tcp != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if res, err := tcp.Wait(ctx); err != nil || res.ExitCode != 0 {
					t.Fatalf("registrar over TCP: %v %+v", err, res)
				}
			} else {
				r.wait(t)
			}
			if code == "407" {
				checkProxyDigests(t, filepath.Join(r.dir, "msg.log"), "pbxuser", "pbxsecret", 4)
			}
			if st := s.Registrations()[0]; st.State != RegStateUnregistered {
				t.Fatalf("after Close: %+v", st)
			}
			if n := len(obs.times(RegStateRegistered)); n != 1 {
				t.Fatalf("registered reported %d times, want once (refreshes keep the state)", n)
			}
		})
	}
}

// With a wrong password the registrar's digest check fails (403): the registration is
// rejected and retried with growing back-off.
func TestSIPpRegistrationWrongPasswordBacksOff(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	startSIPpPort(t, "registrar_refresh.xml", port)
	reg := pbxRegistration(fmt.Sprintf("127.0.0.1:%d", port))
	reg.Password = "wrong"
	s, _ := startRegServer(t, reg, nil)
	st := waitReg(t, s, "rejected", func(st RegistrationStatus) bool { return st.State == RegStateRejected })
	if !strings.Contains(st.Error, "403") {
		t.Fatalf("error %q does not say 403", st.Error)
	}
}

// A registrar that never answers: each REGISTER times out (Timeout), the registration is
// failed and retried with growing, bounded back-off; Close returns promptly (no un-REGISTER
// since nothing was registered) and leaves no goroutine behind (goleak in TestMain).
func TestRegistrationRegistrarNeverAnswers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var arrivals []time.Time // first copy of each REGISTER (by CSeq)
	go func() {
		buf := make([]byte, 65536)
		seen := map[string]bool{}
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			i := strings.Index(msg, "CSeq:")
			if !strings.HasPrefix(msg, "REGISTER ") || i < 0 {
				continue
			}
			cseq, _, _ := strings.Cut(msg[i:], "\r\n")
			if !seen[cseq] {
				seen[cseq] = true
				mu.Lock()
				arrivals = append(arrivals, time.Now())
				mu.Unlock()
			}
		}
	}()
	reg := pbxRegistration(pc.LocalAddr().String())
	reg.Timeout = 200 * time.Millisecond
	reg.RetryMin, reg.RetryMax = 100*time.Millisecond, 400*time.Millisecond
	s, obs := startRegServer(t, reg, nil)
	st := waitReg(t, s, "failed 4 times", func(st RegistrationStatus) bool { return st.Failures >= 4 })
	if st.State != RegStateFailed || !strings.Contains(st.Error, "no answer") {
		t.Fatalf("status %+v", st)
	}
	fails := obs.times(RegStateFailed)
	mu.Lock()
	got := append([]time.Time(nil), arrivals...)
	mu.Unlock()
	if len(got) < 4 || len(fails) < 1 {
		t.Fatalf("%d REGISTERs, %d failures", len(got), len(fails))
	}
	// Gaps between attempts: timeout + back-off, the back-off doubling (jitter takes at most
	// 25 %) and bounded by RetryMax.
	gaps := make([]time.Duration, 0, len(got)-1)
	for i := 1; i < len(got); i++ {
		gaps = append(gaps, got[i].Sub(got[i-1]))
	}
	if gaps[0] < reg.Timeout+75*time.Millisecond || gaps[1] < reg.Timeout+150*time.Millisecond {
		t.Fatalf("attempts not backed off: gaps %v", gaps)
	}
	for _, g := range gaps {
		if g > reg.Timeout+reg.RetryMax+500*time.Millisecond {
			t.Fatalf("back-off beyond RetryMax: gaps %v", gaps)
		}
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// checkProxyDigests verifies (RFC 2617, no qop, MD5) the Proxy-Authorization of every
// REGISTER in a SIPp message log, and that there are at least n.
func checkProxyDigests(t *testing.T, path, user, pass string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := func(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }
	param := func(v, k string) string {
		_, rest, ok := strings.Cut(v, k+`="`)
		if !ok {
			return ""
		}
		val, _, _ := strings.Cut(rest, `"`)
		return val
	}
	checked := 0
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "Proxy-Authorization:")
		if !ok {
			continue
		}
		if param(v, "username") != user || param(v, "nonce") == "" || !strings.HasPrefix(param(v, "uri"), "sip:127.0.0.1") {
			t.Fatalf("credentials %q", v)
		}
		want := h(h(user+":"+param(v, "realm")+":"+pass) + ":" + param(v, "nonce") + ":" + h("REGISTER:"+param(v, "uri")))
		if param(v, "response") != want {
			t.Fatalf("digest response in %q, want %s", v, want)
		}
		checked++
	}
	if checked < n {
		t.Fatalf("%d REGISTERs with Proxy-Authorization, want at least %d", checked, n)
	}
}

// logBuffer is a concurrency-safe log sink for checking what was logged.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A broken registrar (no nonce, garbage and oversized expiries) gets a clear log line for
// each answer and back-off, never a crash; a huge but valid expiry is cut to what we asked.
func TestSIPpRegistrationHostileRegistrar(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	r := startSIPpPort(t, "registrar_hostile.xml", port)
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "provider"}}
	cfg.Registrations = []Registration{pbxRegistration(fmt.Sprintf("127.0.0.1:%d", port))}
	logs := &logBuffer{}
	s := startServerWith(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	st := waitReg(t, s, "registered", func(st RegistrationStatus) bool { return st.State == RegStateRegistered })
	if left := time.Until(st.Expires); left > time.Minute || left < 50*time.Second {
		t.Fatalf("huge grant not cut to the 1m asked: expires in %v", left)
	}
	for _, want := range []string{"challenge without a nonce", `malformed expiry \"banana\"`, `malformed expiry \"9999999999`} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if st.Registrations != 1 {
		t.Fatalf("status %+v", st)
	}
	s.Close()
	r.wait(t)
}

// An INVITE from the registrar's address to our contact user is a call from the registration's
// trunk (no digest); to another user from that address it is challenged like any other.
func TestSIPpRegistrationInboundCallFromTrunk(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	startSIPpPort(t, "registrar_refresh.xml", port)
	rec := newRecorder(answerAfterRinging)
	s, _ := startRegServer(t, pbxRegistration(fmt.Sprintf("127.0.0.1:%d", port)), rec)
	waitReg(t, s, "registered", func(st RegistrationStatus) bool { return st.State == RegStateRegistered })

	other := startSIPp(t, "uac_call.xml", s.target("udp"), "-s", "someoneelse")
	err := <-other.done
	other.done <- err
	if err == nil {
		t.Fatal("a call to another user from the registrar's address was not challenged")
	}
	select {
	case c := <-rec.calls:
		t.Fatalf("unexpected call %+v", c.Info())
	default:
	}

	r := startSIPp(t, "uac_call.xml", s.target("udp"), "-s", "pbxcontact")
	c := rec.waitCall(t, r)
	r.wait(t)
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
	if info := c.Info(); info.Trunk != "provider" || info.AuthUser != "" || info.ToUser != "pbxcontact" {
		t.Fatalf("call info %+v", info)
	}
}
