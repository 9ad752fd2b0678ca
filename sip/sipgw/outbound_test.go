package sipgw_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
)

// rtpOffer is a plain-RTP PCMU offer from a caller at 127.0.0.1:port.
func rtpOffer(port int) signaling.Desc {
	sdp := fmt.Sprintf("v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n", port)
	return signaling.Desc{"sdp": sdp, "sdp_type": "rtp"}
}

// proxyCall starts a proxy session (caller and far side plain RTP) and a call
// from user to callee of type typ; it returns the call id and a recorder of
// the call's events.
func proxyCall(t *testing.T, ctx context.Context, e *env, user, typ, callee string) (string, string, *recorder) {
	t.Helper()
	res, err := e.core.StartSession(ctx, signaling.SessionRequest{Type: "proxy", Offer: rtpOffer(peers.FreeUDPPort(t)),
		User: user, Owner: "test", Options: map[string]any{"proxy_type": "rtp"}})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	rec := newRecorder(e.core, signaling.Subscription{Class: "media", Subclass: "call"})
	id, err := e.core.StartCall(ctx, signaling.CallRequest{Type: typ, Callee: callee, SessionID: res.SessionID,
		Offer: res.Offer, Caller: signaling.CallerInfo{User: user, Owner: "test"}})
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	return id, res.SessionID, rec
}

// TestSIPpOutboundCallEarlyMediaAndBye: call type sip to a SIPp phone that
// answers 183 with SDP (applied to the caller's session as early media), then
// 200, then hangs up with BYE: ringing carries the caller's answer, accepted
// follows, the hangup is 2110 sip_bye and the session stops.
func TestSIPpOutboundCallEarlyMediaAndBye(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_answer.xml"), Calls: 1, Timeout: 20 * time.Second})
	id, sid, rec := proxyCall(t, ctx, e, "alice", "sip", "sip:bob@"+uas.Addr())
	ring := rec.wait(t, ctx, "ringing", id)
	ans, _ := ring.Body["answer"].(signaling.Desc)
	if ans.SDPType() != "rtp" || !strings.Contains(ans.SDP(), "m=audio") {
		t.Fatalf("ringing without the caller's early answer: %+v", ring.Body)
	}
	rec.wait(t, ctx, "accepted", id)
	h := rec.wait(t, ctx, "hangup", id)
	if h.Body["code"] != signaling.CodeSIPBye {
		t.Fatalf("hangup %+v, want 2110", h.Body)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	peers.WaitFor(t, waitLimit, "session stopped", func() bool { _, ok := e.core.LookupSession(sid); return !ok })
}

// TestSIPpOutboundBusy: a 486 from the phone is the call's rejection, with
// the SIP status kept in the text.
func TestSIPpOutboundBusy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_busy.xml"), Calls: 1, Timeout: 20 * time.Second})
	id, _, rec := proxyCall(t, ctx, e, "alice", "sip", "sip:bob@"+uas.Addr())
	rej := rec.wait(t, ctx, "rejected", id)
	if rej.Body["code"] != signaling.CodeCallRejected || rej.Body["error"] != "486 Busy Here" {
		t.Fatalf("rejected %+v, want 2021 \"486 Busy Here\"", rej.Body)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
}

// TestSIPpOutboundCancel: the caller hangs up while the phone rings: CANCEL.
func TestSIPpOutboundCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_cancel.xml"), Calls: 1, Timeout: 20 * time.Second})
	id, _, rec := proxyCall(t, ctx, e, "alice", "sip", "sip:bob@"+uas.Addr())
	rec.wait(t, ctx, "ringing", id)
	if err := e.core.HangupCall(id, nil); err != nil {
		t.Fatal(err)
	}
	r, err := uas.Wait(ctx) // SIPp requires CANCEL, then the ACK of its 487
	if err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
}

