package sipgw

import (
	"errors"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
)

func TestRoute(t *testing.T) {
	r, err := NewRouter(RouteConfig{Extensions: map[string]string{"echo": "echo", "hold": "park"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   string
		want Route
	}{
		{"echo", Route{SessionType: "echo"}},
		{"ECHO", Route{SessionType: "echo"}},
		{"hold", Route{SessionType: "park"}},
		{"park", Route{CallType: "user", Callee: "park"}}, // not configured here
		{"conf-sales", Route{SessionType: "mcu", RoomID: "sales"}},
		{"alice", Route{CallType: "user", Callee: "alice"}},
		{"sip:bob@example.com", Route{CallType: "sip", Callee: "sip:bob@example.com"}},
		{"sip-bob%40203.0.113.5%3A5070", Route{CallType: "sip", Callee: "sip:bob@203.0.113.5:5070"}},
		{"SIP-sips:bob@example.com", Route{CallType: "sip", Callee: "sips:bob@example.com"}},
		{"verto:carol", Route{CallType: "verto", Callee: "carol"}},
		{"verto-carol", Route{CallType: "verto", Callee: "carol"}},
	} {
		got, err := r.Route(c.in)
		if err != nil || got != c.want {
			t.Errorf("Route(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "conf-", "conf-a/b", "sip-", "sip-@host", "sip-bob@", "verto-", "a b", "a%0Ab", "x@y", "<sip:x>"} {
		if got, err := r.Route(bad); !errors.Is(err, ErrBadDestination) {
			t.Errorf("Route(%q) = %+v, %v; want ErrBadDestination", bad, got, err)
		}
	}
	for _, cfg := range []RouteConfig{
		{Extensions: map[string]string{"x": "nonsense"}},
		{Extensions: map[string]string{"x": "proxy"}},
		{RoomPrefixes: map[string]string{"": "mcu"}},
		{SIPPrefixes: []string{""}},
	} {
		if _, err := NewRouter(cfg); err == nil {
			t.Errorf("NewRouter(%+v): no error", cfg)
		}
	}
}

func TestSIPStatusMapping(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want int
	}{
		{2021, "486 Busy Here", 486},
		{2021, "603 Decline", 603},
		{2021, "302 Moved", 486}, // no redirects without a Contact
		{2021, "Call rejected", 486},
		{2022, "No destination", 404},
		{2023, "No answer", 480},
		{1030, "x", 403},
		{2001, "x", 480},
		{2002, "x", 488},
		{1061, "x", 503},
		{9999, "x", 480},
	} {
		if got, _ := sipStatus(&signaling.Error{Code: c.code, Text: c.text}); got != c.want {
			t.Errorf("sipStatus(%d %q) = %d, want %d", c.code, c.text, got, c.want)
		}
	}
}
