package wsutil

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// LoginGuardConfig configures a LoginGuard. Zero values take the defaults.
type LoginGuardConfig struct {
	Backoff    time.Duration // lockout after the first failure, doubled per failure (default 100 ms)
	MaxBackoff time.Duration // longest lockout (default 30 s)
	PerSource  int           // password checks in progress per source address (default 2)
	Global     int           // password checks in progress in all (default 4)
	Forget     time.Duration // failures older than this are forgotten (default 15 min)
}

// LoginGuard protects a slow password check (PBKDF2) from being used to
// exhaust the CPU: a source address or user locked out after failures is
// refused before any hashing, a source may have only a few checks in
// progress, and all sources together only Global (the others wait).
type LoginGuard struct {
	cfg    LoginGuardConfig
	global chan struct{}

	mu         sync.Mutex
	fails      map[string]failRecord // "ip:<addr>", "user:<name>"
	inProgress map[string]int        // per source
}

type failRecord struct {
	n     int
	last  time.Time
	until time.Time
}

// ErrLoginLocked: the source or user failed too recently; try later.
var ErrLoginLocked = errors.New("too many failed logins, try later")

// ErrLoginBusy: the source already has its share of logins in progress.
var ErrLoginBusy = errors.New("too many logins in progress from this address")

const maxTrackedFails = 10000

// NewLoginGuard returns a guard.
func NewLoginGuard(cfg LoginGuardConfig) *LoginGuard {
	if cfg.Backoff <= 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.PerSource <= 0 {
		cfg.PerSource = 2
	}
	if cfg.Global <= 0 {
		cfg.Global = 4
	}
	if cfg.Forget <= 0 {
		cfg.Forget = 15 * time.Minute
	}
	return &LoginGuard{cfg: cfg, global: make(chan struct{}, cfg.Global),
		fails: make(map[string]failRecord), inProgress: make(map[string]int)}
}

// Begin is called before a password check of user from source. It refuses
// at once (ErrLoginLocked, ErrLoginBusy) without any check to make, or waits
// for a free check slot (ctx bounds the wait). On success the caller checks
// the password and calls end with the outcome: a success clears the
// failures of source and user; a failure locks them out for a while and
// returns how long to wait before answering.
func (g *LoginGuard) Begin(ctx context.Context, source, user string) (end func(ok bool) time.Duration, err error) {
	now := time.Now()
	g.mu.Lock()
	if g.lockedLocked("ip:"+source, now) || g.lockedLocked("user:"+user, now) {
		g.mu.Unlock()
		return nil, ErrLoginLocked
	}
	if g.inProgress[source] >= g.cfg.PerSource {
		g.mu.Unlock()
		return nil, ErrLoginBusy
	}
	g.inProgress[source]++
	g.mu.Unlock()
	leave := func() {
		g.mu.Lock()
		if g.inProgress[source]--; g.inProgress[source] <= 0 {
			delete(g.inProgress, source)
		}
		g.mu.Unlock()
	}
	select {
	case g.global <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("login abandoned: %w", ctx.Err())
	}
	var once sync.Once
	return func(ok bool) (delay time.Duration) {
		once.Do(func() {
			<-g.global
			leave()
			delay = g.record(source, user, ok)
		})
		return delay
	}, nil
}

func (g *LoginGuard) lockedLocked(key string, now time.Time) bool {
	r, ok := g.fails[key]
	return ok && now.Before(r.until)
}

// record notes a login outcome and returns the lockout a failure starts.
func (g *LoginGuard) record(source, user string, ok bool) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := [2]string{"ip:" + source, "user:" + user}
	if ok {
		delete(g.fails, keys[0])
		delete(g.fails, keys[1])
		return 0
	}
	now := time.Now()
	if len(g.fails) > maxTrackedFails {
		for k, v := range g.fails {
			if now.Sub(v.last) > g.cfg.Forget {
				delete(g.fails, k)
			}
		}
	}
	var d time.Duration
	for _, k := range keys {
		r := g.fails[k]
		if now.Sub(r.last) > g.cfg.Forget {
			r.n = 0
		}
		r.n++
		r.last = now
		kd := g.cfg.Backoff
		for i := 1; i < r.n && kd < g.cfg.MaxBackoff; i++ {
			kd *= 2
		}
		kd = min(kd, g.cfg.MaxBackoff)
		r.until = now.Add(kd)
		g.fails[k] = r
		d = max(d, kd)
	}
	return d
}
