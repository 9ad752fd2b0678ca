// Command sipburst measures what the SIP UDP socket's receive buffer
// (sip.udp_read_buffer) does to datagram drops: it runs the real nkbridge
// binary once per buffer size, fires bursts of SIP OPTIONS at its UDP socket
// from one loopback socket as fast as the sender can, counts the answers and
// reads the socket's kernel drop counter (/proc/net/udp, last column) before
// and after each burst. It prints one table row per buffer size and burst.
// Not part of the test suite; Linux only; all traffic stays on 127.0.0.1.
//
//	go run ./bench/sipburst -bursts 2000,10000,30000 -buffers 0,4194304
//
// The per-source request limit (sip.request_rate) is raised for the run: a
// burst from one address would otherwise be mostly answered 503, which is
// cheaper than the OPTIONS handling a trunk's traffic gets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nkbridge/nkbridge/internal/sockbuf"
)

func main() {
	bin := flag.String("nkbridge", "", "nkbridge binary (default: go build ./cmd/nkbridge into a temp dir)")
	bursts := flag.String("bursts", "2000,10000,30000", "OPTIONS per burst, comma-separated")
	buffers := flag.String("buffers", "0,4194304", "sip.udp_read_buffer values to compare (0 = kernel default)")
	wait := flag.Duration("wait", 3*time.Second, "after a burst, wait this long without answers before counting")
	verbose := flag.Bool("v", false, "show nkbridge's log")
	flag.Parse()
	if err := run(*bin, ints(*bursts), ints(*buffers), *wait, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "sipburst:", err)
		os.Exit(1)
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "sipburst: bad number %q\n", f)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

func run(bin string, bursts, buffers []int, wait time.Duration, verbose bool) error {
	if bin == "" {
		dir, err := os.MkdirTemp("", "sipburst")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "nkbridge")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/nkbridge").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	rmemMax, _ := sockbuf.RmemMax()
	fmt.Printf("net.core.rmem_max = %d; %d CPUs\n\n", rmemMax, numCPU())
	fmt.Println("| sip.udp_read_buffer | socket rb (ss) | burst | sent in (ms) | answered | server socket drops | answers dropped at sender |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, buf := range buffers {
		if err := runDaemon(bin, buf, bursts, wait, verbose); err != nil {
			return err
		}
	}
	return nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + 1
}

// runDaemon starts nkbridge with the given buffer and runs every burst at it.
func runDaemon(bin string, buf int, bursts []int, wait time.Duration, verbose bool) error {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.LocalAddr().(*net.UDPAddr).Port
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-log-format", "json")
	cmd.Env = append(os.Environ(), "NKB_LOG_LEVEL=warn", "NKB_MEDIA_ENABLED=false", "NKB_VERTO_LISTEN=",
		"NKB_API_LISTEN=127.0.0.1:0", "NKB_METRICS_LISTEN=", "NKB_SIP_ENABLED=true",
		fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", port), fmt.Sprintf("NKB_SIP_UDP_READ_BUFFER=%d", buf),
		"NKB_SIP_REQUEST_RATE=1000000")
	if verbose {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	target := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadBuffer(64 << 20) // the sender's own socket: as much as the kernel gives
	var answered atomic.Int64
	go func() {
		b := make([]byte, 65536)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			if n > 12 && string(b[:8]) == "SIP/2.0 " {
				answered.Add(1)
			}
		}
	}()
	// Wait until the daemon answers.
	up := time.Now().Add(20 * time.Second)
	for answered.Load() == 0 {
		if time.Now().After(up) {
			return errors.New("nkbridge does not answer OPTIONS")
		}
		if _, err := c.WriteToUDP(options(c, port, "probe", int(time.Now().UnixNano())), target); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitQuiet(&answered, wait)
	granted := grantedRcvbuf(cmd.Process.Pid, port)
	for i, n := range bursts {
		d0, _ := sockbuf.Drops(port)
		s0, _ := sockbuf.Drops(c.LocalAddr().(*net.UDPAddr).Port)
		a0 := answered.Load()
		start := time.Now()
		for k := range n {
			if _, err := c.WriteToUDP(options(c, port, fmt.Sprintf("b%d", i), k), target); err != nil {
				return err
			}
		}
		sent := time.Since(start)
		waitQuiet(&answered, wait)
		d1, err := sockbuf.Drops(port)
		if err != nil {
			return err
		}
		s1, _ := sockbuf.Drops(c.LocalAddr().(*net.UDPAddr).Port)
		label := strconv.Itoa(buf)
		if buf == 0 {
			label = "0 (kernel default)"
		}
		fmt.Printf("| %s | %s | %d | %d | %d | %d | %d |\n", label, granted, n, sent.Milliseconds(), answered.Load()-a0, d1-d0, s1-s0)
	}
	return nil
}

// waitQuiet returns once the counter has not moved for quiet (at most 60 s).
func waitQuiet(n *atomic.Int64, quiet time.Duration) {
	last, since := n.Load(), time.Now()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if v := n.Load(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}

func options(c *net.UDPConn, port int, tag string, k int) []byte {
	local := c.LocalAddr().String()
	return []byte(fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:bench@127.0.0.1>;tag=%s%d\r\n"+
		"To: <sip:127.0.0.1:%d>\r\n"+
		"Call-ID: %s-%d@sipburst\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Contact: <sip:bench@%s>\r\n"+
		"Accept: application/sdp\r\n"+
		"Content-Length: 0\r\n\r\n", port, local, tag, k, tag, k, port, tag, k, local))
}

// grantedRcvbuf returns the receive buffer limit of the daemon's socket as ss
// shows it (rb, in the kernel's accounting bytes: twice the size asked for
// with SetReadBuffer; net.core.rmem_default when never set).
func grantedRcvbuf(pid, port int) string {
	out, err := exec.Command("ss", "-uanmpH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		return "?"
	}
	m := regexp.MustCompile(`pid=` + strconv.Itoa(pid) + `,[^\n]*\n\s*skmem:\(r\d+,rb(\d+),`).FindSubmatch(out)
	if m == nil {
		return "?"
	}
	rb, _ := strconv.Atoi(string(m[1]))
	return strconv.Itoa(rb)
}
