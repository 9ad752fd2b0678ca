package sip

import (
	"sync"
	"testing"

	"github.com/nkbridge/nkbridge/sip/registrar"
)

func TestSIPpRegisterDigest(t *testing.T) {
	sippPath(t)
	s := startServer(t, testConfig(), nil)
	var mu sync.Mutex
	var changes []registrar.Change
	s.Registrar().Subscribe(func(c registrar.Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })

	r := startSIPp(t, "register_auth.xml", s.target("udp"), "-s", "alice", "-au", "alice", "-ap", "secret")
	r.wait(t)
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0].Kind != registrar.Added || changes[1].Kind != registrar.Removed {
		t.Fatalf("registration changes = %+v, want added then removed", changes)
	}
	b := changes[0].Binding
	if b.AOR != "alice" || b.Transport != "udp" || b.Contact == "" {
		t.Fatalf("binding %+v", b)
	}
	if n := len(s.Registrar().Lookup("alice")); n != 0 {
		t.Fatalf("%d bindings left after un-REGISTER", n)
	}
}

func TestSIPpRegisterWrongPasswordBlocked(t *testing.T) {
	sippPath(t)
	s := startServer(t, testConfig(), nil)
	r := startSIPp(t, "register_wrong_password.xml", s.target("udp"), "-s", "alice", "-au", "alice", "-ap", "wrong")
	r.wait(t)
	if s.Registrar().Count() != 0 {
		t.Fatal("wrong password registered")
	}
	if !s.failures.Blocked(mustAddr("127.0.0.1")) {
		t.Fatal("source not blocked after repeated failures")
	}
}
