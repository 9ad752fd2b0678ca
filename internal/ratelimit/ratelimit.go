// Package ratelimit is the token bucket the project's servers use to bound request rates
// (control API connections, Verto connections, SIP sources).
package ratelimit

import "time"

// Bucket is a token bucket holding at most Burst tokens, refilled at Rate tokens per second.
// A Bucket that has not been used yet is full. It is not safe for concurrent use.
type Bucket struct {
	Rate, Burst float64
	tokens      float64
	last        time.Time
}

// New returns a full bucket.
func New(rate, burst float64) Bucket { return Bucket{Rate: rate, Burst: burst} }

func (b *Bucket) fill(now time.Time) {
	switch {
	case b.last.IsZero():
		b.tokens = b.Burst
	case now.After(b.last):
		b.tokens = min(b.Burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
	default:
		return // the clock went back: no refill, keep the later time
	}
	b.last = now
}

// Allow takes one token at time now and reports whether there was one.
func (b *Bucket) Allow(now time.Time) bool {
	b.fill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Full reports whether the bucket would be full at time now (an idle source).
func (b *Bucket) Full(now time.Time) bool {
	if b.last.IsZero() {
		return true
	}
	return b.tokens+now.Sub(b.last).Seconds()*b.Rate >= b.Burst
}
