package media

import (
	"net/netip"
	"testing"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// A Config with only the bind address takes the values of defaults.yaml's media: section.
func TestZeroConfigTakesDefaultsYAML(t *testing.T) {
	e, err := New(Config{BindIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.cfg
	for key, got := range map[string]any{
		"media.rtp_port_min": c.RTPPortMin, "media.rtp_port_max": c.RTPPortMax, "media.quarantine": c.Quarantine,
		"media.media_timeout": c.MediaTimeout, "media.ice_timeout": c.ICETimeout, "media.max_sessions": c.MaxSessions,
	} {
		if want := defaults.Of(key, got); got != want {
			t.Errorf("%s: %v, defaults.yaml says %v", key, got, want)
		}
	}
}
