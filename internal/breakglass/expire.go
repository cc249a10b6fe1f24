package breakglass

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

// expireReason is what the users of an expired break-glass token's live
// sessions see (they were warned before by the gateway's expiry warning).
const expireReason = "break-glass access expired"

// Run revokes break-glass tokens as their TTL ends, until ctx ends: at
// each token's exp it is put on the deny list (so no clock skew leeway
// keeps it alive), its live sessions on this node are ended, and
// breakglass.expire is audited. Uses that expired while Vigil was down are
// revoked at once.
func (s *Service) Run(ctx context.Context) {
	for {
		next, err := s.ExpireDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("break-glass expiry", "err", err)
		}
		wait := expirePoll
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.now()), 0))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// ExpireDue revokes every use whose token has expired and was not revoked
// yet, and returns when the next one expires (zero if none is pending).
func (s *Service) ExpireDue(ctx context.Context) (next time.Time, err error) {
	now := s.now()
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT `+useColumns+` FROM breakglass_uses
		WHERE expired_at = 0 AND expires_at <= $1 ORDER BY expires_at`, store.Nanos(now))
	if err != nil {
		return time.Time{}, fmt.Errorf("breakglass: expired uses: %w", err)
	}
	var due []Use
	for rows.Next() {
		u, err := scanUse(rows)
		if err != nil {
			rows.Close()
			return time.Time{}, fmt.Errorf("breakglass: expired uses: %w", err)
		}
		due = append(due, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return time.Time{}, fmt.Errorf("breakglass: expired uses: %w", err)
	}
	for _, u := range due {
		if err := s.expire(ctx, u, now); err != nil {
			return time.Time{}, err
		}
	}
	var n sql.NullInt64
	if err := s.cfg.DB.QueryRowContext(ctx, `SELECT MIN(expires_at) FROM breakglass_uses WHERE expired_at = 0`).Scan(&n); err != nil {
		return time.Time{}, fmt.Errorf("breakglass: next expiry: %w", err)
	}
	if n.Valid {
		next = store.Time(n.Int64)
	}
	return next, nil
}

// expire revokes u's token, ends its live sessions here and, once (the
// compare-and-swap on expired_at), audits breakglass.expire.
func (s *Service) expire(ctx context.Context, u Use, now time.Time) error {
	if err := s.cfg.Revocations.Revoke(ctx, token.Revocation{Issuer: s.cfg.Issuer, JTI: u.JTI, RevokedAt: now,
		ExpiresAt: u.ExpiresAt.Add(token.MaxLeeway), RevokedBy: "vigil", Reason: expireReason}); err != nil {
		return fmt.Errorf("breakglass: revoke expired %s: %w", u.JTI, err)
	}
	ended := 0
	if s.cfg.Live != nil {
		ended = s.cfg.Live.EndMatching(func(l *session.Live) bool {
			return l.Issuer == s.cfg.Issuer && l.Info.JTI == u.JTI
		}, "vigil", expireReason)
	}
	res, err := s.cfg.DB.ExecContext(ctx, `UPDATE breakglass_uses SET expired_at = $1 WHERE jti = $2 AND expired_at = 0`,
		store.Nanos(now), u.JTI)
	if err != nil {
		return fmt.Errorf("breakglass: mark %s expired: %w", u.JTI, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil // another node got there first
	}
	err = s.record(ctx, audit.Event{Time: now, Type: EventExpire, Actor: "vigil", Target: u.Target, Data: map[string]any{
		"jti": u.JTI, "account": u.Account, "user": u.User, "exp": u.ExpiresAt.Unix(), "ended_sessions": ended}})
	if err != nil {
		// Try again next round: the revocation is idempotent.
		s.cfg.DB.ExecContext(context.WithoutCancel(ctx), `UPDATE breakglass_uses SET expired_at = 0 WHERE jti = $1 AND expired_at = $2`,
			u.JTI, store.Nanos(now))
		return err
	}
	s.cfg.Log.Info("break-glass token expired and revoked", "jti", u.JTI, "account", u.Account, "user", u.User, "ended_sessions", ended)
	return nil
}
