package peers

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds, or fails the test after d
// saying what it waited for. Tests wait on conditions this way, never with a
// bare sleep.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Settled is a condition for WaitFor: it holds once count has stopped changing
// for five polls in a row (50 ms), e.g. the last echoed packets of a tone have
// arrived. The condition is stateful: make a new one for each wait.
func Settled(count func() int) func() bool {
	last, same := -1, 0
	return func() bool {
		n := count()
		if n != last {
			last, same = n, 0
			return false
		}
		same++
		return same >= 5
	}
}
