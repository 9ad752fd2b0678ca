package peers

import (
	"net"
	"testing"
)

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago (bind to :0, read
// the port, close). Another process may take it before it is used: keep the window short.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers.FreeUDPPort: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("peers.FreeTCPPort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort returns a port on 127.0.0.1 that was free for both UDP and TCP a moment ago
// (SIP listens on both).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("peers.FreePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatalf("peers.FreePort: no port free for both UDP and TCP")
	return 0
}

// FreeUDPRange returns the first of n consecutive UDP ports on 127.0.0.1 (the first one even,
// as RTP likes) that were all free a moment ago.
func FreeUDPRange(t testing.TB, n int) int {
	t.Helper()
	for range 100 {
		base := FreeUDPPort(t) &^ 1
		if base+n > 65535 || base < 1024 {
			continue
		}
		var held []net.PacketConn
		ok := true
		for p := base; p < base+n; p++ {
			c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", itoa(p)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("peers.FreeUDPRange: no %d consecutive free UDP ports", n)
	return 0
}
