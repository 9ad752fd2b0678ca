package sipgw_test

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/sockbuf"
	"github.com/nkbridge/nkbridge/media"
	"github.com/nkbridge/nkbridge/sip"
)

// Benchmarks with SIPp against the whole SIP path: listener, gateway, core,
// embedded media engine. Bounded in count (-m) and time (-timeout).
//
//	NKB_SIPGW_BENCH_RATE=800 NKB_SIPGW_BENCH_SECONDS=5 NKB_SIPGW_BENCH_HOLD_MS=1000 \
//	  go test -run x -bench SIPpEchoRate -benchtime 1x ./sip/sipgw/
//	NKB_SIPGW_BENCH_CALLS=200 NKB_SIPGW_BENCH_HOLD_MS=10000 \
//	  go test -run x -bench SIPpEchoHeldRTP -benchtime 1x ./sip/sipgw/

func benchEnvInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchEnv is newEnv for load: no logs, a trunk on loopback, no rate limit,
// a large RTP port range without quarantine.
func benchEnv(b *testing.B, ports int) *env {
	base := peers.FreeUDPRange(b, ports)
	return newEnv(b, envOpts{
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		sip: func(c *sip.Config) {
			trunkLoopback(c)
			c.Limits.RequestsPerSecond, c.Limits.Burst = 1e6, 1e6
			c.Limits.TrunkRequestRate = 1e6 // the trunk's default 1000/s would answer 503 above it
			c.AckTimeout = 5 * time.Second
			// sip.udp_read_buffer: unset = its default, -1 = the kernel default.
			if v, err := strconv.Atoi(os.Getenv("NKB_SIPGW_BENCH_UDP_READ_BUFFER")); err == nil {
				c.UDPReadBuffer = v
			}
		},
		media: func(c *media.Config) {
			c.RTPPortMin, c.RTPPortMax, c.Quarantine = base, base+ports-1, -1
			c.MaxSessions = ports
			// One owner places every call: the per-user RTP port quota (a quarter of the
			// range by default) would refuse calls beyond it.
			c.RTPPortsPerUser, c.RTPPortsReserve = -1, -1
			c.Logger = nil
		},
	})
}

