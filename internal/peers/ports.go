package peers

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Ports handed to child processes are picked at random below the kernel's ephemeral range
// (and above 20000, clear of well-known ports), then checked free. A port taken from the
// ephemeral range by binding :0 and releasing it can be handed to any other process that
// binds :0 before the child binds it (browsers, pion and other tests do, all the time).

// portRange returns [lo, hi) to pick from.
func portRange() (int, int) {
	lo, hi := 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if eph, err := strconv.Atoi(f[0]); err == nil {
				switch {
				case eph > lo+2000:
					hi = eph
				case eph > 12000:
					lo, hi = 10000, eph
				}
			}
		}
	}
	return lo, hi
}

func randomPort() int {
	lo, hi := portRange()
	return lo + rand.IntN(hi-lo)
}

func udpFree(port int) bool {
	c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func tcpFree(port int) bool {
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func findPort(t testing.TB, what string, free func(int) bool) int {
	t.Helper()
	for range 500 {
		if p := randomPort(); free(p) {
			return p
		}
	}
	t.Fatalf("peers: no free %s port on 127.0.0.1", what)
	return 0
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	return findPort(t, "UDP", udpFree)
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	return findPort(t, "TCP", tcpFree)
}

// FreePort returns a port on 127.0.0.1 that was free for both UDP and TCP a moment ago
// (SIP listens on both).
func FreePort(t testing.TB) int {
	t.Helper()
	return findPort(t, "UDP+TCP", func(p int) bool { return udpFree(p) && tcpFree(p) })
}

// FreeUDPRange returns the first of n consecutive UDP ports on 127.0.0.1 (the first one
// even, as RTP likes) that were all free a moment ago.
func FreeUDPRange(t testing.TB, n int) int {
	t.Helper()
	return findPort(t, "UDP range", func(base int) bool {
		if base%2 != 0 {
			return false
		}
		for p := base; p < base+n; p++ {
			if !udpFree(p) {
				return false
			}
		}
		return true
	})
}
