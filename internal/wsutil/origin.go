// Package wsutil holds small pieces the project's WebSocket servers (the control API and
// Verto) share.
package wsutil

import (
	"net/http"
	"net/url"
	"strings"
)

// OriginAllowed reports whether a WebSocket upgrade request may go on: a request without an
// Origin header (not a browser), an origin listed in allowed ("*" allows any), compared without
// regard to case, or a same-origin request (the Origin's host equals the request's Host).
func OriginAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
