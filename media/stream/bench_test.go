package stream

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/internal/streamtest"
	"github.com/nkbridge/nkbridge/media"
)

// BenchmarkStreamedCalls measures what streaming costs per call: N echo calls on a real
// engine, each a plain-RTP peer sending a PCMU tone, without a stream and then with one (mono
// 8 kHz; stereo 16 kHz; Twilio framing) to an in-process WebSocket application (which counts
// frames and discards them: its reading is in the figures). It reports process CPU per call
// and second and the heap per call, and prints a table with the load average. Not in the
// suite (it takes ~40 s):
//
//	go test -run XXX -bench StreamedCalls -benchtime 1x ./media/stream/
func BenchmarkStreamedCalls(b *testing.B) {
	const calls = 50
	window := 5 * time.Second
	type row struct {
		mode           string
		cpuMS, heapKiB float64
		sent, dropped  uint64
	}
	var rows []row
	for _, mode := range []string{"none", "mono-8k", "stereo-16k", "twilio"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				cpu, heap, sent, dropped := streamedCalls(b, calls, mode, window)
				b.ReportMetric(cpu, "cpu-ms/call-s")
				b.ReportMetric(heap, "heap-KiB/call")
				rows = append(rows, row{mode, cpu, heap, sent, dropped})
			}
		})
	}
	load, _ := os.ReadFile("/proc/loadavg")
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d echo calls, %v measured, GOMAXPROCS %d, load average %s\n", calls, window, runtime.GOMAXPROCS(0), strings.TrimSpace(string(load)))
	fmt.Fprintf(&sb, "| stream | CPU ms per call-second | heap KiB per call | frames sent | frames dropped |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %.2f | %.0f | %d | %d |\n", r.mode, r.cpuMS, r.heapKiB, r.sent, r.dropped)
	}
	b.Log(sb.String())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func streamedCalls(b *testing.B, n int, mode string, window time.Duration) (cpuMS, heapKiB float64, sent, dropped uint64) {
	base := peers.FreeUDPRange(b, 2*n+20)
	eng, err := media.New(media.Config{BindIP: netip.MustParseAddr("127.0.0.1"), RTPPortMin: base, RTPPortMax: base + 2*n + 19, Quarantine: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	app := streamtest.Start(b)
	app.Discard = true
	m, err := NewManager(Config{AllowedHosts: []string{"127.0.0.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sessions []*media.Session
	for range n {
		p := peers.NewRTPPeer(b)
		p.Learn(0, "pcmu")
		s, ans, err := eng.StartEcho(ctx, media.Description{Kind: media.KindRTP, SDP: p.SDP("")}, media.SessionOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		p.UseSDP(ans.SDP)
		go p.SendToneFor(ctx, 0, "pcmu", 1000, 2*window+10*time.Second)
		sessions = append(sessions, s)
	}
	time.Sleep(time.Second) // the subject: calls running before the measurement
	heap0 := heapInUse()
	var streams []*Stream
	if mode != "none" {
		o := Options{URL: app.URL("/bench")}
		switch mode {
		case "stereo-16k":
			o.Mix, o.SampleRate = MixStereo, 16000
		case "twilio":
			o.Framing = FramingTwilio
		}
		for _, s := range sessions {
			st, err := m.Start(ctx, s, o, Call{SessionID: s.ID()}, Events{})
			if err != nil {
				b.Fatal(err)
			}
			streams = append(streams, st)
		}
	}
	time.Sleep(time.Second) // the subject: streams settle
	heap1 := heapInUse()
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(window) // the subject: the measured window
	c1, el := cpuTime(), time.Since(t0)
	for _, st := range streams {
		s := st.Stats()
		sent += s.FramesSent
		dropped += s.FramesDropped
	}
	cpuMS = float64((c1 - c0).Milliseconds()) / (float64(n) * el.Seconds())
	heapKiB = (float64(heap1) - float64(heap0)) / 1024 / float64(n)
	return cpuMS, heapKiB, sent, dropped
}
