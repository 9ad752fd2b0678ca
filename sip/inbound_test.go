package sip

import (
	"context"
	"net"
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
	time.Sleep(50 * time.Millisecond) // the subject: a phone that rings a moment
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

func TestSIPpInboundEarlyMedia183(t *testing.T) {
	sippPath(t)
	early := strings.Replace(testSDP, "40000", "41999", 1)
	rec := newRecorder(func(c *Call) {
		if err := c.Progress([]byte(early)); err != nil {
			t.Errorf("Progress: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the subject: early media before the answer
		_ = c.Answer([]byte(early))
	})
	s := startServer(t, trunkConfig(), rec)
	r := startSIPp(t, "uac_early.xml", s.target("udp"), "-s", "echo")
	rec.waitCall(t, r)
	r.wait(t)
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
}

func TestInboundSessionIntervalTooSmall(t *testing.T) {
	cfg := trunkConfig()
	cfg.SessionTimer.MinSE = 90 * time.Second
	rec := newRecorder(answerAfterRinging)
	s := startServer(t, cfg, rec)
	msg := strings.Replace(string(rawInvite("se1", "se-call-1", 9)), "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 30\r\n", 1)
	c, err := net.Dial("udp", s.target("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Via port 9 is not ours: ask for the response at the source port with rport.
	msg = strings.Replace(msg, "branch=z9hG4bKse1", "rport;branch=z9hG4bKse1", 1)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	var got string
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		got = string(buf[:n])
		if !strings.HasPrefix(got, "SIP/2.0 100") {
			break
		}
	}
	if !strings.HasPrefix(got, "SIP/2.0 422") || !strings.Contains(got, "Min-SE: 90") {
		t.Fatalf("got %q, want 422 with Min-SE: 90", got)
	}
	select {
	case <-rec.calls:
		t.Fatal("call with a too small session interval reached the handler")
	default:
	}
}

func TestInboundRingTimeoutRejects480(t *testing.T) {
	cfg := trunkConfig()
	cfg.RingTimeout = 300 * time.Millisecond
	rec := newRecorder(func(c *Call) { _ = c.Ringing(nil) }) // never answers
	s := startServer(t, cfg, rec)
	c, err := net.Dial("udp", s.target("udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.Replace(string(rawInvite("ring1", "ring-call-1", 9)), "branch=z9hG4bKring1", "rport;branch=z9hG4bKring1", 1)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	var codes []string
	buf := make([]byte, 4096)
	for len(codes) < 4 {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		if n < 11 {
			continue
		}
		codes = append(codes, string(buf[8:11]))
		if codes[len(codes)-1] == "480" {
			break
		}
	}
	if len(codes) == 0 || codes[len(codes)-1] != "480" {
		t.Fatalf("responses %v, want ... 480", codes)
	}
	if e := rec.waitEnd(t); e.Cause != CauseRejected || e.Code != 480 {
		t.Fatalf("end %+v", e)
	}
}
