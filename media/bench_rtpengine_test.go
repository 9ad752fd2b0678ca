package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// The same RTP⇄RTP load as BenchmarkRTPPassthrough*, relayed by rtpengine in userspace mode
// (Debian rtpengine-daemon, table -1) and driven over its ng control protocol. They skip when
// rtpengine is not installed (apt-get install rtpengine-daemon).

// rtpEngine is a running rtpengine with an ng control socket.
type rtpEngine struct {
	ng   *net.UDPConn
	addr *net.UDPAddr
	pid  int
}

func startRTPEngine(b *testing.B, threads int) *rtpEngine {
	bin := peers.Need(b, "rtpengine")
	ngPort := peers.FreeUDPPort(b)
	base := peers.FreeUDPRange(b, 1000)
	cmd := exec.Command(bin, "--config-file=none", "--foreground", "--log-stderr", "--log-level=3",
		"--table=-1", "--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(ngPort),
		"--port-min="+strconv.Itoa(base), "--port-max="+strconv.Itoa(base+999),
		"--num-threads="+strconv.Itoa(threads), "--poller-per-thread")
	proc, err := peers.StartProcess(b, "rtpengine", cmd, nil)
	if err != nil {
		b.Fatal(err)
	}
	ng, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(b, err)
	b.Cleanup(func() { ng.Close() })
	r := &rtpEngine{ng: ng, addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ngPort}, pid: proc.Pid()}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if res, err := r.call(map[string]any{"command": "ping"}); err == nil && res["result"] == "pong" {
			return r
		}
		if time.Now().After(deadline) {
			b.Fatal("rtpengine does not answer ping")
		}
		time.Sleep(50 * time.Millisecond) // benchmark: poll interval waiting for rtpengine
	}
}

// call sends one ng command and returns the reply dictionary.
func (r *rtpEngine) call(cmd map[string]any) (map[string]any, error) {
	cookie := strconv.FormatUint(rand.Uint64(), 36)
	var buf bytes.Buffer
	buf.WriteString(cookie + " ")
	bencode(&buf, cmd)
	if _, err := r.ng.WriteToUDP(buf.Bytes(), r.addr); err != nil {
		return nil, err
	}
	in := make([]byte, 65536)
	_ = r.ng.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, err := r.ng.Read(in)
		if err != nil {
			return nil, err
		}
		msg := in[:n]
		if !bytes.HasPrefix(msg, []byte(cookie+" ")) {
			continue
		}
		v, _, err := bdecode(msg[len(cookie)+1:])
		if err != nil {
			return nil, err
		}
		d, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("ng reply is not a dictionary")
		}
		if d["result"] == "error" {
			return nil, fmt.Errorf("rtpengine: %v", d["error-reason"])
		}
		return d, nil
	}
}

func bencode(w *bytes.Buffer, v any) {
	switch v := v.(type) {
	case string:
		fmt.Fprintf(w, "%d:%s", len(v), v)
	case int:
		fmt.Fprintf(w, "i%de", v)
	case []string:
		w.WriteByte('l')
		for _, x := range v {
			bencode(w, x)
		}
		w.WriteByte('e')
	case map[string]any:
		w.WriteByte('d')
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			bencode(w, k)
			bencode(w, v[k])
		}
		w.WriteByte('e')
	default:
		panic(fmt.Sprintf("bencode %T", v))
	}
}

func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errors.New("bencode: short")
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errors.New("bencode: bad int")
		}
		n, err := strconv.Atoi(string(b[1:end]))
		return n, b[end+1:], err
	case c == 'l':
		var out []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			out, b = append(out, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated list")
		}
		return out, b[1:], nil
	case c == 'd':
		out := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, errors.New("bencode: non-string key")
			}
			v, rest2, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			out[ks], b = v, rest2
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated dict")
		}
		return out, b[1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errors.New("bencode: bad string")
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || colon+1+n > len(b) {
			return nil, nil, errors.New("bencode: bad string length")
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	}
	return nil, nil, fmt.Errorf("bencode: unexpected %q", b[0])
}

// newRTPEngineCall sets up one call through rtpengine (offer, answer) between two loopback peers.
func newRTPEngineCall(b *testing.B, r *rtpEngine, i int) *benchCall {
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(b, err)
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(b, err)
	callID := fmt.Sprintf("bench-%d-%d", i, rand.Uint32())
	caller := plainrtp.Offer(loopback, tx.LocalAddr().(*net.UDPAddr).Port, []plainrtp.Codec{plainrtp.PCMU}, 1)
	if _, err := r.call(map[string]any{"command": "offer", "call-id": callID, "from-tag": "a", "sdp": caller.String()}); err != nil {
		b.Fatal(err)
	}
	callee := plainrtp.Offer(loopback, rx.LocalAddr().(*net.UDPAddr).Port, []plainrtp.Codec{plainrtp.PCMU}, 2)
	res, err := r.call(map[string]any{"command": "answer", "call-id": callID, "from-tag": "a", "to-tag": "b", "sdp": callee.String()})
	if err != nil {
		b.Fatal(err)
	}
	sdpText, _ := res["sdp"].(string)
	d, err := plainrtp.ParseSDP([]byte(sdpText))
	if err != nil {
		b.Fatalf("rtpengine answer SDP: %v\n%s", err, sdpText)
	}
	c := &benchCall{tx: tx, rx: rx, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: d.Port},
		done: make(chan struct{}), ack: make(chan struct{}, 1)}
	c.release = func() { _, _ = r.call(map[string]any{"command": "delete", "call-id": callID, "from-tag": "a"}) }
	go c.read()
	return c
}

