// Package egress holds the checks nkbridge applies to the outbound connections it makes on
// a user's or an operator's behalf (CDR webhooks, live audio streams): which addresses a dial
// to an allowed host may reach, so that a listed name cannot lead back to this machine or its
// link unless that address is listed itself.
package egress

import "net"

// AddrAllowed reports whether a connection to ip may be made: an address of this machine or
// its link (loopback, link-local, unspecified, multicast) only when allowed lists it (or
// "localhost", for loopback); any other address always.
func AddrAllowed(ip net.IP, allowed []string) bool {
	if !(ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast()) {
		return true
	}
	for _, a := range allowed {
		if a == "localhost" && ip.IsLoopback() {
			return true
		}
		if lip := net.ParseIP(a); lip != nil && lip.Equal(ip) {
			return true
		}
	}
	return false
}

// LoopbackHost reports whether a URL's host is "localhost" or a loopback address: the only
// hosts plain (unencrypted) ws:// and http:// may go to.
func LoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
