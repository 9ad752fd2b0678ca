package vertogw

import (
	"fmt"
	"strings"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/signaling"
)

// Config configures the routing of Verto calls. The zero value uses the defaults.
type Config struct {
	// Extensions maps destination numbers (case-insensitive) to session types; nil means
	// DefaultExtensions. A type whose backend is not configured is refused with
	// SERVICE_UNAVAILABLE when called.
	Extensions map[string]string
	// ConfPrefix is the prefix of conference extensions ("conf-<room>" → an mcu session in
	// that room); "" means "conf-", "-" disables conferences.
	ConfPrefix string
	// BotPrefix is the prefix of bot extensions ("bot-<name>" → a bot session of the
	// configured bot <name>: its audio streamed to an application); "" means
	// verto.bot_prefix, "-" disables them.
	BotPrefix string
	// MaxCallsPerUser caps the calls (inbound and outbound) one Verto user has in the router at
	// once (default verto.max_calls_per_user of internal/defaults).
	MaxCallsPerUser int
	// FarKind, if set, chooses the media kind ("webrtc" or "rtp") of the far side of a routed
	// call; an empty answer keeps the default (Route.FarKind: RTP for "sip" calls, WebRTC
	// otherwise). The daemon can use it to give a "user" call to a user whose only devices are
	// registered SIP phones a plain-RTP far side (one call has one far offer for all invitees).
	FarKind func(r Route) string
	// DetachGrace is how long a session's media keeps the WebRTC leg of a Verto client whose
	// page went, waiting for its re-attach; set it to the Verto server's DetachGrace (default
	// verto.detach_grace, as verto.Config), which ends such calls itself.
	DetachGrace time.Duration
}

func (c *Config) detachGrace() time.Duration {
	if c.DetachGrace <= 0 {
		return defaults.Duration("verto.detach_grace")
	}
	return c.DetachGrace
}

func (c *Config) farKind(r Route) string {
	if c.FarKind != nil {
		if k := c.FarKind(r); k == "webrtc" || k == "rtp" {
			return k
		}
	}
	return r.FarKind()
}

// DefaultExtensions are the extensions known without configuration.
func DefaultExtensions() map[string]string {
	return defaults.StringMap("verto.extensions")
}

func (c *Config) extensions() map[string]string {
	if c.Extensions == nil {
		return DefaultExtensions()
	}
	return c.Extensions
}

func (c *Config) confPrefix() string {
	switch c.ConfPrefix {
	case "":
		return defaults.String("verto.conf_prefix")
	case "-":
		return ""
	}
	return strings.ToLower(c.ConfPrefix)
}

func (c *Config) botPrefix() string {
	switch c.BotPrefix {
	case "":
		return defaults.String("verto.bot_prefix")
	case "-":
		return ""
	}
	return strings.ToLower(c.BotPrefix)
}

func (c *Config) maxCalls() int {
	if c.MaxCallsPerUser <= 0 {
		return defaults.Int("verto.max_calls_per_user")
	}
	return c.MaxCallsPerUser
}

// Validate checks the extensions name known session types.
func (c *Config) Validate() error {
	for name, typ := range c.extensions() {
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("verto extension %q: invalid name", name)
		}
		if !signaling.KnownSessionType(typ) || typ == signaling.TypeP2P || typ == signaling.TypeProxy {
			return fmt.Errorf("verto extension %q: session type %q cannot be an extension (want echo, park, mcu, ...)", name, typ)
		}
	}
	return nil
}
