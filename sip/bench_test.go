package sip

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// autoAnswer answers every inbound call at once with a fixed SDP (the signalling cost only).
type autoAnswer struct{}

func (autoAnswer) HandleInvite(c *Call) { _ = c.Answer([]byte(testSDP)) }

func benchConfig(addr string) Config {
	cfg := trunkConfig()
	cfg.Listen = []Listen{{Transport: "udp", Addr: addr}, {Transport: "tcp", Addr: addr}}
	cfg.Limits.RequestsPerSecond, cfg.Limits.Burst = 1e6, 1e6
	return cfg
}

// BenchmarkSIPpInboundCalls places b.N calls (at least 200) from SIPp into the server at
// NKB_SIP_BENCH_RATE calls/s (default 200), each held NKB_SIP_BENCH_HOLD_MS (default 500), and
// reports achieved calls/s, failed calls and the mean INVITE→200 time. Bounded by SIPp's
// -timeout.
func BenchmarkSIPpInboundCalls(b *testing.B) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		b.Skip("sipp not installed")
	}
	rate := envInt("NKB_SIP_BENCH_RATE", 200)
	hold := envInt("NKB_SIP_BENCH_HOLD_MS", 500)
	calls := max(b.N, 200)
	p := freePort(b)
	s, err := New(benchConfig(fmt.Sprintf("127.0.0.1:%d", p)), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Handler: autoAnswer{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	dir := b.TempDir()
	b.ResetTimer()
	start := time.Now()
	cmd := exec.Command(bin, "-sf", scenario("bench_uac.xml"), "-s", "echo", s.target("udp"),
		"-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", fmt.Sprint(freePort(b)), "-cp", fmt.Sprint(freePort(b)), "-nostdin",
		"-r", fmt.Sprint(rate), "-m", fmt.Sprint(calls), "-l", fmt.Sprint(rate*(hold/1000+2)+100), "-d", fmt.Sprint(hold),
		"-timeout", fmt.Sprint(calls/rate*3+30), "-timeout_error", "-trace_stat", "-stf", filepath.Join(dir, "stat.csv"), "-fd", "1")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	b.StopTimer()
	ok, failed, rtd := readSIPpStats(b, filepath.Join(dir, "stat.csv"))
	if err != nil && failed == 0 {
		b.Fatalf("sipp: %v\n%s", err, out)
	}
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(rtd, "invite-200-ms")
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

// readSIPpStats returns successful and failed calls and the mean response time (ms) from the
// last line of a SIPp -trace_stat CSV.
func readSIPpStats(tb testing.TB, path string) (ok, failed int, rtdMS float64) {
	f, err := os.Open(path)
	if err != nil {
		tb.Logf("no sipp stats: %v", err)
		return 0, 0, 0
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return 0, 0, 0
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	last := rows[len(rows)-1]
	get := func(name string) string {
		if i, found := col[name]; found && i < len(last) {
			return last[i]
		}
		return ""
	}
	ok, _ = strconv.Atoi(get("SuccessfulCall(C)"))
	failed, _ = strconv.Atoi(get("FailedCall(C)"))
	// ResponseTime1(C) is hh:mm:ss:uuuuuu (microseconds) in SIPp's statistics file.
	if v := get("ResponseTime1(C)"); v != "" {
		parts := strings.Split(v, ":")
		if len(parts) >= 4 {
			h, _ := strconv.Atoi(parts[0])
			m, _ := strconv.Atoi(parts[1])
			sec, _ := strconv.Atoi(parts[2])
			us, _ := strconv.Atoi(parts[3])
			rtdMS = float64(((h*60+m)*60+sec)*1000) + float64(us)/1000
		}
	}
	return ok, failed, rtdMS
}

// TestServeForBenchScript runs a server for sip/bench/sipp_bench.sh when
// NKB_SIP_BENCH_LISTEN (127.0.0.1:port) is set; it serves NKB_SIP_BENCH_SECONDS (default 60).
func TestServeForBenchScript(t *testing.T) {
	addr := os.Getenv("NKB_SIP_BENCH_LISTEN")
	if addr == "" {
		t.Skip("set NKB_SIP_BENCH_LISTEN=127.0.0.1:PORT to serve for sip/bench/sipp_bench.sh")
	}
	if !strings.HasPrefix(addr, "127.") {
		t.Fatal("loopback only")
	}
	s, err := New(benchConfig(addr), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Handler: autoAnswer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(time.Duration(envInt("NKB_SIP_BENCH_SECONDS", 60)) * time.Second) // the subject: a server kept up for an external load generator
}
