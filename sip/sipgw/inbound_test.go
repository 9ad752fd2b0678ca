package sipgw_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// TestSIPpEchoExtension: SIPp (a trunk on loopback) calls the echo extension
// with a PCMU tone stream; nkbridge answers with the embedded echo and the
// caller's RTP comes back to SIPp; SIPp's BYE stops the session.
func TestSIPpEchoExtension(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: peers.Scenario(t, "uac-pcmu-tone.xml"), Remote: e.addr, Service: "echo", Calls: 1,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
		Args: []string{"-d", "3000"}, Timeout: 30 * time.Second,
	})
	// While the call is up: one echo session whose caller leg receives RTP and
	// sends every packet back (the last counts seen before SIPp's BYE).
	var in, out uint64
	r := whileRunning(done, 50*time.Millisecond, func() {
		if _, st, _, ok := echoSession(e); ok {
			in, out = st.PacketsIn, st.PacketsOut
		}
	})
	// 3 s of 20 ms packets: about 150 (the last 50 ms may be missed).
	if in < 100 || out+5 < in {
		t.Fatalf("echo: %d RTP packets in, %d echoed", in, out)
	}
	r.check(t, 1)
	t.Logf("echo: %d RTP packets in, %d echoed", in, out)
	peers.WaitFor(t, waitLimit, "session stopped after BYE", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

// TestSIPpDTMFAndHoldThroughGateway: SIPp (authenticated as alice) calls
// baresip through nkbridge with the sip- prefix (sip-bob@127.0.0.1:PORT).
// SIPp's INFO digit 5 reaches baresip as RFC 4733; baresip's RFC 4733 digit 7
// reaches SIPp as INFO (its SDP has no telephone-event); SIPp's re-INVITE
// sendonly is answered recvonly and puts the media on hold (no media timeout),
// sendrecv resumes it.
func TestSIPpDTMFAndHoldThroughGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{media: func(c *media.Config) { c.MediaTimeout = 2 * time.Second }})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600})
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_dtmf_hold.xml"), Remote: e.addr, Calls: 1,
		Service: fmt.Sprintf("sip-bob%%40127.0.0.1%%3A%d", bob.SIPPort()),
		Args:    []string{"-au", "alice", "-ap", alicePass}, Timeout: 45 * time.Second,
	})
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	ev, _, err := bob.WaitEvent(ctx, "CALL_DTMF_START", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Param != "5" {
		t.Fatalf("baresip got DTMF %q, want 5", ev.Param)
	}
	if _, err := bob.Command(ctx, "sndcode", "7"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)                         // the subject: the key held down for 200 ms
	if _, err := bob.Command(ctx, "sndcode", ""); err != nil { // key release
		t.Logf("sndcode release: %v", err)
	}
	var held *embeddedMediaHeld
	peers.WaitFor(t, waitLimit, "media on hold", func() bool {
		held = findHeld(e)
		return held != nil && held.held
	})
	// SIPp sends no RTP while held, longer than the media timeout: the session must survive.
	time.Sleep(2500 * time.Millisecond) // the subject: silent past the media timeout
	if h := findHeld(e); h == nil || !h.held {
		t.Fatalf("held session gone or resumed early: %+v", h)
	}
	peers.WaitFor(t, waitLimit, "media resumed", func() bool { h := findHeld(e); return h != nil && !h.held })
	(<-done).check(t, 1)
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

type embeddedMediaHeld struct {
	id   string
	held bool
}

// findHeld returns the hold state of the (one) proxy session.
func findHeld(e *env) *embeddedMediaHeld {
	for _, sid := range e.core.ListSessions() {
		if m, ok := e.be.Media(sid); ok && m.Type() == "proxy" {
			return &embeddedMediaHeld{id: sid, held: m.Held()}
		}
	}
	return nil
}

// registerAt registers user (digest auth, by SIPp) with a contact at port.
func registerAt(t *testing.T, ctx context.Context, e *env, user, pass string, port int) {
	t.Helper()
	reg, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{Scenario: scenario(t, "register_contact.xml"), Remote: e.addr,
		Service: user, Calls: 1, Keys: map[string]string{"contact_port": fmt.Sprint(port)},
		Args: []string{"-au", user, "-ap", pass}, Timeout: 20 * time.Second})
	if err != nil || reg.ExitCode != 0 {
		t.Fatalf("register: %v %+v", err, reg)
	}
}

