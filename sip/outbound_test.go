package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/sip/sdpdir"
)

func outboundConfig() Config {
	cfg := testConfig()
	cfg.OutboundDomains = []string{"127.0.0.1"}
	return cfg
}

func TestSIPpOutboundCallEarlyMediaAndRemoteBye(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_answer.xml", "")
	rec := newRecorder(nil)
	var progress []Progress
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{
		Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP),
		Events: rec, OnProgress: func(p Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if len(progress) != 1 || progress[0].Code != 183 || !strings.Contains(string(progress[0].SDP), "o=bob 1 1") {
		t.Fatalf("progress %+v", progress)
	}
	if !strings.Contains(string(c.RemoteSDP()), "o=bob 1 2") {
		t.Fatalf("answer SDP %q", c.RemoteSDP())
	}
	if e := rec.waitEnd(t); e.Cause != CauseRemoteHangup {
		t.Fatalf("end %+v", e)
	}
	r.wait(t)
	if s.Calls() != 0 {
		t.Fatalf("%d calls left", s.Calls())
	}
}

func TestSIPpOutboundCancel(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_cancel.xml", "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{
		Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP),
		OnProgress: func(p Progress) {
			if p.Code == 180 {
				cancel() // the caller hangs up while it rings
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial err = %v, want context.Canceled", err)
	}
	r.wait(t) // SIPp requires CANCEL then ACK of its 487
}

func TestSIPpOutboundBusy(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_busy.xml", "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP)})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 486 || se.Reason != "Busy Here" {
		t.Fatalf("Dial err = %v, want 486 Busy Here", err)
	}
	r.wait(t)
}

func TestSIPpOutboundTrunkAuth(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Host: fmt.Sprintf("127.0.0.1:%d", port), Username: "trunkuser", Password: "trunkpw"}}
	s := startServer(t, cfg, nil)
	r := startSIPpPort(t, "uas_auth.xml", port)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:+15550100@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		r.wait(t)
		t.Fatalf("Dial through authenticating trunk: %v", err)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if e := c.End(); e.Cause != CauseLocalHangup {
		t.Fatalf("end %+v", e)
	}
	r.wait(t)
}

func TestSIPpOutboundHold(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_hold.xml", "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		t.Fatal(err)
	}
	hold, _ := sdpdir.Set([]byte(testSDP), sdpdir.SendOnly)
	ans, err := c.Reinvite(ctx, sdpdir.BumpVersion(hold))
	if err != nil {
		t.Fatalf("hold re-INVITE: %v", err)
	}
	if info, _ := sdpdir.Parse(ans); info.Direction != sdpdir.RecvOnly {
		t.Fatalf("hold answered %s", info.Direction)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
}

func TestDialPolicy(t *testing.T) {
	cfg := outboundConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Host: "198.51.100.7:5060"}}
	s, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cases := []struct {
		o    DialOptions
		want error
	}{
		{DialOptions{Target: "sip:x@127.0.0.1", Caller: "bob", Offer: []byte(testSDP)}, ErrNotPermitted},
		{DialOptions{Target: "sip:x@127.0.0.1", Offer: []byte(testSDP)}, ErrNotPermitted},
		{DialOptions{Target: "sip:x@evil.example", Caller: "alice", Offer: []byte(testSDP)}, ErrForbiddenTarget},
		{DialOptions{Target: "sip:x@10.0.0.1", Caller: "alice", Offer: []byte(testSDP)}, ErrForbiddenTarget},
		{DialOptions{Target: "tel:+123", Caller: "alice", Offer: []byte(testSDP)}, ErrBadTarget},
		{DialOptions{Target: "sip:x@nobody", Trusted: true, Offer: []byte(testSDP)}, ErrForbiddenTarget},
	}
	for i, c := range cases {
		if _, err := s.Dial(ctx, c.o); !errors.Is(err, c.want) {
			t.Errorf("%d: %v, want %v", i, err, c.want)
		}
	}
	if _, err := s.Authorize("alice", "sip:x@198.51.100.7:5060"); err != nil {
		t.Errorf("trunk host refused: %v", err)
	}
	if _, err := s.Authorize("alice", "sip:x@198.51.100.7:5070"); !errors.Is(err, ErrForbiddenTarget) {
		t.Errorf("other port of trunk host: %v", err)
	}
}

func TestSIPpOutboundTrunkAuthWrongPassword(t *testing.T) {
	sippPath(t)
	port := freePort(t)
	cfg := testConfig()
	cfg.Trunks = []Trunk{{Name: "carrier", Host: fmt.Sprintf("127.0.0.1:%d", port), Username: "trunkuser", Password: "wrong"}}
	s := startServer(t, cfg, nil)
	startSIPpPort(t, "uas_auth.xml", port)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:+15550100@127.0.0.1:%d", port), Caller: "alice", Offer: []byte(testSDP)})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("Dial with wrong trunk password: %v, want 403 from the trunk", err)
	}
}

func TestSIPpOutboundRedirect(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_redirect.xml", "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP)})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 302 || len(se.Contacts) != 1 || se.Contacts[0] != "sip:carol@127.0.0.1:5099" {
		t.Fatalf("Dial err = %#v, want 302 with the Contact", err)
	}
	r.wait(t)
}

func TestSIPpOutboundSessionTimer422ThenWeRefresh(t *testing.T) {
	sippPath(t)
	s := startServer(t, outboundConfig(), nil)
	r := startSIPp(t, "uas_timer.xml", "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice", Offer: []byte(testSDP)})
	if err != nil {
		r.wait(t)
		t.Fatalf("Dial: %v", err)
	}
	if se, we := c.SessionExpires(); se != 2*time.Second || !we {
		t.Fatalf("session timer %v we-refresh=%v", se, we)
	}
	time.Sleep(1500 * time.Millisecond) // the UPDATE is due after 1 s
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
}
