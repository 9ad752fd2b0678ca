package sipgw

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"github.com/nkbridge/nkbridge/internal/defaults"
	"github.com/nkbridge/nkbridge/signaling"
)

// RouteConfig says how the user part of an inbound Request-URI maps to a
// destination (docs/API.md §7). Zero values take the defaults: the sip: keys of
// internal/defaults (defaults.yaml).
type RouteConfig struct {
	// Extensions map a user part to a session type answered by nkbridge itself
	// (default sip.extensions: echo → echo, park → park).
	Extensions map[string]string
	// RoomPrefixes map a prefix to a session type whose room is the rest of the
	// user part (default sip.room_prefixes: "conf-" → mcu).
	RoomPrefixes map[string]string
	// SIPPrefixes turn the rest of the user part into a SIP URL call
	// (default sip.sip_prefixes: "sip:", "sip-").
	SIPPrefixes []string
	// VertoPrefixes turn the rest into a call to a Verto login (default sip.verto_prefixes).
	VertoPrefixes []string
	// NoDefaults leaves out the defaults of empty fields (an empty map means none).
	NoDefaults bool
}

func (c RouteConfig) withDefaults() RouteConfig {
	if c.NoDefaults {
		return c
	}
	if c.Extensions == nil {
		c.Extensions = defaults.StringMap("sip.extensions")
	}
	if c.RoomPrefixes == nil {
		c.RoomPrefixes = defaults.StringMap("sip.room_prefixes")
	}
	if c.SIPPrefixes == nil {
		c.SIPPrefixes = defaults.Strings("sip.sip_prefixes")
	}
	if c.VertoPrefixes == nil {
		c.VertoPrefixes = defaults.Strings("sip.verto_prefixes")
	}
	return c
}

// Route is where an inbound call goes: a session answered by nkbridge
// (SessionType set) or a call through the router (CallType set).
type Route struct {
	SessionType string // echo, park, mcu, ... (extensions)
	RoomID      string // for room prefixes
	Bot         string // for a prefix of type bot: the bot's name (streams.bots)
	CallType    string // user, sip, verto
	Callee      string
}

// Router maps Request-URI users to routes. It is immutable and safe for
// concurrent use.
type Router struct {
	ext   map[string]string
	rooms []prefixType // longest prefix first
	sip   []string
	verto []string
}

type prefixType struct{ prefix, typ string }

// maxUserLen bounds the user part we route (a SIP URL behind a prefix included).
const maxUserLen = 256

// NewRouter validates c and returns its router.
func NewRouter(c RouteConfig) (*Router, error) {
	c = c.withDefaults()
	r := &Router{ext: map[string]string{}}
	for k, v := range c.Extensions {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" || !signaling.KnownSessionType(v) {
			return nil, fmt.Errorf("sipgw: extension %q: session type %q is not one of the API's", k, v)
		}
		if v == signaling.TypeP2P || v == signaling.TypeProxy || v == signaling.TypeListen || v == signaling.TypeBridge {
			return nil, fmt.Errorf("sipgw: extension %q: session type %q cannot answer a call by itself", k, v)
		}
		r.ext[k] = v
	}
	for p, v := range c.RoomPrefixes {
		p = strings.ToLower(p)
		if p == "" || (v != signaling.TypeMCU && v != signaling.TypePublish && v != signaling.TypeBot) {
			return nil, fmt.Errorf("sipgw: room prefix %q: want a non-empty prefix of type mcu (or bot: the rest names a bot)", p)
		}
		r.rooms = append(r.rooms, prefixType{p, v})
	}
	sort.Slice(r.rooms, func(i, j int) bool {
		if len(r.rooms[i].prefix) != len(r.rooms[j].prefix) {
			return len(r.rooms[i].prefix) > len(r.rooms[j].prefix)
		}
		return r.rooms[i].prefix < r.rooms[j].prefix
	})
	for _, p := range c.SIPPrefixes {
		if p == "" {
			return nil, errors.New("sipgw: empty SIP prefix")
		}
		r.sip = append(r.sip, strings.ToLower(p))
	}
	for _, p := range c.VertoPrefixes {
		if p == "" {
			return nil, errors.New("sipgw: empty Verto prefix")
		}
		r.verto = append(r.verto, strings.ToLower(p))
	}
	return r, nil
}

