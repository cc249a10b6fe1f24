package breakglass

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
)

// useColumns is what scanUse reads, in order.
const useColumns = `jti, account, generation, subject, target, login, reason, ttl, time, expires_at, source, alert_id,
	expired_at, reviewed_by, reviewed_at, note`

func scanUse(row interface{ Scan(...any) error }) (Use, error) {
	var u Use
	var ttl, t, exp, expired, reviewed int64
	if err := row.Scan(&u.JTI, &u.Account, &u.Generation, &u.User, &u.Target, &u.Login, &u.Reason, &ttl, &t, &exp, &u.Source,
		&u.AlertID, &expired, &u.ReviewedBy, &reviewed, &u.Note); err != nil {
		return u, err
	}
	u.TTL = time.Duration(ttl)
	u.Time, u.ExpiresAt, u.ExpiredAt, u.ReviewedAt = store.Time(t), store.Time(exp), store.Time(expired), store.Time(reviewed)
	return u, nil
}

// UseFilter selects uses for Uses. The zero UseFilter selects the latest
// 1000.
type UseFilter struct {
	// Unreviewed keeps only uses not reviewed yet.
	Unreviewed bool
	// Account keeps only the uses of this account; empty means any.
	Account string
}

// Uses lists break-glass uses, newest first, at most 1000.
func (s *Service) Uses(ctx context.Context, f UseFilter) ([]Use, error) {
	q := `SELECT ` + useColumns + ` FROM breakglass_uses WHERE 1 = 1`
	var args []any
	if f.Unreviewed {
		q += ` AND reviewed_at = 0`
	}
	if f.Account != "" {
		args = append(args, f.Account)
		q += fmt.Sprintf(` AND account = $%d`, len(args))
	}
	rows, err := s.cfg.DB.QueryContext(ctx, q+` ORDER BY time DESC, jti LIMIT 1000`, args...)
	if err != nil {
		return nil, fmt.Errorf("breakglass: list uses: %w", err)
	}
	defer rows.Close()
	out := []Use{}
	for rows.Next() {
		u, err := scanUse(rows)
		if err != nil {
			return nil, fmt.Errorf("breakglass: list uses: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("breakglass: list uses: %w", err)
	}
	return out, nil
}

// Use returns the use with the token ID jti, or ErrUseNotFound.
func (s *Service) Use(ctx context.Context, jti string) (Use, error) {
	u, err := scanUse(s.cfg.DB.QueryRowContext(ctx, `SELECT `+useColumns+` FROM breakglass_uses WHERE jti = $1`, jti))
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrUseNotFound
	}
	if err != nil {
		return u, fmt.Errorf("breakglass: read use %s: %w", jti, err)
	}
	return u, nil
}

// Review records the post-incident review of the use jti by someone
// other than its user: audited (breakglass.review) before it is stored,
// and the use's alert acknowledged, so the use leaves the unacknowledged
// alerts and reads "reviewed" in the breakglass report. A use is reviewed
// once.
func (s *Service) Review(ctx context.Context, jti, by, note, source string) (Use, error) {
	note = strings.TrimSpace(note)
	switch {
	case by == "":
		return Use{}, errors.New("breakglass: a review needs who makes it")
	case note == "":
		return Use{}, invalid("a review note is required")
	case len(note) > maxNote:
		return Use{}, invalid("the review note is over %d bytes", maxNote)
	}
	u, err := s.Use(ctx, jti)
	if err != nil {
		return u, err
	}
	switch {
	case u.Reviewed():
		return u, fmt.Errorf("%w by %s at %s", ErrReviewed, u.ReviewedBy, u.ReviewedAt.UTC().Format(time.RFC3339))
	case strings.EqualFold(strings.TrimSpace(by), strings.TrimSpace(u.User)):
		return u, ErrSelfReview
	case by == SharedAdmin:
		// The bootstrap admin token is shared: a review must name a
		// person.
		return u, invalid("review with a personal admin token (vigil token issue --user YOU --role admin), not the shared %q one", SharedAdmin)
	}
	if err := s.record(ctx, audit.Event{Type: EventReview, Actor: by, Target: u.Target, Source: source, Data: map[string]any{
		"jti": u.JTI, "note": note, "account": u.Account, "user": u.User}}); err != nil {
		return u, err
	}
	now := s.now()
	res, err := s.cfg.DB.ExecContext(ctx, `UPDATE breakglass_uses SET reviewed_by = $1, reviewed_at = $2, note = $3
		WHERE jti = $4 AND reviewed_at = 0`, by, store.Nanos(now), note, u.JTI)
	if err != nil {
		return u, fmt.Errorf("breakglass: review %s: %w", u.JTI, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return u, ErrReviewed // a concurrent review won; the first one stands
	}
	u.ReviewedBy, u.ReviewedAt, u.Note = by, store.Time(store.Nanos(now)), note
	if u.AlertID != 0 {
		_, err := s.cfg.Alerts.Ack(context.WithoutCancel(ctx), u.AlertID, by, "break-glass use reviewed: "+note)
		if err != nil && !errors.Is(err, alert.ErrAcked) {
			s.cfg.Log.Error("break-glass use reviewed but its alert not acknowledged", "jti", u.JTI, "alert", u.AlertID, "err", err)
		}
	}
	s.cfg.Log.Info("break-glass use reviewed", "jti", u.JTI, "by", by)
	return u, nil
}
