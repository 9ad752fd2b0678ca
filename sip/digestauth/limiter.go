package digestauth

import (
	"net/netip"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// LimiterConfig configures a FailureLimiter.
type LimiterConfig struct {
	// MaxFailures within Window blocks the source (default 5).
	MaxFailures int
	// Window over which failures are counted (default 1 minute).
	Window time.Duration
	// Block is how long a source stays blocked (default 5 minutes).
	Block time.Duration
	// MaxEntries bounds the table (default 4096); the stalest entry is evicted when full.
	MaxEntries int
	Now        func() time.Time
}

// FailureLimiter counts authentication failures per source address and blocks sources that fail
// too often. It is safe for concurrent use and its memory is bounded.
type FailureLimiter struct {
	cfg LimiterConfig
	mu  sync.Mutex
	m   map[netip.Addr]*failEntry
}

type failEntry struct {
	count        int
	windowStart  time.Time
	blockedUntil time.Time
	last         time.Time
}

// NewFailureLimiter returns a limiter with defaults filled in.
func NewFailureLimiter(cfg LimiterConfig) *FailureLimiter {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = defaults.Int("sip.auth_max_failures")
	}
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.Block <= 0 {
		cfg.Block = 5 * time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &FailureLimiter{cfg: cfg, m: make(map[netip.Addr]*failEntry)}
}

// Blocked reports whether src is currently blocked.
func (l *FailureLimiter) Blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[src.Unmap()]
	return ok && l.cfg.Now().Before(e.blockedUntil)
}

// Fail records a failure from src and reports whether src is now blocked.
func (l *FailureLimiter) Fail(src netip.Addr) bool {
	src = src.Unmap()
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[src]
	if !ok {
		if len(l.m) >= l.cfg.MaxEntries {
			l.evictLocked(now)
		}
		e = &failEntry{windowStart: now}
		l.m[src] = e
	}
	if now.Sub(e.windowStart) > l.cfg.Window {
		e.count, e.windowStart = 0, now
	}
	e.count++
	e.last = now
	if e.count >= l.cfg.MaxFailures {
		e.blockedUntil = now.Add(l.cfg.Block)
	}
	return now.Before(e.blockedUntil)
}

// Succeed clears the failure count of src (a blocked source stays blocked).
func (l *FailureLimiter) Succeed(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[src.Unmap()]; ok && !l.cfg.Now().Before(e.blockedUntil) {
		delete(l.m, src.Unmap())
	}
}

// Len returns the number of tracked sources.
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func (l *FailureLimiter) evictLocked(now time.Time) {
	var oldest netip.Addr
	var oldestT time.Time
	for k, e := range l.m {
		if now.After(e.blockedUntil) && now.Sub(e.windowStart) > l.cfg.Window {
			delete(l.m, k)
			continue
		}
		if oldestT.IsZero() || e.last.Before(oldestT) {
			oldest, oldestT = k, e.last
		}
	}
	if len(l.m) >= l.cfg.MaxEntries {
		delete(l.m, oldest)
	}
}
