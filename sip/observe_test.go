package sip

import (
	"context"
	"fmt"
	"sync"
	"testing"
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
	for k, v := range want {
		if got := obs.get(k); got != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got, v, obs.n)
		}
	}
}
