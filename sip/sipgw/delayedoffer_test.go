package sipgw_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// echoSession returns the id and caller-side stats of the (one) echo session.
func echoSession(e *env) (string, media.LegStats, bool, bool) {
	for _, sid := range e.core.ListSessions() {
		if m, ok := e.be.Media(sid); ok && m.Type() == "echo" {
			return sid, m.Stats()[media.SideCaller], m.Held(), true
		}
	}
	return "", media.LegStats{}, false, false
}

// whileRunning calls f every interval until SIPp's run ends, and returns it.
func whileRunning(done <-chan sippRun, every time.Duration, f func()) sippRun {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r
		case <-tick.C:
			f()
		}
	}
}

// TestSIPpDelayedOfferEcho: SIPp calls the echo extension with an INVITE
// without SDP; nkbridge's 200 carries the media's PCMU offer (checked by the
// scenario), SIPp's answer comes in the ACK and its PCMU stream comes back.
func TestSIPpDelayedOfferEcho(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_delayed_offer.xml"), Remote: e.addr, Service: "echo", Calls: 1,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
		Args: []string{"-d", "3000"}, Timeout: 30 * time.Second,
	})
	var in, out uint64
	whileRunning(done, 50*time.Millisecond, func() {
		if _, st, _, ok := echoSession(e); ok {
			in, out = st.PacketsIn, st.PacketsOut
		}
	}).check(t, 1)
	if in < 100 || out+5 < in {
		t.Fatalf("echo: %d RTP packets in, %d echoed", in, out)
	}
	t.Logf("echo after delayed offer: %d RTP packets in, %d echoed", in, out)
	peers.WaitFor(t, waitLimit, "session stopped after BYE", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Stats().RTPPortsInUse == 0
	})
}

// TestSIPpDelayedOfferBadAnswer: a delayed-offer call whose ACK has no SDP,
// garbage for one or an answer with a codec never offered, is ended by nkbridge with a BYE (SIPp waits for it);
// the session stops with 2112 and nothing is left.
func TestSIPpDelayedOfferBadAnswer(t *testing.T) {
	for _, sc := range []string{"uac_delayed_offer_noanswer.xml", "uac_delayed_offer_garbage.xml", "uac_delayed_offer_nocodec.xml"} {
		t.Run(strings.TrimSuffix(sc, ".xml"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e := newEnv(t, envOpts{sip: trunkLoopback})
			rec := newRecorder(e.core, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession})
			r := <-startSIPp(ctx, t, peers.SIPpOptions{
				Scenario: scenario(t, sc), Remote: e.addr, Service: "echo", Calls: 1, Timeout: 30 * time.Second,
			})
			r.check(t, 1)
			stop := rec.wait(t, ctx, signaling.EventStop, "")
			if stop.Body["code"] != signaling.CodeSIPNoSDP || !strings.Contains(stop.Body["reason"].(string), "ACK without a usable SDP answer") {
				t.Fatalf("session stop %+v, want code 2112 (SIP answer missing)", stop.Body)
			}
			peers.WaitFor(t, waitLimit, "nothing left", func() bool {
				s, c := e.core.Counts()
				return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Stats().RTPPortsInUse == 0
			})
		})
	}
}

// TestSIPpReinviteWithoutSDP: in an established echo call SIPp re-INVITEs
// twice without SDP; each 200 offers sendrecv audio (checked by the scenario)
// and the answer in the ACK applies: a=inactive holds the media, a=sendrecv
// resumes it.
func TestSIPpReinviteWithoutSDP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback})
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_reinvite_nosdp.xml"), Remote: e.addr, Service: "echo", Calls: 1, Timeout: 30 * time.Second,
	})
	var sawHeld, resumed bool
	whileRunning(done, 20*time.Millisecond, func() {
		if _, _, held, ok := echoSession(e); ok {
			sawHeld = sawHeld || held
			resumed = sawHeld && !held
		}
	}).check(t, 1)
	if !sawHeld || !resumed {
		t.Fatalf("media held %v, resumed after %v: want both", sawHeld, resumed)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Stats().RTPPortsInUse == 0
	})
}

// TestSIPpDelayedOfferToRegisteredPhone: a trunk's delayed-offer call (SIPp,
// PCMU 1000 Hz) to user bob rings bob's registered phone (baresip, 600 Hz)
// through a proxy session: the phone hears SIPp's tone, and the phone's audio
// goes out to SIPp's address from the ACK's answer.
func TestSIPpDelayedOfferToRegisteredPhone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{sip: trunkLoopback, gw: func(c *sipgw.Config) { c.UserFarSide = "rtp" }})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
	peers.WaitFor(t, waitLimit, "bob registered", func() bool { return len(e.srv.Registrar().Lookup("bob")) == 1 })
	done := startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_delayed_offer.xml"), Remote: e.addr, Service: "bob", Calls: 1,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 1000, 5) + ",-1,0"},
		Args: []string{"-d", "4000"}, Timeout: 30 * time.Second,
	})
	var toSIPp uint64
	whileRunning(done, 50*time.Millisecond, func() {
		for _, sid := range e.core.ListSessions() {
			if m, ok := e.be.Media(sid); ok && m.Type() == "proxy" {
				toSIPp = m.Stats()[media.SideCaller].PacketsOut
			}
		}
	}).check(t, 1)
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	}
	adaptHeard(t, "bob's phone", bob, 1000, 600)
	if toSIPp < 100 {
		t.Errorf("%d RTP packets sent to SIPp, want the phone's audio (about 200)", toSIPp)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Stats().RTPPortsInUse == 0
	})
}