// TestSIPpInboundToRegisteredUser: a trunk call to user bob rings bob's
// registered SIP device (an rtp far side: UserFarSide auto); its 486 goes
// back to the caller as 486, the caller's CANCEL while it rings is passed on
// as a CANCEL, its 183 early media reaches the caller as a 183 with SDP and
// its BYE as a BYE.
func TestSIPpInboundToRegisteredUser(t *testing.T) {
	for _, c := range []struct{ uac, uas string }{
		{"uac_busy.xml", "uas_busy.xml"},
		{"uac_cancel.xml", "uas_cancel.xml"},
		{"uac_early_far_bye.xml", "uas_answer.xml"}, // 183 SDP passed on as 183 SDP, the device's BYE as BYE
	} {
		t.Run(c.uas, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e := newEnv(t, envOpts{sip: trunkLoopback, gw: func(g *sipgw.Config) { g.UserFarSide = "auto" }})
			// the call's data (kept in call records): the SIP dialog and the trunk
			var dataMu sync.Mutex
			var data map[string]any
			e.core.AddResolver(signaling.CallTypeUser, signaling.ResolverFunc(func(_ context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
				dataMu.Lock()
				data = d.Data
				dataMu.Unlock()
				return nil, nil
			}))
			uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, c.uas), Calls: 1, Timeout: 30 * time.Second})
			registerAt(t, ctx, e, "bob", bobPass, uas.Port())
			uac, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{Scenario: scenario(t, c.uac), Remote: e.addr,
				Service: "bob", Calls: 1, Timeout: 30 * time.Second})
			if err != nil || uac.ExitCode != 0 || uac.Stats.SuccessfulCalls != 1 {
				t.Fatalf("uac: %v %+v\n%s", err, uac, uac.Errors)
			}
			if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls != 1 {
				t.Fatalf("uas: %v %+v\n%s", err, r, r.Errors)
			}
			peers.WaitFor(t, waitLimit, "nothing left", func() bool {
				s, cl := e.core.Counts()
				return s == 0 && cl == 0 && e.srv.Calls() == 0
			})
			dataMu.Lock()
			defer dataMu.Unlock()
			if data["sip_trunk"] != "loopback" || data["sip_call_id"] == "" || data["sip_from"] == "" {
				t.Fatalf("call data %v", data)
			}
		})
	}
}

// TestInboundRejections: what nkbridge cannot route is answered with a clear
// SIP status (a Go SIP user agent calls it from the trunk network).
func TestInboundRejections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	uaAddr := fmt.Sprintf("127.0.0.1:%d", peers.FreePort(t))
	ua, err := sip.New(sip.Config{Listen: []sip.Listen{{Transport: "udp", Addr: uaAddr}, {Transport: "tcp", Addr: uaAddr}},
		OutboundDomains: []string{"127.0.0.1"}}, sip.Options{Logger: e.log.With("component", "ua")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	offer := rtpOffer(peers.FreeUDPPort(t)).SDP()
	for _, c := range []struct {
		user string
		code int
		why  string
	}{
		{"nobody", 404, "no such user (no destination)"},
		{"park", 480, "park has no backend here"},
		{"conf-room1", 480, "mcu has no backend here"},
		{"conf-%2Fetc", 404, "not a room id"},
		{"sip-carol%40127.0.0.1%3A5999", 403, "a trunk call may not call SIP URLs"},
		{"a%00b", 404, "control character"},
		{"verto-nobody", 404, "no Verto login (no resolver here)"},
	} {
		var se *sip.StatusError
		_, err := ua.Dial(ctx, sip.DialOptions{Target: fmt.Sprintf("sip:%s@%s", c.user, e.addr), Trusted: true, Offer: []byte(offer)})
		for i := 0; i < 20 && err != nil && !errors.As(err, &se) && strings.Contains(err.Error(), "address already in use"); i++ {
			// sipgo may not have pooled the listener's socket yet right after Start.
			time.Sleep(50 * time.Millisecond) // a retry pause: sipgo offers no condition to wait on
			_, err = ua.Dial(ctx, sip.DialOptions{Target: fmt.Sprintf("sip:%s@%s", c.user, e.addr), Trusted: true, Offer: []byte(offer)})
		}
		if !errors.As(err, &se) || se.Code != c.code {
			t.Errorf("%s (%s): %v, want %d", c.user, c.why, err, c.code)
		} else {
			t.Logf("%s: %d %s", c.user, se.Code, se.Reason)
		}
	}
	// Bad SDP: 488.
	if _, err := ua.Dial(ctx, sip.DialOptions{Target: "sip:echo@" + e.addr, Trusted: true, Offer: []byte("v=0\r\nnonsense\r\n")}); err == nil ||
		!strings.Contains(err.Error(), "488") {
		t.Errorf("bad SDP to echo: %v, want 488", err)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 })
}

// TestBaresipEchoExtension: baresip (authenticating as bob) calls the echo
// extension and hears its own 600 Hz tone back.
func TestBaresipEchoExtension(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, bobPass, "pcmu/8000/1")})
	if err := bob.Dial(ctx, "sip:echo@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n := len(bob.Events())
	if err := bob.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	samples, rate, err := bob.Heard()
	if err != nil {
		t.Fatal(err)
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), 600, 1000)
	t.Logf("baresip heard %.1f s of echo: %.0f Hz (ratio %.1f), rms %.0f", float64(len(samples))/float64(rate), f, ratio, audiotest.RMS(tail))
	if f != 600 || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Fatalf("echo: heard %.0f Hz (ratio %.1f, rms %.0f), want its own 600 Hz", f, ratio, audiotest.RMS(tail))
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
}
