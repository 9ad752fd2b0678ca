package ratelimit

import (
	"testing"
	"time"
)

// A new bucket allows Burst requests at once, then Rate per second; it never holds more than
// Burst; a clock going backwards adds nothing.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := New(10, 3)
	if !b.Full(t0) {
		t.Fatal("a new bucket is not full")
	}
	for i := 0; i < 3; i++ {
		if !b.Allow(t0) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if b.Allow(t0) || b.Full(t0) {
		t.Fatal("a fourth request at once allowed, or the bucket full")
	}
	if !b.Allow(t0.Add(100 * time.Millisecond)) { // 1 token at 10/s
		t.Fatal("refill refused")
	}
	if b.Allow(t0.Add(100 * time.Millisecond)) {
		t.Fatal("more than the refill allowed")
	}
	if b.Allow(t0) { // backwards: nothing added
		t.Fatal("allowed after the clock went back")
	}
	later := t0.Add(time.Hour)
	n := 0
	for b.Allow(later) {
		n++
	}
	if n != 3 || !b.Full(later.Add(time.Second)) {
		t.Fatalf("after an hour %d tokens, want the burst 3", n)
	}
}
