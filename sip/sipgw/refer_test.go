package sipgw_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// TestSIPpReferBlind: a SIP caller transfers its call (RFC 3515 REFER, blind). SIPp "alice"
// (digest) calls a SIPp phone through nkbridge (the sip- prefix) and REFERs the call to
// another SIPp phone. nkbridge challenges the REFER, accepts it (202), sends NOTIFY 100
// Trying, rings the target with alice's permissions, re-INVITEs the phone into the new call
// when the target answers, sends NOTIFY 200 OK and then BYE to alice. The moved phone hangs
// up the new call and the target gets BYE. Each scenario checks its side (the NOTIFY bodies
// and subscription states in uac_refer_blind.xml). Without REFER support nkbridge answers
// 405 and alice's scenario fails.
func TestSIPpReferBlind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	target := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transfer_target.xml"), Calls: 1, Timeout: 45 * time.Second})
	phone := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transferee.xml"), Calls: 1, Timeout: 45 * time.Second})
	a := <-startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_refer_blind.xml"), Remote: e.addr, Service: "sip-bob%40" + phone.Addr(), Calls: 1,
		Keys: map[string]string{"refer_to": "sip:carol@" + target.Addr()},
		Args: []string{"-au", "alice", "-ap", alicePass}, Timeout: 40 * time.Second,
	})
	a.check(t, 1)
	for name, p := range map[string]*peers.SIPp{"moved phone": phone, "target": target} {
		if r, err := p.Wait(ctx); err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls != 1 {
			t.Fatalf("sipp %s: %v %+v", name, err, r)
		}
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
}

// TestSIPpReferHostile: REFERs that must not transfer anything get a clear SIP error and leave
// the call alone (uac_refer_hostile.xml lists them: a forged dialog 481, tel: 416, a smuggled
// Via 400, an escaped CRLF 400, a huge user 400, two Refer-To 400, a target the REFERing user
// may not call 403). No call is placed meanwhile; the call then ends normally.
func TestSIPpReferHostile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t, envOpts{})
	rec := newRecorder(e.core, signaling.Subscription{Class: signaling.ClassMedia, Subclass: signaling.SubclassCall, Type: signaling.EventHangup})
	phone := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, "uas_transfer_target.xml"), Calls: 1, Timeout: 45 * time.Second})
	a := <-startSIPp(ctx, t, peers.SIPpOptions{
		Scenario: scenario(t, "uac_refer_hostile.xml"), Remote: e.addr, Service: "sip-bob%40" + phone.Addr(), Calls: 1,
		Keys: map[string]string{"huge": strings.Repeat("a", 1100)},
		Args: []string{"-au", "alice", "-ap", alicePass}, Timeout: 40 * time.Second,
	})
	a.check(t, 1)
	if r, err := phone.Wait(ctx); err != nil || r.ExitCode != 0 || r.Stats.SuccessfulCalls != 1 {
		t.Fatalf("sipp phone: %v %+v", err, r)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool { s, c := e.core.Counts(); return s == 0 && c == 0 && e.srv.Calls() == 0 })
	rec.mu.Lock()
	n := len(rec.evs)
	rec.mu.Unlock()
	if n != 1 {
		t.Errorf("%d calls ended, want only the original", n)
	}
}

// TestSIPpReferVariants: the transferor hanging up right after NOTIFY 100 (the transfer goes on:
// the moved phone and the target end up talking and hang up normally); a busy target (NOTIFY
// "486 Busy Here", the call kept: the transferor hangs it up and the phone gets BYE); no
// subscription (Refer-Sub: false: 202 without NOTIFYs, then BYE); a Refer-To naming nkbridge's
// echo extension (the phone is re-INVITEd into an echo session, its BYE ends it).
func TestSIPpReferVariants(t *testing.T) {
	for _, c := range []struct{ name, scen, target, phone string }{
		{"transferor-leaves", "uac_refer_blind_bye.xml", "uas_transfer_target.xml", "uas_transferee.xml"},
		{"target-busy", "uac_refer_busy.xml", "uas_busy.xml", "uas_transfer_target.xml"},
		{"no-subscription", "uac_refer_nosub.xml", "uas_transfer_target.xml", "uas_transferee.xml"},
		{"to-echo-extension", "uac_refer_blind.xml", "", "uas_transferee.xml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			e := newEnv(t, envOpts{})
			peersUsed := map[string]*peers.SIPp{}
			referTo := "sip:echo@" + e.addr
			if c.target != "" {
				target := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, c.target), Calls: 1, Timeout: 45 * time.Second})
				peersUsed["target"] = target
				referTo = "sip:carol@" + target.Addr()
			}
			phone := peers.StartSIPp(t, peers.SIPpOptions{Scenario: scenario(t, c.phone), Calls: 1, Timeout: 45 * time.Second})
			peersUsed["phone"] = phone
			a := <-startSIPp(ctx, t, peers.SIPpOptions{
				Scenario: scenario(t, c.scen), Remote: e.addr, Service: "sip-bob%40" + phone.Addr(), Calls: 1,
				Keys: map[string]string{"refer_to": referTo},
				Args: []string{"-au", "alice", "-ap", alicePass}, Timeout: 40 * time.Second,
			})
			a.check(t, 1)
			for name, p := range peersUsed {
				if r, err := p.Wait(ctx); err != nil || r.ExitCode != 0 {
					t.Fatalf("sipp %s: %v %+v", name, err, r)
				}
			}
			peers.WaitFor(t, waitLimit, "nothing left", func() bool {
				s, c := e.core.Counts()
				return s == 0 && c == 0 && e.srv.Calls() == 0 && sipgw.LegCount(e.gw) == 0
			})
		})
	}
}