// BenchmarkSIPpEchoRate offers NKB_SIPGW_BENCH_RATE calls/s (default 800) for
// NKB_SIPGW_BENCH_SECONDS (default 5) to the echo extension, each answered by
// an embedded echo session and held NKB_SIPGW_BENCH_HOLD_MS (default 1000),
// and reports achieved calls/s, failed calls and the INVITE→200 times (mean,
// p99, max from SIPp's -trace_rtt).
func BenchmarkSIPpEchoRate(b *testing.B) {
	rate := benchEnvInt("NKB_SIPGW_BENCH_RATE", 800)
	secs := benchEnvInt("NKB_SIPGW_BENCH_SECONDS", 5)
	hold := benchEnvInt("NKB_SIPGW_BENCH_HOLD_MS", 1000)
	calls := max(b.N, rate*secs)
	concurrent := rate*(hold/1000+2) + 100
	e := benchEnv(b, 2*concurrent+64)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs*4+60)*time.Second)
	defer cancel()
	drops0, _ := sockbuf.Drops(e.port)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	sp := peers.StartSIPp(b, peers.SIPpOptions{
		Scenario: scenario(b, "bench_uac.xml"), Remote: e.addr, Service: "echo",
		Calls: calls, Rate: float64(rate), Limit: concurrent, Timeout: time.Duration(secs*3+30) * time.Second,
		Args:   []string{"-d", strconv.Itoa(hold), "-trace_rtt", "-rtt_freq", "1"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	res, err := sp.Wait(ctx)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Stats.SuccessfulCalls > 0 {
		// nkbridge's side only (SIPp is another process): CPU per call and the calls/s two CPUs would carry.
		per := cpu.Seconds() / float64(res.Stats.SuccessfulCalls)
		b.ReportMetric(per*1e6, "cpu-us/call")
		b.ReportMetric(2/per, "calls/s-per-2cpu")
	}
	rtts := readRTT(b, sp.Dir())
	mean, p99, worst := stats(rtts)
	// Calls per second offered and completed during the offering window (the last calls end a hold later).
	window := elapsed.Seconds() - float64(hold)/1000
	b.ReportMetric(float64(res.Stats.SuccessfulCalls)/window, "calls/s")
	b.ReportMetric(float64(res.Stats.FailedCalls), "failed")
	b.ReportMetric(mean, "rtt-mean-ms")
	b.ReportMetric(p99, "rtt-p99-ms")
	b.ReportMetric(worst, "rtt-max-ms")
	drops1, _ := sockbuf.Drops(e.port)
	b.ReportMetric(float64(drops1-drops0), "udp-drops") // the SIP UDP socket's, /proc/net/udp
	if res.Stats.FailedCalls > 0 {
		b.Logf("SIPp errors (first 1500 bytes): %.1500s", res.Errors)
	}
	b.Logf("offered %d calls at %d/s (hold %d ms): %d ok, %d failed, %d rtt samples, exit %d, %.1fs",
		calls, rate, hold, res.Stats.SuccessfulCalls, res.Stats.FailedCalls, len(rtts), res.ExitCode, elapsed.Seconds())
	if res.Stats.SuccessfulCalls+res.Stats.FailedCalls != calls {
		b.Errorf("%d of %d calls accounted for\n%s", res.Stats.SuccessfulCalls+res.Stats.FailedCalls, calls, res.Errors)
	}
	waitIdle(b, e)
}

// BenchmarkSIPpEchoHeldRTP holds NKB_SIPGW_BENCH_CALLS (default 200)
// concurrent calls to the echo extension, each streaming PCMU (SIPp
// rtp_stream) for NKB_SIPGW_BENCH_HOLD_MS (default 10000), and reports the
// concurrent calls reached, failed calls and the RTP packets echoed per second.
func BenchmarkSIPpEchoHeldRTP(b *testing.B) {
	n := benchEnvInt("NKB_SIPGW_BENCH_CALLS", 200)
	hold := benchEnvInt("NKB_SIPGW_BENCH_HOLD_MS", 10000)
	e := benchEnv(b, 2*n+64)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(hold/1000*3+90)*time.Second)
	defer cancel()
	tone := peers.PCMUToneFile(b, 1000, 5)
	b.ResetTimer()
	type result struct {
		res *peers.SIPpResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := peers.RunSIPp(ctx, b, peers.SIPpOptions{
			Scenario: peers.Scenario(b, "uac-pcmu-tone.xml"), Remote: e.addr, Service: "echo",
			Calls: n, Rate: float64(max(100, n/4)), Limit: n, Timeout: time.Duration(hold/1000*2+60) * time.Second,
			Keys:   map[string]string{"rtp_stream": tone + ",-1,0"},
			Args:   []string{"-d", strconv.Itoa(hold)},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		done <- result{res, err}
	}()
	peak := 0
	var echoed uint64
	var first, last time.Time
	var firstOut uint64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var r result
loop:
	for {
		select {
		case r = <-done:
			break loop
		case <-tick.C:
			s := e.eng.Sessions()
			var out uint64
			for _, sid := range e.core.ListSessions() {
				if m, ok := e.be.Media(sid); ok {
					out += m.Stats()[media.SideCaller].PacketsOut
				}
			}
			if s > peak {
				peak = s
			}
			if s == n { // all calls up: measure the echo rate while they are
				if first.IsZero() {
					first, firstOut = time.Now(), out
				}
				last, echoed = time.Now(), out-firstOut
			}
		}
	}
	b.StopTimer()
	if r.err != nil {
		b.Fatal(r.err)
	}
	rateEcho := 0.0
	if d := last.Sub(first).Seconds(); d > 0 {
		rateEcho = float64(echoed) / d
	}
	b.ReportMetric(float64(peak), "held-calls")
	b.ReportMetric(float64(r.res.Stats.FailedCalls), "failed")
	b.ReportMetric(rateEcho, "echoed-pkts/s")
	b.Logf("%d calls held up to %d at once, %d ok, %d failed; echoed %.0f packets/s (%.1f per call per 20 ms)",
		n, peak, r.res.Stats.SuccessfulCalls, r.res.Stats.FailedCalls, rateEcho, rateEcho/float64(n)/50)
	waitIdle(b, e)
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func waitIdle(b *testing.B, e *env) {
	peers.WaitFor(b, 30*time.Second, "everything ended", func() bool {
		s, c := e.core.Counts()
		return s == 0 && c == 0 && e.srv.Calls() == 0
	})
}

// readRTT reads SIPp's -trace_rtt file(s) in dir: one INVITE→200 time (ms)
// per call ("Date_ms;response_time_ms;rtd_no" rows).
func readRTT(b *testing.B, dir string) []float64 {
	files, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	var out []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Logf("rtt: %v", err)
			continue
		}
		r := csv.NewReader(fh)
		r.Comma, r.FieldsPerRecord = ';', -1
		rows, _ := r.ReadAll()
		fh.Close()
		for _, row := range rows {
			if len(row) < 2 {
				continue
			}
			if v, err := strconv.ParseFloat(strings.TrimSpace(row[1]), 64); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

func stats(v []float64) (mean, p99, worst float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v)), v[(len(v)*99)/100], v[len(v)-1]
}
