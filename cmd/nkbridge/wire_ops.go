package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/signaling"
)

// opsServer is the operations HTTP listener: Prometheus metrics at
// metrics.path and /health (200 serving, 429 overloaded, 503 draining).
type opsServer struct {
	hs     *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// loadSource is what /health reads.
type loadSource interface {
	Counts() (sessions, calls int)
	Draining() bool
}

// healthHandler answers /health with a JSON body {status, sessions, calls,
// cpu}: 503 "draining" once the daemon drains, 429 "overloaded" at or above
// max_sessions or above max_cpu (percent of all cores), else 200 "ok".
// A change of status is logged (warn for overloaded, info otherwise).
func healthHandler(core loadSource, cfg HealthConfig, cpu func() float64, log *slog.Logger) http.HandlerFunc {
	var (
		mu   sync.Mutex
		last = "ok"
	)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		status, code, s, c, load := healthNow(core, cfg, cpu)
		mu.Lock()
		changed := status != last
		last = status
		mu.Unlock()
		if changed && log != nil {
			lvl := slog.LevelInfo
			if status == "overloaded" {
				lvl = slog.LevelWarn
			}
			log.Log(r.Context(), lvl, "health changed", "status", status, "sessions", s, "calls", c, "cpu", load)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if code != http.StatusOK {
			w.Header().Set("Retry-After", "5")
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "sessions": s, "calls": c, "cpu": load})
	}
}

// healthNow is what /health answers now (also the nkbridge_health_status
// metric): the status, its HTTP code, the session and call counts and the CPU
// load.
func healthNow(core loadSource, cfg HealthConfig, cpu func() float64) (status string, code, sessions, calls int, load float64) {
	sessions, calls = core.Counts()
	if cpu != nil {
		load = cpu()
	}
	status, code = "ok", http.StatusOK
	switch {
	case core.Draining():
		status, code = "draining", http.StatusServiceUnavailable
	case cfg.MaxSessions > 0 && sessions >= cfg.MaxSessions:
		status, code = "overloaded", http.StatusTooManyRequests
	case cfg.MaxCPU > 0 && load > cfg.MaxCPU:
		status, code = "overloaded", http.StatusTooManyRequests
	}
	return status, code, sessions, calls, load
}

// cpuMeter samples the process's CPU use (user+system, from getrusage) once
// a second, as a percentage of all cores.
type cpuMeter struct {
	mu      sync.Mutex
	percent float64
}

func (m *cpuMeter) Percent() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.percent
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run samples until ctx is done.
func (m *cpuMeter) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	lastCPU, lastWall := processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := processCPU()
			wall := now.Sub(lastWall)
			if wall > 0 {
				p := float64(cpu-lastCPU) / float64(wall) / float64(runtime.NumCPU()) * 100
				m.mu.Lock()
				m.percent = p
				m.mu.Unlock()
			}
			lastCPU, lastWall = cpu, now
		}
	}
}

// startOps binds the metrics/health listener (cfg.Metrics.Listen; "" = none,
// returns nil) and serves it until stop.
func startOps(ctx context.Context, cfg *Config, log *slog.Logger, m *metrics.Metrics, core *signaling.Core) (*opsServer, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, err
	}
	meter := &cpuMeter{}
	mctx, cancel := context.WithCancel(ctx)
	mux := http.NewServeMux()
	mux.Handle(cfg.Metrics.Path, m.Handler())
	mux.Handle("/health", healthHandler(core, cfg.Health, meter.Percent, log))
	writeTimeout := 30 * time.Second
	if cfg.Metrics.Pprof {
		handlePprof(mux)
		// /debug/pprof/profile?seconds=N answers an error for N at or
		// above the server's WriteTimeout: leave room for long profiles.
		writeTimeout = pprofWriteTimeout
	}
	m.HealthFunc(func() string {
		status, _, _, _, _ := healthNow(core, cfg.Health, meter.Percent)
		return status
	})
	o := &opsServer{cancel: cancel,
		hs: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: writeTimeout, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}}
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		meter.run(mctx, time.Second)
	}()
	go func() {
		defer o.wg.Done()
		if err := o.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String(), "path", cfg.Metrics.Path, "health", "/health", "pprof", cfg.Metrics.Pprof)
	if cfg.Metrics.Pprof {
		log.Warn("pprof on the metrics listener: /debug/pprof/ exposes the process's internals; keep metrics.listen on loopback", "addr", ln.Addr().String())
	}
	return o, nil
}

// pprofWriteTimeout is the metrics listener's write deadline with pprof on:
// CPU profiles and traces of up to two minutes fit.
const pprofWriteTimeout = 125 * time.Second

// handlePprof serves net/http/pprof's handlers under /debug/pprof/ on mux
// (metrics.pprof; the metrics listener only, never the API port).
func handlePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles: goroutine, heap, allocs, block, mutex, threadcreate
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// stop closes the listener and waits for the server.
func (o *opsServer) stop() {
	if o == nil {
		return
	}
	_ = o.hs.Close()
	o.cancel()
	o.wg.Wait()
}

// buildDetails describes the build for -version: " (commit abc1234[+dirty], go1.x)".
func buildDetails() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	out := " (" + bi.GoVersion
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += ", commit " + rev
		if dirty {
			out += "+dirty"
		}
	}
	return out + ")"
}
