package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/sip/sdpdir"
)

func trunkConfig() Config {
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "local", Networks: []string{"127.0.0.1/32"}}}
	return cfg
}

func answerAfterRinging(c *Call) {
	_ = c.Ringing(nil)
	time.Sleep(50 * time.Millisecond)
	_ = c.Answer([]byte(testSDP))
}

func TestSIPpInboundCallUDPAndTCP(t *testing.T) {
	sippPath(t)
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			rec := newRecorder(answerAfterRinging)
			s := startServer(t, trunkConfig(), rec)
			args := []string{"-s", "echo"}
			if tp == "tcp" {
				args = append(args, "-t", "t1")
			}
			r := startSIPp(t, "uac_call.xml", s.target(tp), args...)
			c := rec.waitCall(t, r)
			r.wait(t)
			e := rec.waitEnd(t)
			if e.Cause != CauseRemoteHangup {
				t.Fatalf("end = %+v, want remote hangup", e)
			}
			info := c.Info()
			if info.ToUser != "echo" || info.Trunk != "local" || info.AuthUser != "" || info.Transport != tp {
				t.Fatalf("call info %+v", info)
			}
			if !strings.Contains(string(c.RemoteSDP()), "m=audio") {
				t.Fatalf("offer not kept: %q", c.RemoteSDP())
			}
			if n := s.Calls(); n != 0 {
				t.Fatalf("%d calls left", n)
			}
		})
	}
}

func TestSIPpInboundCallNeedsAuth(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, testConfig(), rec) // no trunk: 127.0.0.1 must authenticate
	r := startSIPp(t, "uac_call_auth.xml", s.target("udp"), "-s", "park", "-au", "alice", "-ap", "secret")
	c := rec.waitCall(t, r)
	r.wait(t)
	if c.Info().AuthUser != "alice" {
		t.Fatalf("auth user %q", c.Info().AuthUser)
	}
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
}

func TestSIPpInboundUnauthenticatedNeverReachesHandler(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, testConfig(), rec)
	// Wrong password: the scenario expects 200 after auth, so SIPp must fail; the handler must
	// never see the call.
	r := startSIPp(t, "uac_call_auth.xml", s.target("udp"), "-s", "park", "-au", "alice", "-ap", "nope", "-recv_timeout", "3000")
	err := <-r.done
	r.done <- err
	if err == nil {
		t.Fatal("SIPp call with a wrong password succeeded")
	}
	select {
	case c := <-rec.calls:
		t.Fatalf("unauthenticated call reached the handler: %+v", c.Info())
	default:
	}
}

func TestSIPpInboundCancel(t *testing.T) {
	sippPath(t)
	rec := newRecorder(func(c *Call) { _ = c.Ringing(nil) })
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_cancel.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t)
	e := rec.waitEnd(t)
	if e.Cause != CauseCanceled || e.Code != 487 {
		t.Fatalf("end %+v, want canceled/487", e)
	}
}

func TestSIPpInboundBusy(t *testing.T) {
	sippPath(t)
	rec := newRecorder(func(c *Call) { _ = c.Reject(486, "") })
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_busy.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t)
	if e := rec.waitEnd(t); e.Cause != CauseRejected || e.Code != 486 {
		t.Fatalf("end %+v", e)
	}
}

func TestSIPpInboundHoldResume(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_hold.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t)
	rec.waitEnd(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reoffers) != 2 {
		t.Fatalf("reoffers %d, want 2", len(rec.reoffers))
	}
	if !rec.reoffers[0].Hold || rec.reoffers[0].Info.Direction != sdpdir.SendOnly {
		t.Fatalf("first re-offer not hold: %+v", rec.reoffers[0].Info)
	}
	if rec.reoffers[1].Hold || rec.reoffers[1].Info.Direction != sdpdir.SendRecv {
		t.Fatalf("second re-offer not resume: %+v", rec.reoffers[1].Info)
	}
}

func TestSIPpInboundInfoDTMF(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	rec.onDTMF = func(c *Call, d DTMF) {
		if d.Digit == '#' {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.SendDTMF(ctx, '7', 100*time.Millisecond); err != nil {
					t.Errorf("SendDTMF: %v", err)
				}
			}()
		}
	}
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_info.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t)
	rec.waitEnd(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dtmf) != 2 || rec.dtmf[0].Digit != '5' || rec.dtmf[0].Duration != 200*time.Millisecond || rec.dtmf[1].Digit != '#' {
		t.Fatalf("dtmf %+v", rec.dtmf)
	}
}

func TestSIPpSessionTimerPeerRefreshThenExpiry(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_timer_peer_refresh.xml", s.target("udp"), "-s", "bob")
	c := rec.waitCall(t, r)
	r.wait(t) // SIPp requires the BYE from us
	e := rec.waitEnd(t)
	if e.Cause != CauseSessionExpiry {
		t.Fatalf("end %+v, want session expiry", e)
	}
	if se, we := c.SessionExpires(); se != 3*time.Second || we {
		t.Fatalf("session expires %v we-refresh=%v", se, we)
	}
}

func TestSIPpSessionTimerWeRefresh(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_timer_we_refresh.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t) // SIPp requires our UPDATE before it hangs up
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
}

func TestSIPpSessionTimerWeRefreshByReinvite(t *testing.T) {
	sippPath(t)
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_timer_we_refresh_reinvite.xml", s.target("udp"), "-s", "bob")
	rec.waitCall(t, r)
	r.wait(t) // SIPp requires our refreshing re-INVITE (with SDP) before it hangs up
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
}
