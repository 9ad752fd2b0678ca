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
	if !Poll(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Poll polls cond every 10 ms until it holds (true) or d has passed
// (false): WaitFor for a test that says more on failure (the logs of a
// process) or goes on either way.
func Poll(d time.Duration, cond func() bool) bool {
	return PollEvery(d, 10*time.Millisecond, cond)
}

// PollEvery is Poll with another interval, for a condition that is costly
// to test (a scrape, a query to another process).
func PollEvery(d, every time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(every) // the poll interval
	}
	return true
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
