package vertogw

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nkbridge/nkbridge/signaling"
)

// FuzzRoute checks the destination mapping never panics and only produces well-formed routes:
// exactly one of extension or call, valid session types and room ids, callees the router's
// resolvers accept, errors of the documented kinds.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"echo", "ECHO", "park", "conf-room1", "conf-", "sip:alice@127.0.0.1:5080",
		"sip-bob@127.0.0.1", "sips:x@y", "verto:carol", "verto-dave@nkbridge", "bob", "bob@nkbridge",
		"", "service", " ", "a b", "sip:", "sip:<x>", "verto-", "@", "x@", "\x00", "conf-a/b", "9664"} {
		f.Add(s)
	}
	cfg := Config{}
	f.Fuzz(func(t *testing.T, dest string) {
		r, err := cfg.Route(dest)
		if err != nil {
			if r != (Route{}) {
				t.Fatalf("error %v with route %+v", err, r)
			}
			if c := routeCause(err); c.Code == 0 {
				t.Fatalf("no cause for %v", err)
			}
			return
		}
		if !utf8.ValidString(dest) || len(strings.TrimSpace(dest)) > maxDestination {
			t.Fatalf("%q accepted", dest)
		}
		switch {
		case r.IsExtension():
			if r.CallType != "" || r.Callee != "" || !signaling.KnownSessionType(r.SessionType) {
				t.Fatalf("%q: bad extension route %+v", dest, r)
			}
			if r.SessionType == signaling.TypeMCU && !signaling.ValidID(r.RoomID) {
				t.Fatalf("%q: bad room %+v", dest, r)
			}
		case r.CallType == "user" || r.CallType == "verto":
			if !signaling.ValidID(r.Callee) {
				t.Fatalf("%q: bad user callee %+v", dest, r)
			}
		case r.CallType == "sip":
			if !strings.HasPrefix(strings.ToLower(r.Callee), "sip") || strings.ContainsAny(r.Callee, " <>\"\r\n") {
				t.Fatalf("%q: bad SIP callee %+v", dest, r)
			}
			if r.FarKind() != "rtp" {
				t.Fatalf("SIP far kind %q", r.FarKind())
			}
		default:
			t.Fatalf("%q: route %+v", dest, r)
		}
	})
}

func TestRoute(t *testing.T) {
	cfg := Config{Extensions: map[string]string{"echo": "echo", "9196": "echo", "hold": "park"}, ConfPrefix: "room-"}
	for dest, want := range map[string]Route{
		"9196":                  {SessionType: "echo"},
		"HOLD":                  {SessionType: "park"},
		"room-abc":              {SessionType: "mcu", RoomID: "abc"},
		"conf-abc":              {CallType: "user", Callee: "conf-abc"},
		"sip:a@127.0.0.1":       {CallType: "sip", Callee: "sip:a@127.0.0.1"},
		"sip-a@127.0.0.1:5062":  {CallType: "sip", Callee: "sip:a@127.0.0.1:5062"},
		"verto:bob@example.com": {CallType: "verto", Callee: "bob"},
		"bob@example.com":       {CallType: "user", Callee: "bob"},
		" bob ":                 {CallType: "user", Callee: "bob"},
	} {
		got, err := cfg.Route(dest)
		if err != nil || got != want {
			t.Errorf("Route(%q) = %+v, %v; want %+v", dest, got, err, want)
		}
	}
	if (&Config{ConfPrefix: "-"}).confPrefix() != "" {
		t.Error("conf prefix - does not disable conferences")
	}
	for _, bad := range []Config{
		{Extensions: map[string]string{"x": "nonsense"}},
		{Extensions: map[string]string{"x": "proxy"}},
		{Extensions: map[string]string{"a b": "echo"}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}
