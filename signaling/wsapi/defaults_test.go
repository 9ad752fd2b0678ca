package wsapi

import (
	"testing"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// A zero Config takes the values of defaults.yaml's api: section, the daemon's defaults.
func TestZeroConfigTakesDefaultsYAML(t *testing.T) {
	var c Config
	c.defaults()
	for key, got := range map[string]any{
		"api.listen": c.Listen, "api.max_frame_bytes": int(c.MaxFrameBytes), "api.ping_interval": c.PingInterval,
		"api.idle_timeout": c.IdleTimeout, "api.login_timeout": c.LoginTimeout, "api.request_timeout": c.RequestTimeout,
		"api.ack_timeout": c.AckTimeout, "api.max_connections": c.MaxConnections, "api.request_rate": c.RequestRate,
		"api.max_owned": c.MaxOwned,
	} {
		if want := defaults.Of(key, got); got != want {
			t.Errorf("%s: %v, defaults.yaml says %v", key, got, want)
		}
	}
}
