package sipgw_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/embedded"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// adaptBrowser is a Go invitee standing for bob's browser: it declares
// "webrtc", records its offer and never answers.
type adaptBrowser struct {
	invited chan signaling.Invitation
	hung    chan *signaling.Error
}

func (b *adaptBrowser) MediaKind() string { return "webrtc" }
func (b *adaptBrowser) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	b.invited <- inv
	h.Ringing(nil)
	return nil
}
func (b *adaptBrowser) Hangup(err *signaling.Error) { b.hung <- err }

// adaptHeard asserts what a baresip heard is freq, not other.
func adaptHeard(t *testing.T, who string, p *peers.Baresip, freq, other float64) {
	t.Helper()
	samples, rate, err := p.Heard()
	if err != nil {
		t.Fatal(err)
	}
	tail := samples[len(samples)/3:]
	f, ratio := audiotest.Dominant(tail, float64(rate), freq, other)
	t.Logf("%s heard %.1f s: %.0f Hz (ratio %.1f), rms %.0f", who, float64(len(samples))/float64(rate), f, ratio, audiotest.RMS(tail))
	if f != freq || ratio < 10 || audiotest.RMS(tail) < 300 {
		t.Errorf("%s heard %.0f Hz (ratio %.1f, rms %.0f), want %.0f Hz", who, f, ratio, audiotest.RMS(tail), freq)
	}
}

// TestAdaptedOfferToRegisteredPhone: an inbound SIP call from alice
// (baresip) to user bob, whose calls ring with a WebRTC offer
// (user_far_side webrtc), forks to bob's registered SIP phone (baresip,
// declares rtp) and to bob's browser (declares webrtc). With the offer
// adapter the phone gets a plain-RTP offer (not a 488), answers first, and
// the two baresips hear each other's tone through caller proxy → aux proxy;
// the browser got the WebRTC offer and is cancelled; everything is released.
func TestAdaptedOfferToRegisteredPhone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{gw: func(g *sipgw.Config) { g.UserFarSide = "webrtc" }})
	base := peers.FreeUDPRange(t, 200)
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
		Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: e.log.With("component", "media-adapt")})
	if err != nil {
		t.Fatal(err)
	}
	auxB := embedded.New(aux, e.log)
	e.core.SetOfferAdapter(embedded.NewAdapter(auxB))
	t.Cleanup(func() { e.close(); auxB.Close(); _ = aux.Close() })

	browser := &adaptBrowser{invited: make(chan signaling.Invitation, 1), hung: make(chan *signaling.Error, 1)}
	e.core.AddResolver("user", signaling.ResolverFunc(func(_ context.Context, d signaling.Destination) ([]signaling.Invitee, error) {
		if d.Callee != "bob" {
			return nil, nil
		}
		return []signaling.Invitee{browser}, nil
	}))
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s", e.addr, bobPass, codecSpec("pcmu"))})
	peers.WaitFor(t, waitLimit, "bob registered", func() bool { return len(e.srv.Registrar().Lookup("bob")) == 1 })
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=0;answermode=manual;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	if err := alice.Dial(ctx, "sip:bob@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case inv := <-browser.invited:
		if sdp := inv.Offer.SDP(); inv.Offer.SDPType() != "webrtc" || !strings.Contains(sdp, "a=fingerprint") || !strings.Contains(sdp, "a=ice-ufrag") {
			t.Errorf("the browser got a %q offer:\n%s", inv.Offer.SDPType(), sdp)
		}
	case <-ctx.Done():
		t.Fatal("the browser was not rung")
	}
	select {
	case err := <-browser.hung:
		if err == nil || err.Code != signaling.CodeOriginatorCancel {
			t.Errorf("browser hung up with %v, want %d (answered elsewhere)", err, signaling.CodeOriginatorCancel)
		}
	case <-ctx.Done():
		t.Fatal("the browser was not cancelled")
	}
	if n := auxB.Sessions(); n != 1 {
		t.Errorf("%d aux sessions during the call, want 1", n)
	}
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	adaptHeard(t, "bob's phone", bob, 1000, 600)
	adaptHeard(t, "alice", alice, 600, 1000)
	n := len(bob.Events())
	if err := alice.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && auxB.Sessions() == 0 && aux.Sessions() == 0 && e.eng.Sessions() == 0
	})
}

// TestAdaptedPhoneHoldsAndSendsInfo: alice (baresip) calls user bob, whose calls ring with a
// WebRTC offer (user_far_side webrtc), so bob's registered phone (SIPp, PCMU only, a 600 Hz
// tone all along) gets an offer adapted to plain RTP: its leg is the far side of the adapter's
// aux proxy session, not of alice's session (whose far side is the WebRTC leg to the aux
// session). The phone sends a digit by SIP INFO, then holds (re-INVITE sendonly) and resumes
// (sendrecv): the digit is played on the phone's leg (the aux session sends it as RFC 4733 to
// alice's session, which reports media/session/info {dtmf 5, side far} and relays it to alice),
// both re-INVITEs are answered by the phone's RTP leg (recvonly, then sendrecv: the scenario
// fails otherwise), and alice still hears the phone's tone after the resume. Before the
// gateway sent an adapted leg's in-dialog requests to the aux session, the re-INVITE went to
// the WebRTC far side of alice's session and was refused.
func TestAdaptedPhoneHoldsAndSendsInfo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{gw: func(g *sipgw.Config) { g.UserFarSide = "webrtc" }})
	base := peers.FreeUDPRange(t, 200)
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 199,
		Quarantine: -1, MediaTimeout: 10 * time.Second, Logger: e.log.With("component", "media-adapt")})
	if err != nil {
		t.Fatal(err)
	}
	auxB := embedded.New(aux, e.log)
	e.core.SetOfferAdapter(embedded.NewAdapter(auxB))
	t.Cleanup(func() { e.close(); auxB.Close(); _ = aux.Close() })
	info := newRecorder(e.core, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassSession, Type: "info"})

	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_adapted_hold_info.xml"), Calls: 1, Timeout: 40 * time.Second,
		Keys: map[string]string{"rtp_stream": peers.PCMUToneFile(t, 600, 5) + ",-1,0"}})
	registerAt(t, ctx, e, "bob", bobPass, uas.Port())
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=0;answermode=manual;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	if err := alice.Dial(ctx, "sip:bob@"+e.addr); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatal(err)
	}
	if n := auxB.Sessions(); n != 1 {
		t.Errorf("%d aux sessions during the call, want 1", n)
	}
	ev, _, err := alice.WaitEvent(ctx, "CALL_DTMF_START", 0)
	if err != nil {
		t.Errorf("alice got no digit: %v", err)
	} else if ev.Param != "5" {
		t.Errorf("alice got digit %q, want 5", ev.Param)
	}
	r, err := uas.Wait(ctx)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas (INFO, hold, resume): %v %+v\n%s", err, r, r.Errors)
	}
	if _, _, err := alice.WaitEvent(ctx, "CALL_CLOSED", 0); err != nil {
		t.Fatal(err)
	}
	adaptHeard(t, "alice", alice, 600, 1000)
	var far strings.Builder
	info.mu.Lock()
	for _, ev := range info.evs {
		if in, _ := ev.Body["info"].(map[string]any); in != nil && in["side"] == "far" {
			far.WriteString(fmt.Sprint(in["dtmf"]))
		}
	}
	info.mu.Unlock()
	if far.String() != "5" {
		t.Errorf("media/session/info dtmf events from the far side %q, want %q (the digit played on the phone's leg)", far.String(), "5")
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && auxB.Sessions() == 0 && aux.Sessions() == 0 && e.eng.Sessions() == 0
	})
}
