package sipgw

import (
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
)

// FuzzRoute: any Request-URI user maps to exactly one well-formed route, or
// to ErrBadDestination; nothing panics.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"echo", "ECHO", "park", "conf-room1", "conf-", "conf-bad room", "alice",
		"sip:bob@example.com", "sip-bob%40127.0.0.1%3A5070", "sip-", "sip:", "verto:carol", "verto-",
		"a@b", "%00", "%zz", "sip-sips:x@y;transport=tcp", "sip-<x>@y", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	r, err := NewRouter(RouteConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, user string) {
		rt, err := r.Route(user)
		if err != nil {
			if rt != (Route{}) {
				t.Fatalf("error with a route: %+v", rt)
			}
			return
		}
		if (rt.SessionType == "") == (rt.CallType == "") {
			t.Fatalf("route %+v: want a session type or a call type", rt)
		}
		switch rt.CallType {
		case "":
			if !signaling.KnownSessionType(rt.SessionType) || (rt.RoomID != "" && !signaling.ValidID(rt.RoomID)) {
				t.Fatalf("bad session route %+v", rt)
			}
		case "sip":
			if !isSIPURL(rt.Callee) || strings.ContainsAny(rt.Callee, "<>\" \r\n") {
				t.Fatalf("bad SIP callee %q", rt.Callee)
			}
			if again, err := SIPTarget(rt.Callee); err != nil || again != rt.Callee {
				t.Fatalf("SIPTarget(%q) = %q, %v: not stable", rt.Callee, again, err)
			}
		case "user":
			if !isUserName(rt.Callee) {
				t.Fatalf("bad user callee %q", rt.Callee)
			}
		case "verto":
			if rt.Callee == "" {
				t.Fatal("empty verto callee")
			}
		default:
			t.Fatalf("unknown call type %q", rt.CallType)
		}
		if len(rt.Callee) > 2*maxUserLen {
			t.Fatalf("callee of %d bytes", len(rt.Callee))
		}
	})
}

// FuzzSIPStatus: whatever error text a call ends with, the caller gets a
// valid SIP final status.
func FuzzSIPStatus(f *testing.F) {
	for _, s := range []string{"486 Busy Here", "603 Decline", "200 OK", "999 x", "48", "", "404 "} {
		f.Add(signaling.CodeCallRejected, s)
	}
	f.Add(signaling.CodeNoAnswer, "No answer")
	f.Fuzz(func(t *testing.T, code int, text string) {
		c, reason := sipStatus(&signaling.Error{Code: code, Text: text})
		if c < 300 || c > 699 {
			t.Fatalf("sipStatus(%d, %q) = %d", code, text, c)
		}
		if strings.ContainsAny(reason, "\r\n\x00") {
			t.Fatalf("reason %q", reason)
		}
	})
}
