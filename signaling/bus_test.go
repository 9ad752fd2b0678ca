package signaling

import (
	"sync"
	"testing"
)

type recSink struct {
	mu  sync.Mutex
	got []Event
}

func (r *recSink) Deliver(ev Event) {
	r.mu.Lock()
	r.got = append(r.got, ev)
	r.mu.Unlock()
}

func (r *recSink) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

func TestSubscriptionMatches(t *testing.T) {
	ev := Event{Class: "media", Subclass: "session", Type: "stop", ObjID: "s1"}
	cases := []struct {
		sub  Subscription
		want bool
	}{
		{Subscription{Class: "media"}, true},
		{Subscription{Class: "media", Subclass: "*", Type: "stop"}, true}, // '*' subclass with concrete type
		{Subscription{Class: "media", Subclass: "*", Type: "answer"}, false},
		{Subscription{Class: "media", Subclass: "session", Type: "*", ObjID: "s1"}, true},
		{Subscription{Class: "media", Subclass: "session", Type: "*", ObjID: "s2"}, false},
		{Subscription{Class: "media", Subclass: "call"}, false},
		{Subscription{Class: "core"}, false},
		{Subscription{Class: "*", Type: "stop"}, true},
	}
	for _, c := range cases {
		if got := c.sub.Normalize().Matches(ev); got != c.want {
			t.Errorf("%+v matches = %v, want %v", c.sub, got, c.want)
		}
	}
}

func TestBusDeliveryOnceMergeUnsubscribe(t *testing.T) {
	b := NewBus()
	s1, s2 := &recSink{}, &recSink{}
	b.Subscribe(s1, Subscription{Class: "media", ObjID: "x", Body: map[string]any{"tag": "a", "k": 1}})
	b.Subscribe(s1, Subscription{Class: "media", Subclass: "*", Type: "stop"}) // overlaps: still one delivery
	b.Subscribe(s2, Subscription{Class: "media", Subclass: "session", Type: "answer"})
	b.Publish(Event{Class: "media", Subclass: "session", Type: "stop", ObjID: "x", Body: map[string]any{"k": 2}})
	got := s1.take()
	if len(got) != 1 {
		t.Fatalf("s1 got %d events", len(got))
	}
	if got[0].Body["tag"] != "a" || got[0].Body["k"] != 2 {
		t.Fatalf("merged body = %v", got[0].Body)
	}
	if len(s2.take()) != 0 {
		t.Fatal("s2 got a stop")
	}
	if n := len(b.Subscriptions(s1)); n != 2 {
		t.Fatalf("s1 has %d subscriptions", n)
	}
	// Same selectors again replace the body, no duplicate.
	b.Subscribe(s1, Subscription{Class: "media", ObjID: "x", Body: map[string]any{"tag": "b"}})
	if n := len(b.Subscriptions(s1)); n != 2 {
		t.Fatalf("resubscribe count = %d", n)
	}
	if !b.Unsubscribe(s1, Subscription{Class: "media", Subclass: "*", Type: "stop"}) {
		t.Fatal("unsubscribe failed")
	}
	if b.Unsubscribe(s1, Subscription{Class: "media", Subclass: "*", Type: "stop"}) {
		t.Fatal("double unsubscribe succeeded")
	}
	b.Publish(Event{Class: "media", Subclass: "call", Type: "hangup", ObjID: "x"})
	if got := s1.take(); len(got) != 1 || got[0].Body["tag"] != "b" {
		t.Fatalf("after resubscribe: %v", got)
	}
	b.UnsubscribeAll(s1)
	b.UnsubscribeAll(s2)
	b.Publish(Event{Class: "media", Subclass: "session", Type: "answer", ObjID: "x"})
	if len(s1.take())+len(s2.take()) != 0 {
		t.Fatal("delivered after UnsubscribeAll")
	}
	for i := range b.shards {
		if len(b.shards[i].byObj) != 0 || len(b.shards[i].bySink) != 0 {
			t.Fatalf("bus shard %d not empty", i)
		}
	}
}

func TestErrors(t *testing.T) {
	if e := Err(CodeSessionTimeout); e.Text != "Session timeout" {
		t.Errorf("text = %q", e.Text)
	}
	if e := AsError(errString("boom")); e.Code != CodeUnknown || e.Text != "boom" {
		t.Errorf("unknown error = %+v", e)
	}
	if e := ReasonError(0, "", nil); e != nil {
		t.Errorf("default = %v", e)
	}
	if e := ReasonError(0, "User hangup", nil); e.Code != 9999 {
		t.Errorf("reason only = %v", e)
	}
	if e := ReasonError(2025, "", nil); e.Text != "Originator cancel" {
		t.Errorf("code only = %v", e)
	}
	if CodeName(4242) != "" || Err(4242).Text != "Unknown error" {
		t.Error("unknown code has a name")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestValidID(t *testing.T) {
	for _, ok := range []string{"a", "54c1b637-36fb-70c2-8080-28f07603cda8", "my-session_1", "x@y.z:5+1"} {
		if !ValidID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "-a", "a b", "a/b", "é", string(long), "a\x00"} {
		if ValidID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
