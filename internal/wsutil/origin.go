// Package wsutil holds small pieces the project's WebSocket servers (the control API and
// Verto) share.
package wsutil

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
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

// LoopbackHost reports whether the request's Host header names this machine
// by a loopback address or "localhost" (with any port). A server that
// accepts anonymous logins (no users, loopback only) must refuse other Host
// names: a web page on a domain that resolves to 127.0.0.1 (DNS rebinding)
// is same-origin to itself, so the Origin check alone lets it in.
func LoopbackHost(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckOrigins refuses allowed origins "*" when logins are anonymous (no
// users): any web page could then drive the server. setting names the
// configuration key in the error.
func CheckOrigins(setting string, allowed []string, anonymous bool) error {
	if anonymous && slices.Contains(allowed, "*") {
		return fmt.Errorf("%s: \"*\" (any web page) is refused while no users are configured: list the origins, or configure users", setting)
	}
	return nil
}