// cpuTime returns the user+system CPU time of process pid (all threads).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// BenchmarkRTPEnginePaced is BenchmarkRTPPassthroughPaced's load relayed by rtpengine.
// (rtpengine's userspace relay treats one stream flooded at full speed as an attack and
// discards it, so only paced loads are compared.)
func BenchmarkRTPEnginePaced(b *testing.B) {
	r := startRTPEngine(b, 2)
	cs := make([]*benchCall, 50)
	for i := range cs {
		cs[i] = newRTPEngineCall(b, r, i)
	}
	benchPaced(b, cs)
}

// BenchmarkRelayCPU compares the CPU cost of relaying the same paced load (200 PCMU calls at
// 50 packets/s, 2 s) through nkbridge's engine and through rtpengine (userspace). For
// nkbridge the relay's CPU is the test process's CPU minus that of the same load sent
// directly peer to peer (measured just before); for rtpengine it is the rtpengine process's
// CPU. pkts/s/core = relayed packets per CPU-second of the relay.
func BenchmarkRelayCPU(b *testing.B) {
	const calls = 200
	direct := func(b *testing.B) []*benchCall {
		cs := make([]*benchCall, calls)
		for i := range cs {
			tx, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			rx, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			cs[i] = &benchCall{tx: tx, rx: rx, to: rx.LocalAddr().(*net.UDPAddr), done: make(chan struct{}), ack: make(chan struct{}, 1)}
			go cs[i].read()
		}
		return cs
	}
	sent := float64(calls * int((2*time.Second)/(20*time.Millisecond)))
	report := func(b *testing.B, relayCPU time.Duration, pk int64, lat []time.Duration) {
		b.ReportMetric(100*(sent-float64(pk))/sent, "loss-%")
		b.ReportMetric(float64(relayCPU.Microseconds())/float64(pk), "relay-µs/pkt")
		b.ReportMetric(float64(pk)/relayCPU.Seconds(), "pkts/s/core")
		reportLatency(b, lat)
	}
	b.Run("nkbridge", func(b *testing.B) {
		e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000 })
		for range b.N {
			base, _, _ := pacedRun(direct(b), 2*time.Second, selfCPU)
			cs := make([]*benchCall, calls)
			for i := range cs {
				cs[i] = newBenchCall(b, e)
			}
			cpu, pk, lat := pacedRun(cs, 2*time.Second, selfCPU)
			report(b, cpu-base, pk, lat)
		}
	})
	b.Run("rtpengine", func(b *testing.B) {
		r := startRTPEngine(b, 2)
		for range b.N {
			cs := make([]*benchCall, calls)
			for i := range cs {
				cs[i] = newRTPEngineCall(b, r, i)
			}
			cpu, pk, lat := pacedRun(cs, 2*time.Second, func() time.Duration { return cpuTime(r.pid) })
			report(b, cpu, pk, lat)
		}
	})
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pacedRun sends 50 packets/s on every call for d, then closes the calls. It returns the CPU
// that cpu() saw go by, the packets received and their one-way latencies.
func pacedRun(cs []*benchCall, d time.Duration, cpu func() time.Duration) (time.Duration, int64, []time.Duration) {
	c0 := cpu()
	var wg sync.WaitGroup
	n := int(d / (20 * time.Millisecond))
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(len(cs))) // benchmark: spread the senders over one packet interval
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}, Payload: make([]byte, 160)}
			buf := make([]byte, 1500)
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
			for range n {
				pkt.SequenceNumber++
				pkt.Timestamp += 160
				binary.BigEndian.PutUint64(pkt.Payload, uint64(time.Now().UnixNano()))
				m, _ := pkt.MarshalTo(buf)
				_, _ = c.tx.WriteToUDP(buf[:m], c.to)
				<-tk.C
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // benchmark: let the last packets land before reading CPU
	used := cpu() - c0
	var got int64
	var lat []time.Duration
	for _, c := range cs {
		c.mu.Lock()
		lat = append(lat, c.lat...)
		c.mu.Unlock()
		got += c.received.Load()
		c.close()
	}
	return used, got, lat
}
