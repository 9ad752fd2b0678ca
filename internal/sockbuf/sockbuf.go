// Package sockbuf sizes the kernel receive buffer of UDP sockets (SO_RCVBUF)
// and reports what the kernel granted, so that a cap by net.core.rmem_max is
// logged instead of silently dropping datagrams in bursts.
package sockbuf

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Conn is the part of *net.UDPConn this package uses.
type Conn interface {
	SetReadBuffer(bytes int) error
	SyscallConn() (syscall.RawConn, error)
}

// Result is the outcome of SetRead.
type Result struct {
	Want int // bytes asked for
	// Got is the buffer the kernel granted, in the units of the request (on
	// Linux, half of what getsockopt(SO_RCVBUF) reports: the kernel doubles
	// the value for its bookkeeping); 0 when it cannot be read back.
	Got int
}

// Capped reports whether the kernel granted less than asked (net.core.rmem_max).
func (r Result) Capped() bool { return r.Got > 0 && r.Got < r.Want }

// SetRead asks for a receive buffer of want bytes on c (nothing when want <= 0)
// and reads back what the kernel granted.
func SetRead(c Conn, want int) (Result, error) {
	r := Result{Want: want}
	if want <= 0 {
		return r, nil
	}
	if err := c.SetReadBuffer(want); err != nil {
		return r, err
	}
	got, err := ReadSize(c)
	if err != nil {
		return r, err
	}
	r.Got = got
	return r, nil
}

// ReadSize returns c's receive buffer size in the units of SetReadBuffer
// (see Result.Got). On Linux this holds after SetReadBuffer; a socket never
// sized reads as half the kernel default (net.core.rmem_default).
func ReadSize(c Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = getRcvbuf(fd) }); err != nil {
		return 0, err
	}
	return n, serr
}

// Apply is SetRead with logging for the daemon: a failure or a cap by the
// kernel is a warning naming setting (the config key) and the sysctl to raise;
// what socket is describes the socket (e.g. "sip udp 127.0.0.1:5060").
func Apply(c Conn, want int, setting, what string, log *slog.Logger) Result {
	r, err := SetRead(c, want)
	switch {
	case err != nil:
		log.Warn("socket receive buffer not set", "socket", what, "setting", setting, "want", want, "err", err)
	case r.Capped():
		log.Warn("socket receive buffer capped by the kernel: raise the sysctl net.core.rmem_max (docs/OPERATIONS.md) or lower the setting",
			"socket", what, "setting", setting, "want", r.Want, "got", r.Got)
	}
	return r
}

// RmemMax returns the sysctl net.core.rmem_max (Linux; an error elsewhere):
// the largest receive buffer an unprivileged SetReadBuffer gets.
func RmemMax() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// TestSizes returns, for tests, a receive buffer size the kernel grants as
// asked (300000 bytes: within net.core.rmem_max, above the usual kernel
// default) and one it caps (twice rmem_max); ok is false when rmem_max is
// too small to tell them apart.
func TestSizes() (fits, capped int, ok bool) {
	max, err := RmemMax()
	if err != nil || max < 300000 {
		return 0, 0, false
	}
	return 300000, 2 * max, true
}

// Drops returns the kernel's count of datagrams dropped (receive queue full,
// among others) by the UDP sockets bound to local port port, summed over
// /proc/net/udp and /proc/net/udp6 (Linux; for benchmarks and operators'
// tools). An error when no such socket exists.
func Drops(port int) (int64, error) {
	want := fmt.Sprintf(":%04X", port)
	var sum int64
	found := false
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 13 || !strings.HasSuffix(fs[1], want) {
				continue
			}
			n, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: drops %q: %w", f, fs[len(fs)-1], err)
			}
			sum += n
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("no UDP socket on port %d", port)
	}
	return sum, nil
}