// ErrBadDestination is returned by Route for a user part that cannot be routed
// (empty, too long, control characters, a malformed URL or room).
var ErrBadDestination = errors.New("sipgw: bad destination")

// Route maps the (unescaped) user part of a Request-URI to a route.
func (r *Router) Route(user string) (Route, error) {
	if user == "" || len(user) > maxUserLen {
		return Route{}, fmt.Errorf("%w: empty or longer than %d bytes", ErrBadDestination, maxUserLen)
	}
	if u, err := url.PathUnescape(user); err == nil {
		user = u
	}
	for _, c := range user {
		if unicode.IsControl(c) || unicode.IsSpace(c) || c == unicode.ReplacementChar {
			return Route{}, fmt.Errorf("%w: %q has blanks or control characters", ErrBadDestination, user)
		}
	}
	low := strings.ToLower(user)
	if t, ok := r.ext[low]; ok {
		return Route{SessionType: t}, nil
	}
	for _, p := range r.sip {
		if rest, ok := cutPrefixFold(user, p); ok {
			target, err := SIPTarget(rest)
			if err != nil {
				return Route{}, err
			}
			return Route{CallType: signaling.CallTypeSIP, Callee: target}, nil
		}
	}
	for _, p := range r.verto {
		if rest, ok := cutPrefixFold(user, p); ok {
			if rest == "" || strings.ContainsAny(rest, "<>\"") {
				return Route{}, fmt.Errorf("%w: empty or malformed Verto user", ErrBadDestination)
			}
			return Route{CallType: signaling.CallTypeVerto, Callee: rest}, nil
		}
	}
	for _, rp := range r.rooms {
		if rest, ok := cutPrefixFold(user, rp.prefix); ok {
			if !signaling.ValidID(rest) {
				return Route{}, fmt.Errorf("%w: room %q is not a valid id", ErrBadDestination, rest)
			}
			if rp.typ == signaling.TypeBot {
				return Route{SessionType: rp.typ, Bot: rest}, nil
			}
			return Route{SessionType: rp.typ, RoomID: rest}, nil
		}
	}
	if strings.ContainsAny(user, "<>\"@:;") {
		return Route{}, fmt.Errorf("%w: %q is not a user name", ErrBadDestination, user)
	}
	return Route{CallType: signaling.CallTypeUser, Callee: user}, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// SIPTarget normalizes a SIP URL given by a client or behind a sip: prefix:
// "bob@example.com" becomes "sip:bob@example.com"; "sip:" and "sips:" URLs are
// kept. It only checks the shape (a host, no blanks or angle brackets); whether
// the target may be called is sip.Server.Authorize's business.
func SIPTarget(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxUserLen {
		return "", fmt.Errorf("%w: empty or too long SIP URL", ErrBadDestination)
	}
	if strings.ContainsAny(s, "<>\" \t\r\n") {
		return "", fmt.Errorf("%w: %q is not a SIP URL", ErrBadDestination, s)
	}
	low := strings.ToLower(s)
	if !strings.HasPrefix(low, "sip:") && !strings.HasPrefix(low, "sips:") {
		s = "sip:" + s
	}
	_, rest, _ := strings.Cut(s, ":")
	hostPart := rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		hostPart = rest[i+1:]
		if i == 0 {
			return "", fmt.Errorf("%w: %q has an empty user", ErrBadDestination, s)
		}
	}
	host := hostPart
	if i := strings.IndexAny(host, ";?"); i >= 0 {
		host = host[:i]
	}
	if host == "" || strings.HasPrefix(host, ":") {
		return "", fmt.Errorf("%w: %q has no host", ErrBadDestination, s)
	}
	return s, nil
}

// isSIPURL reports whether a callee names a SIP URL explicitly.
func isSIPURL(s string) bool {
	low := strings.ToLower(s)
	return strings.HasPrefix(low, "sip:") || strings.HasPrefix(low, "sips:")
}

// isUserName reports whether a callee can be a plain user name (the "user"
// resolver's business).
func isUserName(s string) bool {
	return s != "" && len(s) <= maxUserLen && !strings.ContainsAny(s, "<>\"@:; \t\r\n")
}
