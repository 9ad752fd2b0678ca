package vertogw

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nkbridge/nkbridge/signaling"
)

// Route is where a destination_number leads.
type Route struct {
	// SessionType is set for extensions: the session the caller is put into (echo, park, mcu).
	SessionType string
	RoomID      string // for conference extensions (mcu)
	Bot         string // for bot extensions: the bot's name (streams.bots)
	// CallType and Callee are set for calls through the router ("user", "sip", "verto").
	CallType string
	Callee   string
}

// IsExtension reports whether the route ends in a session of its own rather than a call.
func (r Route) IsExtension() bool { return r.SessionType != "" }

// FarKind is the media kind the far side of a routed call speaks: plain RTP for SIP targets,
// WebRTC otherwise.
func (r Route) FarKind() string {
	if r.CallType == signaling.CallTypeSIP {
		return "rtp"
	}
	return "webrtc"
}

// Errors of Config.Route; the Gateway reports them to the client as verto causes.
var (
	ErrNoDestination = errors.New("vertogw: no destination number")
	ErrBadNumber     = errors.New("vertogw: invalid destination number")
)

// maxDestination bounds a destination_number.
const maxDestination = 256

// Route maps a verto.invite destination_number to an extension or a call target, with the
// rules of docs/API.md §7: configured extensions first, then the conference prefix, then
// "sip:"/"sip-" (SIP URI), "verto:"/"verto-" (a Verto user), and anything else is a user.
func (c *Config) Route(dest string) (Route, error) {
	dest = strings.TrimSpace(dest)
	if dest == "" || dest == "service" {
		return Route{}, ErrNoDestination
	}
	if len(dest) > maxDestination {
		return Route{}, fmt.Errorf("%w: longer than %d bytes", ErrBadNumber, maxDestination)
	}
	for _, r := range dest {
		if r <= ' ' || r >= 0x7f {
			return Route{}, fmt.Errorf("%w: %q has spaces, control or non-ASCII characters", ErrBadNumber, dest)
		}
	}
	if typ, ok := c.extension(dest); ok {
		return Route{SessionType: typ}, nil
	}
	lower := strings.ToLower(dest)
	if p := c.confPrefix(); p != "" && strings.HasPrefix(lower, p) {
		room := dest[len(p):]
		if !signaling.ValidID(room) {
			return Route{}, fmt.Errorf("%w: conference room %q", ErrBadNumber, room)
		}
		return Route{SessionType: signaling.TypeMCU, RoomID: room}, nil
	}
	if p := c.botPrefix(); p != "" && strings.HasPrefix(lower, p) {
		bot := dest[len(p):]
		if !signaling.ValidID(bot) {
			return Route{}, fmt.Errorf("%w: bot %q", ErrBadNumber, bot)
		}
		return Route{SessionType: signaling.TypeBot, Bot: bot}, nil
	}
	switch {
	case strings.HasPrefix(lower, "sip:"), strings.HasPrefix(lower, "sips:"):
		rest := dest[strings.IndexByte(dest, ':')+1:]
		if !validSIPTarget(rest) {
			return Route{}, fmt.Errorf("%w: SIP URI %q", ErrBadNumber, dest)
		}
		return Route{CallType: signaling.CallTypeSIP, Callee: dest}, nil
	case strings.HasPrefix(lower, "sip-"):
		rest := dest[4:]
		if !validSIPTarget(rest) {
			return Route{}, fmt.Errorf("%w: SIP target %q", ErrBadNumber, rest)
		}
		return Route{CallType: signaling.CallTypeSIP, Callee: "sip:" + rest}, nil
	case strings.HasPrefix(lower, "verto:"), strings.HasPrefix(lower, "verto-"):
		user := userPart(dest[6:])
		if !validUser(user) {
			return Route{}, fmt.Errorf("%w: Verto user %q", ErrBadNumber, dest[6:])
		}
		return Route{CallType: signaling.CallTypeVerto, Callee: user}, nil
	}
	user := userPart(dest)
	if !validUser(user) {
		return Route{}, fmt.Errorf("%w: user %q", ErrBadNumber, dest)
	}
	return Route{CallType: signaling.CallTypeUser, Callee: user}, nil
}

func (c *Config) extension(dest string) (string, bool) {
	for name, typ := range c.extensions() {
		if strings.EqualFold(name, dest) {
			return typ, true
		}
	}
	return "", false
}

// userPart chops "@domain" (as Verto logins are chopped).
func userPart(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return s
}

// validUser accepts the names the control API accepts as ids.
func validUser(s string) bool { return signaling.ValidID(s) }

// validSIPTarget checks "user@host[:port][;params]" or "host[:port]" loosely: something before
// and after any '@', no brackets or quotes that could break a header.
func validSIPTarget(s string) bool {
	if s == "" || strings.ContainsAny(s, "<>\"'\\,") {
		return false
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		return i > 0 && i < len(s)-1 && strings.Count(s, "@") == 1
	}
	return true
}
