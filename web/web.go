// Package web holds nkbridge's browser side, embedded in the binary: the
// ES-module JavaScript client of the control API (static/nkbridge.js, usable
// on its own) and the demo pages built on it: index.html (demo.js: log in,
// echo, calls, DTMF), room.html (conference room: sfu video grid, mcu audio,
// participants, talking, mute), agent.html (agent console for calls from SIP
// trunks and phones) and operator.html (an admin's live view of sessions,
// calls, rooms and SIP registrations), sharing pages.js and demo.css.
// Handler serves them under /demo/ on the API port; no build step.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Files returns the embedded files (the pages, their scripts, demo.css, nkbridge.js and its
// TypeScript declarations nkbridge.d.ts and npm package.json).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Prefix is where Handler serves the page.
const Prefix = "/demo/"

// Handler serves the demo page and the client library at /demo/ and
// redirects "/" there. Only GET and HEAD are answered.
func Handler() http.Handler {
	files := http.StripPrefix(Prefix, http.FileServerFS(Files()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch {
		case r.URL.Path == "/" || r.URL.Path == strings.TrimSuffix(Prefix, "/"):
			http.Redirect(w, r, Prefix, http.StatusFound)
		case strings.HasPrefix(r.URL.Path, Prefix):
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
