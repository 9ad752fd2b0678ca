package embedded

// Internal test (package embedded, own helpers prefixed "ad") of the offer
// adapter: a call forked to invitees of different media kinds.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/signaling"
)

// adEnv is a core with the embedded backend and an offer adapter on a
// second engine (as the daemon wires them), and a "user" resolver returning
// the invitees the test sets.
type adEnv struct {
	t        *testing.T
	eng, aux *media.Engine
	be, auxB *Backend
	core     *signaling.Core

	mu   sync.Mutex
	invs []signaling.Invitee
}

func newAdEnv(t *testing.T) *adEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := 30000 + 2*rand.IntN(15000)
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 100,
		Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	be := New(eng, log)
	// The same RTP port range: each engine skips the ports the other holds.
	aux, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 100,
		Quarantine: 200 * time.Millisecond, MediaTimeout: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	auxB := New(aux, log)
	backends := signaling.NewBackends()
	backends.Register(Name, be, Types()...)
	backends.SetOfferAdapter(NewAdapter(auxB))
	core := signaling.New(signaling.Options{Logger: log, Backends: backends})
	e := &adEnv{t: t, eng: eng, aux: aux, be: be, auxB: auxB, core: core}
	core.AddResolver("user", signaling.ResolverFunc(func(context.Context, signaling.Destination) ([]signaling.Invitee, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.invs, nil
	}))
	t.Cleanup(func() {
		core.Close()
		be.Close()
		auxB.Close()
		_ = eng.Close()
		_ = aux.Close()
	})
	return e
}

// waitSessions waits until the main engine holds n sessions and the
// adapter's engine aux ones (in the engines and the backends).
func (e *adEnv) waitSessions(what string, n, aux int) {
	e.t.Helper()
	peers.WaitFor(e.t, 5*time.Second, fmt.Sprintf("%s: %d sessions in the main backend and engine, %d in the aux ones", what, n, aux), func() bool {
		return e.be.Sessions() == n && e.eng.Sessions() == n && e.auxB.Sessions() == aux && e.aux.Sessions() == aux
	})
}

// adInvitee is a test invitee declaring a media kind ("" = none).
type adInvitee struct {
	kind    string
	invited chan adInvite
	hung    chan *signaling.Error
}

type adInvite struct {
	inv signaling.Invitation
	h   signaling.InviteHandle
}

func newAdInvitee(kind string) *adInvitee {
	return &adInvitee{kind: kind, invited: make(chan adInvite, 1), hung: make(chan *signaling.Error, 1)}
}

func (i *adInvitee) MediaKind() string { return i.kind }

func (i *adInvitee) Invite(_ context.Context, inv signaling.Invitation, h signaling.InviteHandle) error {
	i.invited <- adInvite{inv, h}
	h.Ringing(nil)
	return nil
}

func (i *adInvitee) Hangup(err *signaling.Error) { i.hung <- err }

func (i *adInvitee) waitInvite(t *testing.T) adInvite {
	t.Helper()
	select {
	case v := <-i.invited:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("invitee %q not invited", i.kind)
	}
	return adInvite{}
}

func (i *adInvitee) waitHangup(t *testing.T) *signaling.Error {
	t.Helper()
	select {
	case e := <-i.hung:
		return e
	case <-time.After(5 * time.Second):
		t.Fatalf("invitee %q not hung up", i.kind)
	}
	return nil
}

// adObserver catches the call's answer for the caller.
type adObserver struct {
	answered chan signaling.Desc
	hangup   chan *signaling.Error
}

func (o *adObserver) CallRinging(string, signaling.Desc) {}
func (o *adObserver) CallAnswered(_ string, a signaling.Desc) {
	o.answered <- a
}
func (o *adObserver) CallHangup(_ string, err *signaling.Error) {
	o.hangup <- err
}

// newAdPC is a PCMU pion peer (loopback only).
func newAdPC(t *testing.T) *peers.PCMUPeer { return peers.NewPCMUPeer(t, "adpc") }

// adWaitTone waits (up to 10 s) for 1.5 s of audio and asserts its second
// half is freq, not other.
func adWaitTone(t *testing.T, who string, heard func() ([]int16, int), freq, other float64) {
	t.Helper()
	var pcm []int16
	var n int
	peers.WaitFor(t, 10*time.Second, who+": 1.5 s of audio", func() bool { pcm, n = heard(); return len(pcm) >= 12000 })
	if n < 40 {
		t.Fatalf("%s got %d packets (%d samples)", who, n, len(pcm))
	}
	f, ratio := audiotest.Dominant(pcm[len(pcm)/2:], 8000, freq, other)
	rms := audiotest.RMS(pcm[len(pcm)/2:])
	t.Logf("%s: %d packets, dominant %.0f Hz (ratio %.1f), rms %.0f", who, n, f, ratio, rms)
	if f != freq || ratio < 10 || rms < 1000 {
		t.Errorf("%s hears %.0f Hz (ratio %.1f, rms %.0f), want %.0f Hz", who, f, ratio, rms, freq)
	}
}

