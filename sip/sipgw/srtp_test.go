package sipgw_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/sip"
	"github.com/nkbridge/nkbridge/sip/sipgw"
)

// TestBaresipSRTPOverTLS: bob's baresip, whose account requires SRTP (srtp module,
// mediaenc=srtp-mand), calls over SIP TLS as user bob (sip.users[].srtp mandatory) and
// reaches alice's plain baresip (registered over UDP, srtp off). nkbridge answers bob with
// RTP/SAVP and SDES keys and bridges SRTP to plain RTP: each phone hears the other's tone.
// A second call from a baresip without SRTP is refused by bob's mandatory setting.
func TestBaresipSRTPOverTLS(t *testing.T) {
	peers.NeedFile(t, "/usr/lib/baresip/modules/srtp.so", "apt-get install baresip-core")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tlsAddr, withTLS := sipTLS(t)
	e := newEnv(t, envOpts{sip: func(c *sip.Config) {
		withTLS(c)
		c.Users[1].SRTP = sip.SRTPMandatory // bob
		c.Users[1].CanCallSIP = true
	}, gw: func(c *sipgw.Config) { c.UserFarSide = "rtp" }}) // alice's phone gets a plain RTP offer
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	peers.WaitFor(t, waitLimit, "alice registered", func() bool { return len(e.srv.Registrar().Lookup("alice")) == 1 })
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600, Config: []string{"module\tsrtp.so"},
		Account: fmt.Sprintf("<sip:bob@%s;transport=tls>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s;mediaenc=srtp-mand",
			tlsAddr, bobPass, codecSpec("pcmu"))})
	if err := bob.Dial(ctx, fmt.Sprintf("sip:alice@%s;transport=tls", tlsAddr)); err != nil {
		t.Fatal(err)
	}
	srtpCall(ctx, t, e, bob, bob, alice, bob)

	// bob without SRTP (plain RTP/AVP offer): refused with 488 by sip.users[].srtp.
	plain := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600,
		Account: fmt.Sprintf("<sip:bob@%s;transport=tls>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", tlsAddr, bobPass, codecSpec("pcmu"))})
	if err := plain.Dial(ctx, fmt.Sprintf("sip:alice@%s;transport=tls", tlsAddr)); err != nil {
		t.Fatal(err)
	}
	ev, _, err := plain.WaitEvent(ctx, "CALL_CLOSED", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Param, "488") {
		t.Errorf("plain call from bob closed with %q, want 488", ev.Param)
	}
	if s, c := e.core.Counts(); s != 0 || c != 0 {
		t.Errorf("%d sessions, %d calls after the refusal", s, c)
	}
}

// TestBaresipSRTPOutboundOverTLS: the other direction. bob's baresip registers over SIP TLS
// and requires SRTP; alice (plain, UDP) calls user bob. nkbridge's media offers SDES keys
// (media.Config.SDESOffers, as the daemon sets it when a user has SRTP), the SIP side sends the
// offer to bob's device as RTP/SAVP (sip.users[].srtp mandatory), bob answers with its key:
// each phone hears the other's tone.
func TestBaresipSRTPOutboundOverTLS(t *testing.T) {
	peers.NeedFile(t, "/usr/lib/baresip/modules/srtp.so", "apt-get install baresip-core")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tlsAddr, withTLS := sipTLS(t)
	e := newEnv(t, envOpts{sip: func(c *sip.Config) {
		withTLS(c)
		c.Users[1].SRTP = sip.SRTPMandatory // bob
	}, media: func(c *media.Config) { c.SDESOffers = true },
		gw: func(c *sipgw.Config) { c.UserFarSide = "rtp" }})
	bob := peers.StartBaresip(t, peers.BaresipOptions{User: "bob", ToneHz: 600, Config: []string{"module\tsrtp.so"},
		Account: fmt.Sprintf("<sip:bob@%s;transport=tls>;auth_pass=%s;regint=60;answermode=auto;audio_codecs=%s;mediaenc=srtp-mand",
			tlsAddr, bobPass, codecSpec("pcmu"))})
	peers.WaitFor(t, waitLimit, "bob registered over TLS", func() bool {
		bs := e.srv.Registrar().Lookup("bob")
		return len(bs) == 1 && bs[0].Transport == "tls"
	})
	alice := peers.StartBaresip(t, peers.BaresipOptions{User: "alice", ToneHz: 1000,
		Account: fmt.Sprintf("<sip:alice@%s>;auth_pass=%s;regint=0;answermode=auto;audio_codecs=%s", e.addr, alicePass, codecSpec("pcmu"))})
	if err := alice.Dial(ctx, "sip:bob@"+e.addr); err != nil {
		t.Fatal(err)
	}
	srtpCall(ctx, t, e, bob, alice, alice, bob)
}

// sipTLS is a SIP TLS listener for newEnv on a free loopback port (a self-signed
// certificate): its address, and the change to the SIP configuration.
func sipTLS(t *testing.T) (string, func(*sip.Config)) {
	t.Helper()
	certFile, keyFile, _ := peers.SelfSignedCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t))
	return addr, func(c *sip.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.Listen = append(c.Listen, sip.Listen{Transport: "tls", Addr: addr})
	}
}

// srtpCall checks a call between bob's SRTP baresip (1000 Hz heard, 600 Hz sent) and alice's
// plain one, placed by caller: established, each hears the other's tone, bob's baresip reports
// SRTP; hanger hangs up, the other phone sees the call closed and nkbridge holds nothing.
func srtpCall(ctx context.Context, t *testing.T, e *env, bob, caller, alice, hanger *peers.Baresip) {
	t.Helper()
	if _, _, err := caller.WaitEvent(ctx, "CALL_ESTABLISHED", 0); err != nil {
		t.Fatalf("%v\n%s", err, bob.Process().Output())
	}
	if err := bob.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitHeard(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	adaptHeard(t, "bob (SRTP over TLS)", bob, 1000, 600)
	adaptHeard(t, "alice (plain RTP)", alice, 600, 1000)
	if out := bob.Process().Output(); !strings.Contains(out, "SRTP is Enabled") {
		t.Errorf("bob's baresip does not report SRTP:\n%s", out)
	}
	other := alice
	if hanger == alice {
		other = bob
	}
	n := len(other.Events())
	if err := hanger.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.WaitEvent(ctx, "CALL_CLOSED", n); err != nil {
		t.Fatal(err)
	}
	peers.WaitFor(t, waitLimit, "nothing left", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0 && e.eng.Sessions() == 0
	})
}
