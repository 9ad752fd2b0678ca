package registrar

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
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
	peers.Poll(2*time.Second, func() bool { return r.Count() == 0 }) // checked below
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

// TestMaxPerSource: one source IP holds at most MaxPerSource bindings over all AORs; removal,
// expiry and a refresh from the same source give the room back; other sources are unaffected.
func TestMaxPerSource(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	r := New(Config{MaxPerSource: 3, Now: c.now})
	reg := func(aor, src string, exp int) error {
		_, err := r.Apply(Update{AOR: aor, Expires: exp, CallID: aor + src, CSeq: uint32(c.now().UnixNano() % 1e9),
			Contacts: []ContactUpdate{{Contact: "sip:" + aor + "@" + src, Expires: -1}}, Source: src + ":5060"})
		c.add(time.Millisecond)
		return err
	}
	for _, u := range []string{"a", "b", "c"} {
		if err := reg(u, "192.0.2.1", 120); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg("d", "192.0.2.1", 120); !errors.Is(err, ErrSourceBinds) {
		t.Fatalf("4th binding from one source: %v", err)
	}
	if len(r.Lookup("d")) != 0 || r.FromSource(mustIP("192.0.2.1")) != 3 {
		t.Fatalf("refused binding stored: %v %d", r.Lookup("d"), r.FromSource(mustIP("192.0.2.1")))
	}
	if err := reg("a", "192.0.2.1", 120); err != nil { // a refresh is not a new binding
		t.Fatalf("refresh: %v", err)
	}
	if err := reg("d", "192.0.2.2", 120); err != nil {
		t.Fatalf("another source: %v", err)
	}
	if err := reg("a", "192.0.2.1", 0); err != nil { // unregister frees one
		t.Fatal(err)
	}
	if err := reg("e", "192.0.2.1", 120); err != nil {
		t.Fatalf("after unregister: %v", err)
	}
	c.add(2 * time.Hour)
	r.Sweep()
	if n := r.FromSource(mustIP("192.0.2.1")); n != 0 {
		t.Fatalf("after expiry %d", n)
	}
}

func mustIP(s string) netip.Addr { return netip.MustParseAddr(s) }