func isPlainRTP(sdp string) bool {
	return strings.Contains(sdp, "RTP/AVP ") && !strings.Contains(sdp, "a=fingerprint") &&
		!strings.Contains(sdp, "a=ice-ufrag") && !strings.Contains(sdp, "SAVPF")
}

func isWebRTC(sdp string) bool {
	return strings.Contains(sdp, "a=fingerprint") && strings.Contains(sdp, "a=ice-ufrag")
}

// startWebRTCCall: a WebRTC caller's proxy session (far side webrtc) calls
// type user; it returns the caller's peer, the session and call ids.
func (e *adEnv) startWebRTCCall(obs *adObserver) (*peers.PCMUPeer, string, string) {
	t := e.t
	caller := newAdPC(t)
	ctx := context.Background()
	res, err := e.core.StartSession(ctx, signaling.SessionRequest{Type: signaling.TypeProxy,
		Offer: signaling.Desc{"sdp": caller.Offer(), "sdp_type": "webrtc"}, Options: map[string]any{"proxy_type": "webrtc"}})
	if err != nil {
		t.Fatal(err)
	}
	callID, err := e.core.StartCall(ctx, signaling.CallRequest{Type: "user", Callee: "alice", SessionID: res.SessionID,
		Offer: signaling.Desc{"caller_name": "Bob", "caller_id": "1002"}, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return caller, res.SessionID, callID
}

// TestAdaptRTPInviteeWins: the call forks to two RTP invitees (adapted), one
// WebRTC invitee (not adapted) and one that declares nothing (not adapted);
// the first RTP invitee answers and audio flows both ways between the WebRTC
// caller and the plain-RTP phone; the losers' aux session is released, and
// everything is at the end.
func TestAdaptRTPInviteeWins(t *testing.T) {
	e := newAdEnv(t)
	phone, deskphone, browser, plain := newAdInvitee("rtp"), newAdInvitee("rtp"), newAdInvitee("webrtc"), newAdInvitee("")
	e.invs = []signaling.Invitee{phone, deskphone, browser, plain}
	obs := &adObserver{answered: make(chan signaling.Desc, 1), hangup: make(chan *signaling.Error, 1)}
	caller, _, callID := e.startWebRTCCall(obs)

	ph, dk, br, pl := phone.waitInvite(t), deskphone.waitInvite(t), browser.waitInvite(t), plain.waitInvite(t)
	for _, v := range []adInvite{ph, dk} {
		if v.inv.Offer.SDPType() != "rtp" || !isPlainRTP(v.inv.Offer.SDP()) {
			t.Fatalf("RTP invitee got a %q offer:\n%s", v.inv.Offer.SDPType(), v.inv.Offer.SDP())
		}
		if v.inv.Offer.String("caller_name") != "Bob" || v.inv.Offer.String("caller_id") != "1002" {
			t.Errorf("adapted offer lost the caller's fields: %v", v.inv.Offer)
		}
	}
	if ph.inv.Offer.SDP() == dk.inv.Offer.SDP() {
		t.Error("both RTP invitees got the same offer (want one aux session each)")
	}
	for _, v := range []adInvite{br, pl} {
		if v.inv.Offer.SDPType() != "webrtc" || !isWebRTC(v.inv.Offer.SDP()) {
			t.Fatalf("WebRTC/undeclared invitee got a %q offer:\n%s", v.inv.Offer.SDPType(), v.inv.Offer.SDP())
		}
	}
	if br.inv.Offer.SDP() != pl.inv.Offer.SDP() {
		t.Error("the WebRTC invitee's offer is not the call's offer")
	}
	e.waitSessions("ringing (caller's proxy + 2 aux)", 1, 2)

	// The phone answers in RTP; the caller gets a WebRTC answer.
	rtpPeer := peers.NewRTPPeer(t)
	rtpPeer.Learn(0, "pcmu")
	rtpPeer.UseSDP(ph.inv.Offer.SDP())
	if err := ph.h.Accepted(signaling.Desc{"sdp": rtpPeer.SDP(""), "sdp_type": "rtp"}, ""); err != nil {
		t.Fatalf("Accepted: %v", err)
	}
	// A late acceptance from the desk phone is refused.
	if err := dk.h.Accepted(signaling.Desc{"sdp": rtpPeer.SDP(""), "sdp_type": "rtp"}, ""); err == nil {
		t.Error("second acceptance taken")
	}
	var ans signaling.Desc
	select {
	case ans = <-obs.answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the caller got no answer")
	}
	if ans.SDPType() != "webrtc" || !isWebRTC(ans.SDP()) {
		t.Fatalf("caller's answer is %q:\n%s", ans.SDPType(), ans.SDP())
	}
	for _, i := range []*adInvitee{deskphone, browser, plain} {
		if err := i.waitHangup(t); err == nil || err.Code != signaling.CodeOriginatorCancel {
			t.Errorf("loser %q hung up with %v, want %d", i.kind, err, signaling.CodeOriginatorCancel)
		}
	}
	e.waitSessions("answered (the desk phone's aux session released)", 1, 1)
	caller.SetAnswer(ans.SDP())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go caller.SendToneFor(ctx, 1000, 10*time.Second)
	go rtpPeer.SendToneFor(ctx, 0, "pcmu", 600, 10*time.Second)
	adWaitTone(t, "RTP phone", rtpPeer.Heard, 1000, 600)
	adWaitTone(t, "WebRTC caller", caller.Heard, 600, 1000)
	cancel()

	if err := e.core.HangupCall(callID, nil); err != nil {
		t.Fatal(err)
	}
	if err := phone.waitHangup(t); err == nil {
		t.Error("winner not hung up")
	}
	e.waitSessions("after hangup", 0, 0)
	if s, c := e.core.Counts(); s != 0 || c != 0 {
		t.Errorf("core holds %d sessions, %d calls", s, c)
	}
}

// TestAdaptWebRTCInviteeWins: the WebRTC invitee (a pion peer) answers the
// unadapted offer; the RTP invitee's aux session is released; audio flows.
func TestAdaptWebRTCInviteeWins(t *testing.T) {
	e := newAdEnv(t)
	phone, browser := newAdInvitee("rtp"), newAdInvitee("webrtc")
	e.invs = []signaling.Invitee{phone, browser}
	obs := &adObserver{answered: make(chan signaling.Desc, 1), hangup: make(chan *signaling.Error, 1)}
	caller, _, callID := e.startWebRTCCall(obs)
	ph, br := phone.waitInvite(t), browser.waitInvite(t)
	if !isPlainRTP(ph.inv.Offer.SDP()) || !isWebRTC(br.inv.Offer.SDP()) {
		t.Fatalf("offers: phone %q, browser %q", ph.inv.Offer.SDPType(), br.inv.Offer.SDPType())
	}
	e.waitSessions("ringing", 1, 1)
	callee := newAdPC(t)
	if err := br.h.Accepted(signaling.Desc{"sdp": callee.Answer(br.inv.Offer.SDP()), "sdp_type": "webrtc"}, ""); err != nil {
		t.Fatal(err)
	}
	var ans signaling.Desc
	select {
	case ans = <-obs.answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the caller got no answer")
	}
	if err := phone.waitHangup(t); err == nil || err.Code != signaling.CodeOriginatorCancel {
		t.Errorf("phone hung up with %v", err)
	}
	e.waitSessions("answered (the phone's aux session released)", 1, 0)
	caller.SetAnswer(ans.SDP())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go caller.SendToneFor(ctx, 1000, 10*time.Second)
	go callee.SendToneFor(ctx, 600, 10*time.Second)
	adWaitTone(t, "WebRTC callee", callee.Heard, 1000, 600)
	adWaitTone(t, "WebRTC caller", caller.Heard, 600, 1000)
	cancel()
	if err := e.core.HangupCall(callID, nil); err != nil {
		t.Fatal(err)
	}
	e.waitSessions("after hangup", 0, 0)
}

// TestAdaptRejectAndBadAnswer: an adapted invitee that rejects releases its
// aux session at once; an adapted invitee answering garbage ends the call
// with a clear error and releases everything; an invitee wanting an unknown
// kind gets the call's offer as is (the adapter refuses it, nothing is held).
func TestAdaptRejectAndBadAnswer(t *testing.T) {
	e := newAdEnv(t)
	a, b, odd := newAdInvitee("rtp"), newAdInvitee("rtp"), newAdInvitee("carrier-pigeon")
	e.invs = []signaling.Invitee{a, odd, b}
	obs := &adObserver{answered: make(chan signaling.Desc, 1), hangup: make(chan *signaling.Error, 1)}
	_, _, callID := e.startWebRTCCall(obs)
	ia, ib := a.waitInvite(t), b.waitInvite(t)
	if io := odd.waitInvite(t); io.inv.Offer.SDPType() != "webrtc" || !isWebRTC(io.inv.Offer.SDP()) {
		t.Errorf("an invitee wanting an unknown kind got %v, want the call's offer", io.inv.Offer.SDPType())
	}
	e.waitSessions("ringing", 1, 2)
	ia.h.Rejected(signaling.Errorf(signaling.CodeCallRejected, "busy"))
	e.waitSessions("after a rejection", 1, 1)
	err := ib.h.Accepted(signaling.Desc{"sdp": "garbage", "sdp_type": "rtp"}, "")
	if err == nil {
		t.Fatal("a garbage answer was taken")
	}
	t.Logf("garbage answer: %v", err)
	select {
	case herr := <-obs.hangup:
		if herr.Code != signaling.CodeInvalidParameters {
			t.Errorf("call ended with %v, want %d", herr, signaling.CodeInvalidParameters)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call not ended")
	}
	if err := e.core.HangupCall(callID, nil); err == nil {
		t.Error("call still there")
	}
	e.waitSessions("after the failed answer", 0, 0)
}
