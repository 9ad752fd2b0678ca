package wsutil

import (
	"net/http/httptest"
	"testing"
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
