package signaling

import (
	"testing"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Zero Options take the values of defaults.yaml's sessions: and calls: sections.
func TestZeroOptionsTakeDefaultsYAML(t *testing.T) {
	c := New(Options{})
	for key, got := range map[string]any{
		"sessions.wait_timeout": c.opts.WaitTimeout, "sessions.ready_timeout": c.opts.ReadyTimeout,
		"calls.ring_time": c.opts.RingTime, "calls.max_ring_time": c.opts.MaxRingTime,
	} {
		if want := defaults.Of(key, got); got != want {
			t.Errorf("%s: %v, defaults.yaml says %v", key, got, want)
		}
	}
}
