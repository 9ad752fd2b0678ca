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
	"time"

	"github.com/gorilla/websocket"
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

// RefuseOrigin answers a WebSocket upgrade from a browser Origin that is not allowed so that
// the page can tell why: a browser cannot read the body of a refused handshake, so the
// handshake completes (echoing hdr, e.g. a subprotocol) and the connection is closed at once
// with 1008 and a reason naming setting, the configuration key to change. Nothing is read
// from the connection: the page can do nothing with it. A request that is not a valid
// upgrade gets the upgrader's HTTP error.
func RefuseOrigin(w http.ResponseWriter, r *http.Request, setting string, hdr http.Header) {
	up := websocket.Upgrader{HandshakeTimeout: 5 * time.Second, CheckOrigin: func(*http.Request) bool { return true }}
	ws, err := up.Upgrade(w, r, hdr)
	if err != nil {
		return
	}
	msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, OriginRefusal(r.Header.Get("Origin"), setting))
	_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = ws.Close()
}

// OriginRefusal is the close reason of RefuseOrigin: at most 123 bytes (a WebSocket close
// reason's limit), the origin shortened to fit.
func OriginRefusal(origin, setting string) string {
	const limit = 123
	format := "Origin %s not allowed: add it to " + setting
	room := limit - len(fmt.Sprintf(format, ""))
	if len(origin) > room {
		origin = strings.ToValidUTF8(origin[:max(0, room-3)], "") + "..."
	}
	return fmt.Sprintf(format, origin)
}
