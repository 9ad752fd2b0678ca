package sip

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

// udpConn returns the server's UDP listener socket.
func (s *Server) udpConn(t *testing.T) *net.UDPConn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.closers {
		if uc, ok := c.(*net.UDPConn); ok {
			return uc
		}
	}
	t.Fatal("no UDP listener")
	return nil
}

// sip.udp_read_buffer: the UDP listener's SO_RCVBUF is the configured size;
// above net.core.rmem_max the kernel caps it and a warning names the sysctl.
func TestUDPReadBuffer(t *testing.T) {
	fits, capped, ok := sockbuf.TestSizes()
	if !ok {
		t.Skip("net.core.rmem_max too small to tell sizes apart")
	}
	cfg := testConfig()
	cfg.UDPReadBuffer = fits
	s := startServer(t, cfg, nil)
	if n, err := sockbuf.ReadSize(s.udpConn(t)); err != nil || n != fits {
		t.Fatalf("SO_RCVBUF = %d (%v), want %d", n, err, fits)
	}

	logs := &logBuffer{}
	cfg = testConfig()
	cfg.UDPReadBuffer = capped
	s = startServerWith(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	max, _ := sockbuf.RmemMax()
	if n, _ := sockbuf.ReadSize(s.udpConn(t)); n != max {
		t.Fatalf("SO_RCVBUF = %d, want rmem_max %d", n, max)
	}
	for _, w := range []string{"net.core.rmem_max", "setting=sip.udp_read_buffer", "want=" + strconv.Itoa(capped)} {
		if !strings.Contains(logs.String(), w) {
			t.Fatalf("log lacks %q:\n%s", w, logs.String())
		}
	}
}
