package plainrtp

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

// SetReadBuffer: RTP sockets opened afterwards get that SO_RCVBUF; a cap by
// net.core.rmem_max is logged once, naming media.rtp_read_buffer.
func TestPoolReadBuffer(t *testing.T) {
	fits, capped, ok := sockbuf.TestSizes()
	if !ok {
		t.Skip("net.core.rmem_max too small to tell sizes apart")
	}
	logs := &bytes.Buffer{} // Open logs on the caller's goroutine
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), 41900, 41910, 0, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	open := func() int {
		t.Helper()
		ep, err := pool.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ep.Close()
		n, err := sockbuf.ReadSize(ep.rtpConn)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pool.SetReadBuffer(fits)
	if n := open(); n != fits {
		t.Fatalf("RTP SO_RCVBUF = %d, want %d", n, fits)
	}
	pool.SetReadBuffer(capped)
	max, _ := sockbuf.RmemMax()
	for range 2 {
		if n := open(); n != max {
			t.Fatalf("RTP SO_RCVBUF = %d, want rmem_max %d", n, max)
		}
	}
	if c := strings.Count(logs.String(), "net.core.rmem_max"); c != 1 || !strings.Contains(logs.String(), "setting=media.rtp_read_buffer") {
		t.Fatalf("want one warning naming the setting, got %d:\n%s", c, logs.String())
	}
}
