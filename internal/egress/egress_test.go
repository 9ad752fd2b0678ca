package egress

import (
	"net"
	"testing"
)

func TestAddrAllowed(t *testing.T) {
	for _, c := range []struct {
		ip      string
		allowed []string
		want    bool
	}{
		{"203.0.113.7", nil, true},
		{"127.0.0.1", nil, false},
		{"127.0.0.1", []string{"localhost"}, true},
		{"127.0.0.1", []string{"127.0.0.1"}, true},
		{"127.0.0.2", []string{"127.0.0.1"}, false},
		{"::1", []string{"localhost"}, true},
		{"169.254.169.254", []string{"metadata.example"}, false},
		{"169.254.169.254", []string{"169.254.169.254"}, true},
		{"0.0.0.0", nil, false},
		{"224.0.0.1", nil, false},
		{"fe80::1", nil, false},
	} {
		if got := AddrAllowed(net.ParseIP(c.ip), c.allowed); got != c.want {
			t.Errorf("AddrAllowed(%s, %v) = %v, want %v", c.ip, c.allowed, got, c.want)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "127.9.9.9": true,
		"example.com": false, "10.0.0.1": false, "": false} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
