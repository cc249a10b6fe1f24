package token

import (
	"sync"
	"time"
)

// cacheEntry is a token whose signature and claims were verified.
type cacheEntry struct {
	id       Identity
	key      *verifyKey
	remote   *RemoteIssuer
	lifetime time.Duration
}

// verifyCache remembers verified tokens by the SHA-256 of their exact
// bytes, so a repeated token skips only the signature check; time,
// revocation, source and key publication are checked on every use. A
// re-encoded or malleated token hashes differently and is verified afresh.
type verifyCache struct {
	max int
	// mu guards m.
	mu sync.Mutex
	m  map[[32]byte]*cacheEntry
}

func newVerifyCache(max int) *verifyCache {
	return &verifyCache{max: max, m: make(map[[32]byte]*cacheEntry, max)}
}

func (c *verifyCache) get(k [32]byte) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *verifyCache) put(k [32]byte, e *cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Evict expired entries, else an arbitrary one.
		for key, old := range c.m {
			if now.After(old.id.Claims.ExpiresAt.Time) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = e
}
