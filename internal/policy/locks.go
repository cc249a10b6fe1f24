package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// Lock bars a user or a target: no new session matches it, and live ones
// that match are ended when it is added.
type Lock struct {
	ID string `json:"id"`
	// Exactly one of Subject and Target is set.
	Subject string `json:"user,omitempty"`
	Target  string `json:"target,omitempty"`
	Reason  string `json:"reason"`
	// ExpiresAt is when the lock lapses; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// Matches reports whether the lock bars user on target.
func (l *Lock) Matches(user, target string) bool {
	return (l.Subject != "" && l.Subject == user) || (l.Target != "" && l.Target == target)
}

// Locks is the lock store.
type Locks struct {
	db  *store.DB
	now func() time.Time
}

// NewLocks returns the store over db; now may be nil.
func NewLocks(db *store.DB, now func() time.Time) *Locks {
	if now == nil {
		now = time.Now
	}
	return &Locks{db: db, now: now}
}

// ErrNoLock is returned for an unknown lock ID.
var ErrNoLock = errors.New("policy: no such lock")

// Add stores l (with ttl > 0, lapsing after it) and returns it.
func (s *Locks) Add(ctx context.Context, l Lock, ttl time.Duration) (Lock, error) {
	if (l.Subject == "") == (l.Target == "") {
		return Lock{}, errors.New("policy: a lock names exactly one of user and target")
	}
	if l.Reason == "" {
		return Lock{}, errors.New("policy: a lock needs a reason")
	}
	if ttl < 0 {
		return Lock{}, errors.New("policy: lock ttl must not be negative")
	}
	l.ID, l.CreatedAt = "l_"+newID()[2:], s.now().UTC()
	if ttl > 0 {
		l.ExpiresAt = l.CreatedAt.Add(ttl)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO locks (id, subject, target, reason, created_at, expires_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, l.ID, l.Subject, l.Target, l.Reason, store.Nanos(l.CreatedAt), store.Nanos(l.ExpiresAt), l.CreatedBy)
	if err != nil {
		return Lock{}, fmt.Errorf("policy: add lock: %w", err)
	}
	return l, nil
}

// Remove deletes a lock.
func (s *Locks) Remove(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM locks WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("policy: remove lock %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoLock
	}
	return nil
}

// Active returns the locks in force now.
func (s *Locks) Active(ctx context.Context) ([]Lock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, subject, target, reason, created_at, expires_at, created_by
		FROM locks WHERE expires_at = 0 OR expires_at > $1 ORDER BY created_at, id`, store.Nanos(s.now()))
	if err != nil {
		return nil, fmt.Errorf("policy: list locks: %w", err)
	}
	defer rows.Close()
	out := []Lock{}
	for rows.Next() {
		var l Lock
		var created, expires int64
		if err := rows.Scan(&l.ID, &l.Subject, &l.Target, &l.Reason, &created, &expires, &l.CreatedBy); err != nil {
			return nil, fmt.Errorf("policy: list locks: %w", err)
		}
		l.CreatedAt, l.ExpiresAt = store.Time(created), store.Time(expires)
		out = append(out, l)
	}
	return out, rows.Err()
}

// Locked returns the first lock in force that bars user on target.
func (s *Locks) Locked(ctx context.Context, user, target string) (*Lock, error) {
	locks, err := s.Active(ctx)
	if err != nil {
		return nil, err
	}
	for i := range locks {
		if locks[i].Matches(user, target) {
			return &locks[i], nil
		}
	}
	return nil, nil
}
