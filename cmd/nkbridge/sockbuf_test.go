package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

// udpRcvbufs lists the UDP sockets of process pid with the receive buffer the
// kernel reports for each (ss's skmem rb: twice the size asked for on Linux),
// by local port.
func udpRcvbufs(t *testing.T, pid int) map[int]int {
	t.Helper()
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("no ss (iproute2)")
	}
	out, err := exec.Command("ss", "-uanmpH").Output()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`:(\d+)\s+\S+\s+users:\(\(\"[^"]*\",pid=` + strconv.Itoa(pid) + `,[^\n]*\n\s*skmem:\(r\d+,rb(\d+),`)
	got := map[int]int{}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		port, _ := strconv.Atoi(m[1])
		rb, _ := strconv.Atoi(m[2])
		got[port] = rb
	}
	return got
}

// The real binary sizes its UDP sockets as configured: sip.udp_read_buffer on
// the SIP socket (read back from outside with ss); media.udp_read_buffer
// above net.core.rmem_max is capped, with a warning naming the sysctl and the
// setting.
func TestBinarySocketBuffers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	fits, capped, ok := sockbuf.TestSizes()
	if !ok {
		t.Skip("net.core.rmem_max too small to tell sizes apart")
	}
	max, _ := sockbuf.RmemMax()
	sipPort := peers.FreePort(t)
	d := startBinary(t, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_SIP_UDP_READ_BUFFER=%d", fits), fmt.Sprintf("NKB_MEDIA_UDP_READ_BUFFER=%d", capped))
	bufs := udpRcvbufs(t, d.cmd.Process.Pid)
	if bufs[sipPort] != 2*fits {
		t.Fatalf("SIP UDP socket :%d rb = %d, want %d (2 x sip.udp_read_buffer); sockets %v", sipPort, bufs[sipPort], 2*fits, bufs)
	}
	// The WebRTC UDP ports (the engine's, and the SIP adapter engine's).
	media := 0
	for port, rb := range bufs {
		if port != sipPort {
			media++
			if rb != 2*max {
				t.Fatalf("UDP socket :%d rb = %d, want 2 x rmem_max %d; sockets %v", port, rb, 2*max, bufs)
			}
		}
	}
	if media == 0 {
		t.Fatalf("no WebRTC UDP socket: %v", bufs)
	}
	logs := d.logs.String()
	if !strings.Contains(logs, "net.core.rmem_max") || !strings.Contains(logs, `"setting":"media.udp_read_buffer"`) ||
		strings.Contains(logs, `"setting":"sip.udp_read_buffer"`) {
		t.Fatalf("want one cap warning, for media.udp_read_buffer; logs:\n%s", logs)
	}
}
