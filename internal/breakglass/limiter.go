package breakglass

import (
	"sync"
	"time"
)

// Limit is a token bucket: Burst failures at once, then one more every
// Every. The zero Limit allows nothing.
type Limit struct {
	Burst int
	Every time.Duration
}

// Default in-memory limits on wrong secrets (the persisted lockout is
// Config.MaxFailures). A person who mistypes has a few tries at once; a
// guesser gets a handful an hour from each address.
var (
	// DefaultSourceLimit is per client address.
	DefaultSourceLimit = Limit{Burst: 5, Every: time.Minute}
	// DefaultAccountLimit is per account name (known or not).
	DefaultAccountLimit = Limit{Burst: 5, Every: 30 * time.Second}
)

// maxBuckets bounds the memory of a limiter: once it holds this many
// keys, full buckets are forgotten, and if none is full a new key is
// refused (treated as exhausted) rather than tracked.
const maxBuckets = 10000

// limiter rate-limits failures per key (a source address or an account
// name) in memory. Only failures take from a bucket; every attempt is
// checked against it first.
type limiter struct {
	limit Limit
	now   func() time.Time

	// mu guards buckets.
	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket is one key's tokens as of at.
type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(l Limit, now func() time.Time) *limiter {
	return &limiter{limit: l, now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to now; l.mu is held.
func (l *limiter) refill(b *bucket, now time.Time) {
	if l.limit.Every > 0 && now.After(b.at) {
		b.tokens += float64(now.Sub(b.at)) / float64(l.limit.Every)
	}
	b.tokens = min(b.tokens, float64(l.limit.Burst))
	b.at = now
}

// take takes one token from key's bucket before an attempt (so that
// concurrent attempts cannot all pass a check made before any of them
// failed) and reports whether there was one; if not, after how long there
// will be. Attempts that turn out not to be wrong secrets give it back
// with refund.
func (l *limiter) take(key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets && !l.pruneLocked() {
			return false, l.limit.Every
		}
		if l.limit.Burst < 1 {
			return false, time.Hour
		}
		b = &bucket{tokens: float64(l.limit.Burst), at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.limit.Every <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - b.tokens) * float64(l.limit.Every))
}

// refund gives back the token an attempt took.
func (l *limiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		l.refill(b, l.now())
		b.tokens = min(b.tokens+1, float64(l.limit.Burst))
	}
}

// pruneLocked forgets full buckets (they are as good as new) and reports
// whether there is room now; l.mu is held.
func (l *limiter) pruneLocked() bool {
	now := l.now()
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= float64(l.limit.Burst) {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < maxBuckets
}
