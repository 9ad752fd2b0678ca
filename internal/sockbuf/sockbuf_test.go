package sockbuf

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
)

func rmemMax(t *testing.T) int {
	t.Helper()
	n, err := RmemMax()
	if err != nil {
		t.Skip("no net.core.rmem_max:", err)
	}
	return n
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Within net.core.rmem_max the kernel grants the size asked for; above it,
// rmem_max, and Apply warns naming the setting and the sysctl.
func TestSetRead(t *testing.T) {
	max := rmemMax(t)
	c := listen(t)
	def, err := ReadSize(c)
	if err != nil || def <= 0 {
		t.Fatalf("default size %d, %v", def, err)
	}
	want := def + 4096
	if want > max {
		t.Skipf("net.core.rmem_max %d is not above the default %d", max, def)
	}
	r, err := SetRead(c, want)
	if err != nil || r.Got != want || r.Capped() {
		t.Fatalf("SetRead(%d) = %+v, %v", want, r, err)
	}
	if n, _ := ReadSize(c); n != want {
		t.Fatalf("read back %d, want %d", n, want)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r = Apply(listen(t), 2*max, "x.udp_read_buffer", "test socket", log)
	if !r.Capped() || r.Got != max {
		t.Fatalf("Apply(2*rmem_max) = %+v, want got %d (rmem_max)", r, max)
	}
	for _, s := range []string{"level=WARN", "net.core.rmem_max", "setting=x.udp_read_buffer", "got=" + strconv.Itoa(max)} {
		if !strings.Contains(logs.String(), s) {
			t.Fatalf("log lacks %q: %s", s, logs.String())
		}
	}
	logs.Reset()
	if r := Apply(listen(t), want, "x", "y", log); r.Capped() || logs.Len() != 0 {
		t.Fatalf("within the cap: %+v, logged %q", r, logs.String())
	}
	if r := Apply(listen(t), 0, "x", "y", log); r.Got != 0 || logs.Len() != 0 {
		t.Fatalf("0 = kernel default: %+v, logged %q", r, logs.String())
	}
}

// Drops counts what the kernel dropped on a socket whose queue is full.
func TestDrops(t *testing.T) {
	c := listen(t)
	port := c.LocalAddr().(*net.UDPAddr).Port
	if n, err := Drops(port); err != nil || n != 0 {
		t.Fatalf("Drops of a new socket = %d, %v", n, err)
	}
	if err := c.SetReadBuffer(4096); err != nil { // the kernel's minimum: a few datagrams
		t.Fatal(err)
	}
	s, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 200 { // nobody reads c
		if _, err := s.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := Drops(port); err != nil || n == 0 {
		t.Fatalf("Drops after 200 unread datagrams = %d, %v", n, err)
	}
	c.Close()
	if _, err := Drops(port); err == nil {
		t.Fatal("Drops of a closed socket: no error")
	}
}
