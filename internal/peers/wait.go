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
