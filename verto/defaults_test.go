package verto

import (
	"testing"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// A zero Config takes the values of defaults.yaml's verto: section.
func TestZeroConfigTakesDefaultsYAML(t *testing.T) {
	c := Config{}.withDefaults()
	for key, got := range map[string]any{
		"verto.listen": c.Addr, "verto.max_frame_bytes": int(c.MaxFrameBytes),
		"verto.max_connections": c.MaxConnections, "verto.detach_grace": c.DetachGrace,
	} {
		if want := defaults.Of(key, got); got != want {
			t.Errorf("%s: %v, defaults.yaml says %v", key, got, want)
		}
	}
}
