// Package backoff owns the retry pacing shared by Vigil's deliveries
// (alert sinks, SIEM forwarding): a doubling delay between a base and a
// maximum, reset by a success, and a sleep that ends with its context.
package backoff

import (
	"context"
	"time"
)

// Backoff is a doubling delay. The zero value waits nothing; set Base and
// Max.
type Backoff struct {
	Base, Max time.Duration
	cur       time.Duration
}

// Next returns the delay to wait now and doubles the following one, up to
// Max.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Base
	}
	d := b.cur
	b.cur = min(b.cur*2, b.Max)
	return d
}

// Reset makes the next delay Base again.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits for d or until ctx ends, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
