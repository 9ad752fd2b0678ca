package sip

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReferTo(t *testing.T) {
	ok := []struct {
		in         string
		uri, user  string
		host       string
		replacesID string
	}{
		{"<sip:carol@127.0.0.1:5070>", "sip:carol@127.0.0.1:5070", "carol", "127.0.0.1:5070", ""},
		{`"Carol" <sips:carol@example.com;transport=tls>;x=y`, "sips:carol@example.com;transport=tls", "carol", "example.com", ""},
		{"sip:100@pbx.example.com", "sip:100@pbx.example.com", "100", "pbx.example.com", ""},
		{"<sip:dave@[::1]:5060>", "sip:dave@[::1]:5060", "dave", "[::1]:5060", ""},
		{"<sip:sip-bob%40h@nk.local>", "sip:sip-bob%40h@nk.local", "sip-bob@h", "nk.local", ""},
		{"<sip:dave@h?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>", "sip:dave@h", "dave", "h", "abc@host"},
		{"<sip:dave@h?replaces=abc%3Bfrom-tag%3D2%3Bto-tag%3D1%3Bearly-only>", "sip:dave@h", "dave", "h", "abc"},
	}
	for _, c := range ok {
		got, err := ParseReferTo(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.URI != c.uri || got.User != c.user || got.Host != c.host {
			t.Errorf("%q: got %+v", c.in, got)
		}
		if c.replacesID != "" && (got.Replaces == nil || got.Replaces.CallID != c.replacesID || got.Replaces.ToTag != "1" || got.Replaces.FromTag != "2") {
			t.Errorf("%q: replaces %+v", c.in, got.Replaces)
		}
	}
	bad := []struct {
		in   string
		code int
		why  string
	}{
		{"<tel:+123456>", 416, "Scheme"},
		{"<http://evil/x>", 416, "Scheme"},
		{"<sip:dave@h?Via=SIP/2.0/UDP%20evil>", 400, "only Replaces"},
		{"<sip:dave@h?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Route=%3Csip:evil%3E>", 400, "only Replaces"},
		{"<sip:dave%0d%0aVia:%20x@h>", 400, "control"},
		{"<sip:dave@h>\r\nVia: x", 400, "control"},
		{"<sip:dave@h>, <sip:eve@h>", 400, "more than one"},
		{"<sip:dave@h", 400, "unclosed"},
		{"sip:dave@h?Replaces=x", 400, "in <>"},
		{"<sip:" + strings.Repeat("a", 2000) + "@h>", 400, "longer"},
		{"<sip:" + strings.Repeat("a", 200) + "@h>", 400, "too long"},
		{"<sip:dave@>", 400, "host"},
		{"<sip:dave@h:99999>", 400, "host"},
		{"<sip:dave@h%0a>", 400, "host"},
		{"<dave@h>", 400, "scheme"},
		{"<sip:dave@h?Replaces=a%3Bto-tag%3D1>", 400, "from-tag"},
		{"<sip:dave@h?Replaces=%3Bto-tag%3D1%3Bfrom-tag%3D2>", 400, "Call-ID"},
		{"<sip:dave@h?Replaces=a%0d%3Bto-tag%3D1%3Bfrom-tag%3D2>", 400, "control"},
		{"", 400, "scheme"},
	}
	for _, c := range bad {
		_, err := ParseReferTo(c.in)
		var re *ReferError
		if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Reason, c.why) {
			t.Errorf("%q: %v, want %d ...%s...", c.in, err, c.code, c.why)
		}
	}
}

// FuzzParseReferTo: no panic; what is accepted is a sip/sips URI without headers, control
// characters or blanks, and any Replaces is made of clean tokens.
func FuzzParseReferTo(f *testing.F) {
	for _, s := range []string{
		"<sip:carol@127.0.0.1:5070>", `"C" <sips:c@example.com;transport=tls>;p=1`, "sip:100@pbx",
		"<sip:d@[::1]:5060>", "<sip:d@h?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>",
		"<sip:d@h?Via=x>", "<tel:+1>", "<sip:d%0d%0a@h>", "<sip:d@h>,<sip:e@h>", "<sip:d@h", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReferTo(s)
		if err != nil {
			var re *ReferError
			if !errors.As(err, &re) || re.Code < 400 || re.Code > 499 {
				t.Fatalf("%q: error %v is not a 4xx ReferError", s, err)
			}
			return
		}
		low := strings.ToLower(r.URI)
		if !strings.HasPrefix(low, "sip:") && !strings.HasPrefix(low, "sips:") {
			t.Fatalf("%q: accepted URI %q", s, r.URI)
		}
		if strings.ContainsAny(r.URI, "?<>\" \t\r\n") || hasCtl(r.User) || strings.ContainsAny(r.Host, " \r\n;?") || r.Host == "" {
			t.Fatalf("%q: accepted %+v", s, r)
		}
		if rp := r.Replaces; rp != nil && (!token(rp.CallID, true) || !token(rp.ToTag, false) || !token(rp.FromTag, false)) {
			t.Fatalf("%q: accepted Replaces %+v", s, rp)
		}
	})
}

// FuzzParseReplaces: no panic; what is accepted has clean tokens (a Replaces header of an
// INVITE, or one escaped inside a Refer-To).
func FuzzParseReplaces(f *testing.F) {
	for _, s := range []string{"abc@host;to-tag=1;from-tag=2", "a;from-tag=2;to-tag=1;early-only", "a;to-tag=1", ";to-tag=1;from-tag=2",
		"a\r\nVia: x;to-tag=1;from-tag=2", "a;to-tag=;from-tag=2", strings.Repeat("x", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReplaces(s)
		if err != nil {
			var re *ReferError
			if !errors.As(err, &re) || re.Code != 400 {
				t.Fatalf("%q: error %v", s, err)
			}
			return
		}
		if !token(r.CallID, true) || !token(r.ToTag, false) || !token(r.FromTag, false) {
			t.Fatalf("%q: accepted %+v", s, r)
		}
	})
}
