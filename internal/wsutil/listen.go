package wsutil

import (
	"fmt"
	"net"
)

// CheckListen refuses to serve anonymous logins off loopback: with open set (no users
// configured), addr must be a loopback address or localhost. server names the listener in
// the error ("api", "verto").
func CheckListen(server, addr string, open bool) error {
	if !open {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s listen address %q: %w", server, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s listen address %q is not loopback and no users are configured: refusing anonymous %s logins from the network (configure users, or listen on 127.0.0.1)", server, addr, server)
	}
	return nil
}
