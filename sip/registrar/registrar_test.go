package registrar

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestRegistrarLifecycle(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	r := New(Config{MinExpires: 60 * time.Second, MaxExpires: 600 * time.Second, MaxContacts: 2, Now: c.now})
	var mu sync.Mutex
	var kinds []ChangeKind
	unsub := r.Subscribe(func(ch Change) { mu.Lock(); kinds = append(kinds, ch.Kind); mu.Unlock() })
	defer unsub()

	up := func(cseq uint32, exp int, contacts ...ContactUpdate) ([]Binding, error) {
		return r.Apply(Update{AOR: "sip:Alice@example.com", Expires: exp, Contacts: contacts, CallID: "c1", CSeq: cseq})
	}
	if _, err := up(1, 30, ContactUpdate{Contact: "sip:a@1.1.1.1", Expires: -1}); err == nil {
		t.Fatal("expected 423")
	} else if e := (*IntervalTooBriefError)(nil); !errors.As(err, &e) || e.Min != 60*time.Second {
		t.Fatalf("expected IntervalTooBrief, got %v", err)
	}
	bs, err := up(2, 7200, ContactUpdate{Contact: "sip:a@1.1.1.1", Expires: -1}, ContactUpdate{Contact: "sip:a@2.2.2.2", Expires: 120, Q: 0.9})
	if err != nil || len(bs) != 2 {
		t.Fatalf("register two: %v %v", bs, err)
	}
	if bs[0].Contact != "sip:a@2.2.2.2" || bs[1].Expires.Sub(c.now()) != 600*time.Second {
		t.Fatalf("order/clamp wrong: %+v", bs)
	}
	if _, err := up(2, 100, ContactUpdate{Contact: "sip:a@1.1.1.1", Expires: -1}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("stale cseq: %v", err)
	}
	if _, err := up(3, 100, ContactUpdate{Contact: "sip:a@3.3.3.3", Expires: -1}); !errors.Is(err, ErrTooManyBinds) {
		t.Fatalf("max contacts: %v", err)
	}
	if bs := r.Lookup("alice"); len(bs) != 2 {
		t.Fatalf("lookup: %v", bs)
	}
	// Refresh then remove one.
	if _, err := up(4, 300, ContactUpdate{Contact: "sip:a@1.1.1.1", Expires: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := up(5, 0, ContactUpdate{Contact: "sip:a@2.2.2.2", Expires: -1}); err != nil {
		t.Fatal(err)
	}
	if bs := r.Lookup("ALICE"); len(bs) != 1 || bs[0].Contact != "sip:a@1.1.1.1" {
		t.Fatalf("after remove: %v", bs)
	}
	// Expiry in the background.
	c.add(301 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, 5*time.Millisecond); close(done) }()
	deadline := time.Now().Add(2 * time.Second)
	for r.Count() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if r.Count() != 0 {
		t.Fatal("binding did not expire")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []ChangeKind{Added, Added, Refreshed, Removed, Expired}
	if len(kinds) != len(want) {
		t.Fatalf("changes %v want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("changes %v want %v", kinds, want)
		}
	}
}

func TestWildcard(t *testing.T) {
	r := New(Config{})
	for i, ct := range []string{"sip:a@1.1.1.1", "sip:a@2.2.2.2"} {
		if _, err := r.Apply(Update{AOR: "bob", Expires: -1, Contacts: []ContactUpdate{{Contact: ct, Expires: -1}}, CallID: "x", CSeq: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Apply(Update{AOR: "bob", Wildcard: true, Expires: 60, CallID: "y", CSeq: 1}); !errors.Is(err, ErrWildcard) {
		t.Fatalf("wildcard with expires: %v", err)
	}
	if _, err := r.Apply(Update{AOR: "bob", Wildcard: true, Expires: 0, CallID: "y", CSeq: 1}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.Lookup("bob")); n != 0 {
		t.Fatalf("wildcard left %d", n)
	}
}
