package media

import (
	"testing"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

// media.udp_read_buffer: the WebRTC UDP port's SO_RCVBUF is the configured
// size; the default (4 MiB) is granted up to net.core.rmem_max.
func TestEngineUDPReadBuffer(t *testing.T) {
	fits, _, ok := sockbuf.TestSizes()
	if !ok {
		t.Skip("net.core.rmem_max too small to tell sizes apart")
	}
	e := newTestEngine(t, func(c *Config) { c.UDPReadBuffer = fits })
	if n, err := sockbuf.ReadSize(e.udpConn); err != nil || n != fits {
		t.Fatalf("SO_RCVBUF = %d (%v), want %d", n, err, fits)
	}
	max, _ := sockbuf.RmemMax()
	e = newTestEngine(t, nil)
	if n, _ := sockbuf.ReadSize(e.udpConn); n != min(4<<20, max) {
		t.Fatalf("default SO_RCVBUF = %d, want min(4 MiB, rmem_max %d)", n, max)
	}
}
