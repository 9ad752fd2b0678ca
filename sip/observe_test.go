package sip

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// countObs records what a Server reports.
type countObs struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countObs) add(k string) { o.mu.Lock(); o.n[k]++; o.mu.Unlock() }
func (o *countObs) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}
func (o *countObs) Request(m, d string)                { o.add("req " + m + " " + d) }
func (o *countObs) Response(m string, c int, d string) { o.add(fmt.Sprintf("res %s %d %s", m, c, d)) }
func (o *countObs) Register(r string)                  { o.add("reg " + r) }

// A SIPp REGISTER with digest (challenge, register, challenge, unregister) is reported request
// by request, response by response, with the REGISTER outcomes.
func TestObserverRegister(t *testing.T) {
	sippPath(t)
	cfg := testConfig()
	p := freePort(t)
	for i := range cfg.Listen {
		cfg.Listen[i].Addr = fmt.Sprintf("127.0.0.1:%d", p)
	}
	obs := &countObs{n: map[string]int{}}
	s, err := New(cfg, Options{Logger: testLogger(t), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := startSIPp(t, "register_auth.xml", s.target("udp"), "-s", "alice", "-au", "alice", "-ap", "secret")
	r.wait(t)
	want := map[string]int{
		"req REGISTER in": 4, "res REGISTER 401 out": 2, "res REGISTER 200 out": 2,
		"reg unauthorized": 2, "reg ok": 1, "reg unregistered": 1,
	}
	// SIPp may exit on the last 200 before the server has reported the outcome it just
	// sent: give the counters a moment to settle.
	peers.Poll(2*time.Second, func() bool { // checked below
		for k, v := range want {
			if obs.get(k) != v {
				return false
			}
		}
		return true
	})
	for k, v := range want {
		if got := obs.get(k); got != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got, v, obs.n)
		}
	}
}

// An outbound call (SIPp answers with 100, 183, 200 and hangs up) is reported the other way
// round: requests out, responses in; the peer's BYE in, our 200 out.
func TestObserverOutboundCall(t *testing.T) {
	sippPath(t)
	cfg := outboundConfig()
	p := freePort(t)
	for i := range cfg.Listen {
		cfg.Listen[i].Addr = fmt.Sprintf("127.0.0.1:%d", p)
	}
	obs := &countObs{n: map[string]int{}}
	s, err := New(cfg, Options{Logger: testLogger(t), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := startSIPp(t, "uas_answer.xml", "")
	rec := newRecorder(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := s.Dial(ctx, DialOptions{Target: fmt.Sprintf("sip:bob@127.0.0.1:%d", r.port), Caller: "alice",
		Offer: []byte(testSDP), Events: rec}); err != nil {
		t.Fatalf("Dial: %v", err)
	}
	rec.waitEnd(t)
	r.wait(t)
	want := map[string]int{
		"req INVITE out": 1, "res INVITE 100 in": 1, "res INVITE 183 in": 1, "res INVITE 200 in": 1,
		"req ACK out": 1, "req BYE in": 1, "res BYE 200 out": 1, "req INVITE in": 0,
	}
	for k, v := range want {
		if got := obs.get(k); got != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got, v, obs.n)
		}
	}
}