// TestOutboundNotAllowed: no open relay. A user without the right to call SIP
// URLs, and a domain that is not allowed, get 1030 and nothing is sent.
func TestOutboundNotAllowed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	for _, c := range []struct{ user, callee, want string }{
		{"bob", "sip:carol@127.0.0.1:5999", "may not call SIP URLs"},
		{"alice", "sip:carol@192.0.2.7", "SIP domain not allowed"},
		{"", "sip:carol@127.0.0.1:5999", "Only authenticated users"},
		{"alice", "sip:<bad>", "Invalid SIP URL"},
	} {
		id, _, rec := proxyCall(t, ctx, e, c.user, "sip", c.callee)
		h := rec.wait(t, ctx, "hangup", id)
		if !strings.Contains(fmt.Sprint(h.Body["reason"]), c.want) {
			t.Errorf("%s -> %s: hangup %+v, want %q", c.user, c.callee, h.Body, c.want)
		}
	}
	if n := e.srv.Calls(); n != 0 {
		t.Fatalf("%d SIP calls placed", n)
	}
}

// TestSIPpRegisteredUserCalled: SIPp registers bob (digest auth) with a
// contact at a SIPp phone; call start type user bob rings that phone, which
// answers; its BYE ends the call.
func TestSIPpRegisteredUserCalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_answer.xml"), Calls: 1, Timeout: 30 * time.Second})
	reg, err := peers.RunSIPp(ctx, t, peers.SIPpOptions{Scenario: scenario(t, "register_contact.xml"), Remote: e.addr,
		Service: "bob", Calls: 1, Keys: map[string]string{"contact_port": fmt.Sprint(uas.Port())},
		Args: []string{"-au", "bob", "-ap", bobPass}, Timeout: 20 * time.Second})
	if err != nil || reg.ExitCode != 0 {
		t.Fatalf("register: %v %+v", err, reg)
	}
	if bs := e.srv.Registrar().Lookup("bob"); len(bs) != 1 {
		t.Fatalf("bindings %+v", bs)
	}
	id, _, rec := proxyCall(t, ctx, e, "alice", "user", "bob")
	rec.wait(t, ctx, "accepted", id)
	if h := rec.wait(t, ctx, "hangup", id); h.Body["code"] != signaling.CodeSIPBye {
		t.Fatalf("hangup %+v", h.Body)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v", err, r)
	}
	// Also by AOR: a sip target in our own domain rings the registration, and an unknown one is no destination.
	id2, _, rec2 := proxyCall(t, ctx, e, "bob", "sip", "sip:nobody@127.0.0.1")
	if h := rec2.wait(t, ctx, "hangup", id2); h.Body["code"] != signaling.CodeNoDestination {
		t.Fatalf("hangup %+v, want 2022", h.Body)
	}
}

// TestSIPpPhoneHoldsCaller: the phone nkbridge called puts the call on hold
// (re-INVITE sendonly): nkbridge answers recvonly and the session's media is
// held; the resume (sendrecv) releases it; the phone's BYE ends the call.
func TestSIPpPhoneHoldsCaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t, envOpts{})
	uas := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_peer_hold.xml"), Calls: 1, Timeout: 20 * time.Second})
	id, sid, rec := proxyCall(t, ctx, e, "alice", "sip", "sip:bob@"+uas.Addr())
	rec.wait(t, ctx, "accepted", id)
	held := func() bool { m, ok := e.be.Media(sid); return ok && m.Held() }
	peers.WaitFor(t, waitLimit, "media held", held)
	peers.WaitFor(t, waitLimit, "media resumed", func() bool { return !held() })
	if h := rec.wait(t, ctx, "hangup", id); h.Body["code"] != signaling.CodeSIPBye {
		t.Fatalf("hangup %+v", h.Body)
	}
	if r, err := uas.Wait(ctx); err != nil || r.ExitCode != 0 {
		t.Fatalf("sipp uas: %v %+v\n%s", err, r, r.Errors)
	}
}
