package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// Revocation is one entry of the deny list.
type Revocation struct {
	Issuer    string    `json:"issuer"`
	JTI       string    `json:"jti"`
	RevokedAt time.Time `json:"revoked_at"`
	// ExpiresAt is when the entry may be forgotten: no token with this
	// jti can still be valid after it.
	ExpiresAt time.Time `json:"expires_at"`
	RevokedBy string    `json:"revoked_by"`
	Reason    string    `json:"reason"`
}

type revKey struct{ issuer, jti string }

// Revocations is the token deny list, keyed by issuer and jti (never by a
// hash of the token string: an ECDSA signature can be altered into another
// valid one, which would slip past a hash). It is persisted in the store
// and held in memory for the check on every verification.
type Revocations struct {
	db  *store.DB
	now func() time.Time

	// mu guards m.
	mu sync.RWMutex
	m  map[revKey]time.Time // → ExpiresAt
}

// OpenRevocations loads the unexpired entries from db. now may be nil.
func OpenRevocations(ctx context.Context, db *store.DB, now func() time.Time) (*Revocations, error) {
	if now == nil {
		now = time.Now
	}
	r := &Revocations{db: db, now: now}
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload replaces the in-memory list with the store's unexpired entries.
func (r *Revocations) Reload(ctx context.Context) error {
	rows, err := r.db.QueryContext(ctx, `SELECT issuer, jti, expires_at FROM revoked_tokens WHERE expires_at > $1`, store.Nanos(r.now()))
	if err != nil {
		return fmt.Errorf("token: load revocations: %w", err)
	}
	defer rows.Close()
	m := make(map[revKey]time.Time)
	for rows.Next() {
		var k revKey
		var exp int64
		if err := rows.Scan(&k.issuer, &k.jti, &exp); err != nil {
			return fmt.Errorf("token: load revocations: %w", err)
		}
		m[k] = store.Time(exp)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("token: load revocations: %w", err)
	}
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
	return nil
}

// Revoke persists rev and then adds it to the in-memory list. Revoking a
// jti twice keeps the first entry.
func (r *Revocations) Revoke(ctx context.Context, rev Revocation) error {
	if rev.Issuer == "" || rev.JTI == "" {
		return errors.New("token: revoke needs an issuer and a jti")
	}
	if rev.RevokedAt.IsZero() {
		rev.RevokedAt = r.now()
	}
	_, err := r.db.ExecContext(ctx, `INSERT INTO revoked_tokens (issuer, jti, revoked_at, expires_at, revoked_by, reason)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (issuer, jti) DO NOTHING`,
		rev.Issuer, rev.JTI, store.Nanos(rev.RevokedAt), store.Nanos(rev.ExpiresAt), rev.RevokedBy, rev.Reason)
	if err != nil {
		return fmt.Errorf("token: revoke %s: %w", rev.JTI, err)
	}
	r.mu.Lock()
	if _, ok := r.m[revKey{rev.Issuer, rev.JTI}]; !ok {
		r.m[revKey{rev.Issuer, rev.JTI}] = rev.ExpiresAt
	}
	r.mu.Unlock()
	return nil
}

// IsRevoked reports whether issuer's jti is on the list. A nil list
// revokes nothing.
func (r *Revocations) IsRevoked(issuer, jti string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	_, ok := r.m[revKey{issuer, jti}]
	r.mu.RUnlock()
	return ok
}

// Prune forgets entries whose tokens have all expired, in memory and in
// the store.
func (r *Revocations) Prune(ctx context.Context) error {
	now := r.now()
	if _, err := r.db.ExecContext(ctx, `DELETE FROM revoked_tokens WHERE expires_at <= $1`, store.Nanos(now)); err != nil {
		return fmt.Errorf("token: prune revocations: %w", err)
	}
	r.mu.Lock()
	for k, exp := range r.m {
		if !exp.After(now) {
			delete(r.m, k)
		}
	}
	r.mu.Unlock()
	return nil
}
