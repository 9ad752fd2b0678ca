package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/web"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := cl.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, p := range []string{"/", "/demo"} {
		if r, _ := get(p); r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/demo/" {
			t.Errorf("GET %s = %d %q", p, r.StatusCode, r.Header.Get("Location"))
		}
	}
	files := map[string][2]string{
		"/demo/":              {"text/html", `<script type="module" src="demo.js">`},
		"/demo/nkbridge.js":   {"javascript", "export class NkbClient"},
		"/demo/demo.js":       {"javascript", `from "./nkbridge.js"`},
		"/demo/demo.css":      {"text/css", ".keypad"},
		"/demo/room.html":     {"text/html", `<script type="module" src="room.js">`},
		"/demo/room.js":       {"javascript", `from "./pages.js"`},
		"/demo/agent.html":    {"text/html", `<script type="module" src="agent.js">`},
		"/demo/agent.js":      {"javascript", `from "./pages.js"`},
		"/demo/operator.html": {"text/html", `<script type="module" src="operator.js">`},
		"/demo/operator.js":   {"javascript", `from "./pages.js"`},
		"/demo/pages.js":      {"javascript", `from "./nkbridge.js"`},
	}
	for p, want := range files {
		r, body := get(p)
		if r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), want[0]) || !strings.Contains(body, want[1]) {
			t.Errorf("GET %s = %d %q, body has %q: %v", p, r.StatusCode, r.Header.Get("Content-Type"), want[1], strings.Contains(body, want[1]))
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", p)
		}
	}
	for _, p := range []string{"/demo/nope.js", "/etc/passwd", "/demo/../web.go", "/other"} {
		if r, _ := get(p); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, r.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/demo/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d", resp.StatusCode)
	}
}
