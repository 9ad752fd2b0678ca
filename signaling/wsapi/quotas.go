package wsapi

import (
	"net"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
)

// quotaKind is a shared resource counted per user and per source address.
type quotaKind int

const (
	quotaSessions quotaKind = iota
	quotaCalls
	quotaRooms
)

// quotas enforces the per-user and per-source limits on sessions, calls and
// rooms. Live objects are counted where they are (the core, the room
// registry); starts still under way are counted here, so that concurrent
// starts cannot overshoot a limit.
type quotas struct {
	srv *Server

	mu      sync.Mutex
	pending map[string]int // "s|user:alice", "c|ip:127.0.0.1", ...: starts under way
}

func (q *quotas) limits(k quotaKind) (user int, source int, name string) {
	cfg := &q.srv.cfg
	switch k {
	case quotaSessions:
		return cfg.MaxUserSessions, cfg.MaxSourceSessions, "sessions"
	case quotaCalls:
		return cfg.MaxUserCalls, cfg.MaxSourceCalls, "calls"
	}
	return cfg.MaxUserRooms, cfg.MaxSourceRooms, "rooms"
}

// live counts the live objects of kind k of c's user and of c's source.
func (q *quotas) live(c *conn, k quotaKind) (byUser, bySource int) {
	s := q.srv
	if k == quotaRooms {
		return s.rooms.count(c.user, c.source, s.roomExists)
	}
	type owner struct {
		id           string
		user, source bool
	}
	var owners []owner
	s.mu.Lock()
	for o := range s.conns {
		u, src := c.user != "" && o.user == c.user, o.source == c.source
		if u || src {
			owners = append(owners, owner{o.id, u, src})
		}
	}
	s.mu.Unlock()
	for _, o := range owners {
		sess, calls := s.core.Owned(o.id)
		n := sess
		if k == quotaCalls {
			n = calls
		}
		if o.user {
			byUser += n
		}
		if o.source {
			bySource += n
		}
	}
	return byUser, bySource
}

func pendingKeys(c *conn, k quotaKind) (string, string) {
	p := string("scr"[k])
	return p + "|user:" + c.user, p + "|ip:" + c.source
}

// take reserves one object of kind k for c, or answers 1045 naming the
// limit; release ends the reservation (call it when the start is over,
// whether it succeeded or not).
func (q *quotas) take(c *conn, k quotaKind) (release func(), err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.checkLocked(c, k); err != nil {
		return nil, err
	}
	uk, sk := pendingKeys(c, k)
	if q.pending == nil {
		q.pending = make(map[string]int)
	}
	q.pending[uk]++
	q.pending[sk]++
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			for _, key := range []string{uk, sk} {
				if q.pending[key]--; q.pending[key] <= 0 {
					delete(q.pending, key)
				}
			}
		})
	}, nil
}

// check answers 1045 when c's user or source is at the limit for kind k.
func (q *quotas) check(c *conn, k quotaKind) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(c, k)
}

func (q *quotas) checkLocked(c *conn, k quotaKind) error {
	maxUser, maxSource, name := q.limits(k)
	byUser, bySource := q.live(c, k)
	uk, sk := pendingKeys(c, k)
	byUser += q.pending[uk]
	bySource += q.pending[sk]
	switch {
	case maxUser > 0 && byUser >= maxUser:
		return signaling.Errorf(signaling.CodeInvalidOperation, "Too many %s for user %s (max %d, api.max_user_%s)", name, c.user, maxUser, name)
	case maxSource > 0 && bySource >= maxSource:
		return signaling.Errorf(signaling.CodeInvalidOperation, "Too many %s from %s (max %d, api.max_source_%s)", name, c.source, maxSource, name)
	}
	return nil
}

// sourceOf is the address part of a remote address (the quota key of a
// source).
func sourceOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}
