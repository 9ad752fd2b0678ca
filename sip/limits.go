package sip

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/nkbridge/nkbridge/internal/ratelimit"
)

func tlsListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }

// rateLimiter is a bounded table of token buckets per key (a source address, a user).
type rateLimiter[K comparable] struct {
	rate  float64
	burst float64
	max   int
	mu    sync.Mutex
	m     map[K]*ratelimit.Bucket
	now   func() time.Time
}

func newRateLimiter[K comparable](rate float64, burst, max int) *rateLimiter[K] {
	return &rateLimiter[K]{rate: rate, burst: float64(burst), max: max, m: make(map[K]*ratelimit.Bucket), now: time.Now}
}

func (r *rateLimiter[K]) allow(src K) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.m[src]
	if !ok {
		if len(r.m) >= r.max {
			// Drop full buckets (idle sources) first; if none, forget an arbitrary one.
			for k, v := range r.m {
				if v.Full(now) {
					delete(r.m, k)
				}
			}
			for k := range r.m {
				if len(r.m) < r.max {
					break
				}
				delete(r.m, k)
			}
		}
		nb := ratelimit.New(r.rate, r.burst)
		b = &nb
		r.m[src] = b
	}
	return b.Allow(now)
}

func (r *rateLimiter[K]) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// limitListener caps concurrent stream connections in total and per source address; excess
// connections are closed at accept.
type limitListener struct {
	net.Listener
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[netip.Addr]int
}

func newLimitListener(l net.Listener, max, perIP int) *limitListener {
	return &limitListener{Listener: l, max: max, perIP: perIP, byIP: make(map[netip.Addr]int)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			ip = ap.Addr().Unmap()
		}
		l.mu.Lock()
		if l.total >= l.max || l.byIP[ip] >= l.perIP {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.total++
		l.byIP[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, l: l, ip: ip}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.total--
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// admitInvite applies the per-caller and per-callee invite rates to a new call from the
// authenticated user, and answers the refusal itself (naming the setting).
func (s *Server) admitInvite(req *sip.Request, tx sip.ServerTransaction, user string) bool {
	caller := strings.ToLower(user)
	if !s.callerRate.allow(caller) {
		s.log.Warn("sip invite refused: caller over its call rate", "user", user, "src", req.Source(),
			"setting", "sip.caller_invite_rate")
		s.respond(req, tx, 503, "Service Unavailable (too many calls from "+user+": sip.caller_invite_rate)",
			sip.NewHeader("Retry-After", "5"))
		return false
	}
	callee := strings.ToLower(req.Recipient.User)
	if !s.calleeRate.allow(callee) {
		s.log.Warn("sip invite refused: callee over its call rate", "user", user, "callee", callee, "src", req.Source(),
			"setting", "sip.callee_invite_rate")
		s.respond(req, tx, 486, "Busy Here (too many calls to this callee: sip.callee_invite_rate)")
		return false
	}
	return true
}
