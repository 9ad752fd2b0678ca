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
