package peers

import (
	"testing"
	"time"
)

// Settled holds only once the count stopped moving for five polls; a count
// that moves again starts over.
func TestSettled(t *testing.T) {
	seq := []int{0, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3}
	i := 0
	cond := Settled(func() int { n := seq[i]; i++; return n })
	var got []bool
	for range seq {
		got = append(got, cond())
	}
	want := []bool{false, false, false, false, false, false, false, false, false, false, false, false, true}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("poll %d (count %d): settled %v, want %v (all: %v)", k, seq[k], got[k], want[k], got)
		}
	}
	// Through WaitFor, a constant count settles.
	WaitFor(t, 5*time.Second, "a constant count to settle", Settled(func() int { return 7 }))
}
