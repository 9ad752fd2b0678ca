package wsutil

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOriginAllowed(t *testing.T) {
	cases := []struct {
		name    string
		host    string
		origin  string
		allowed []string
		want    bool
	}{
		{"no origin", "127.0.0.1:9010", "", nil, true},
		{"same origin", "127.0.0.1:9010", "http://127.0.0.1:9010", nil, true},
		{"same origin, other case", "Example.test:443", "https://example.TEST:443", nil, true},
		{"foreign origin refused", "127.0.0.1:9010", "http://127.0.0.1:8000", nil, false},
		{"foreign origin listed", "127.0.0.1:9010", "http://127.0.0.1:8000", []string{"HTTP://127.0.0.1:8000"}, true},
		{"other origin listed only", "127.0.0.1:9010", "http://127.0.0.1:8000", []string{"http://127.0.0.1:8001"}, false},
		{"wildcard", "127.0.0.1:9010", "http://127.0.0.1:8000", []string{"*"}, true},
		{"unparsable origin", "127.0.0.1:9010", "http://%zz", nil, false},
		{"null origin", "127.0.0.1:9010", "null", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tc.host+"/", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if got := OriginAllowed(r, tc.allowed); got != tc.want {
				t.Fatalf("OriginAllowed(host %q, origin %q, allowed %q) = %v, want %v", tc.host, tc.origin, tc.allowed, got, tc.want)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:9010": true, "localhost": true, "LocalHost:80": true, "[::1]:9010": true, "127.8.0.1": true,
		"rebind.example:9010": false, "10.0.0.1:9010": false, "": false, "localhost.attacker.example": false, "[::ffff:7f00:1]": true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		if got := LoopbackHost(r); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzLoopbackHost: any Host header is judged without panicking, and only
// names that parse to a loopback address (or localhost) pass.
func FuzzLoopbackHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9010", "localhost", "[::1]:1", "a.example:80", "[", "]:", "127.0.0.1.nip.io", "0x7f.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		if !LoopbackHost(r) {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.Trim(h, "[]")
		if ip := net.ParseIP(h); !strings.EqualFold(h, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Fatalf("%q accepted as loopback", host)
		}
	})
}

// A refusal's close reason names the setting and fits a close frame (123 bytes) whatever the
// origin's length, staying valid UTF-8.
func TestOriginRefusal(t *testing.T) {
	for _, o := range []string{"http://a.example", strings.Repeat("é", 200), "http://" + strings.Repeat("x", 500)} {
		r := OriginRefusal(o, "verto.allowed_origins")
		if len(r) > 123 || !strings.HasSuffix(r, "add it to verto.allowed_origins") || !utf8.ValidString(r) {
			t.Errorf("OriginRefusal(%.20q) = %q (%d bytes)", o, r, len(r))
		}
	}
	if r := OriginRefusal("http://a.example", "api.allowed_origins"); r != "Origin http://a.example not allowed: add it to api.allowed_origins" {
		t.Errorf("short origin: %q", r)
	}
}
