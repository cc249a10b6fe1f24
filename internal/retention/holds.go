package retention

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-pam/vigil/internal/store"
)

// Bounds on what a hold names.
const (
	// maxSelector bounds a hold's session ID, target name or user.
	maxSelector = 256
	// maxReason bounds a hold's reason.
	maxReason = 1024
)

// Hold is a legal hold: while it is not released, no recording it covers
// is disposed of, however old. It names exactly one of Session, Target and
// Subject. A hold on a target or a user covers that target's or user's
// sessions from before the hold was placed and from after.
type Hold struct {
	ID string `json:"id"`
	// Session, Target and Subject select the recordings held; exactly
	// one is set. Target may name a target that no longer exists (its
	// past sessions remain).
	Session string `json:"session,omitempty"`
	Target  string `json:"target,omitempty"`
	Subject string `json:"user,omitempty"`
	// Reason says why (a case or ticket number); required.
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is who placed the hold; Add requires it.
	CreatedBy string `json:"created_by"`
	// ReleasedAt is when the hold was released; zero while in force.
	ReleasedAt time.Time `json:"released_at,omitzero"`
	ReleasedBy string    `json:"released_by,omitempty"`
}

// Active reports whether the hold is in force (not released).
func (h *Hold) Active() bool { return h.ReleasedAt.IsZero() }

// Covers reports whether the hold, while in force, keeps the recording of
// session id, on target, by user.
func (h *Hold) Covers(id, target, user string) bool {
	return (h.Session != "" && h.Session == id) ||
		(h.Target != "" && h.Target == target) ||
		(h.Subject != "" && h.Subject == user)
}

// Errors of the hold store; a caller branches on them with errors.Is.
var (
	// ErrInvalidHold wraps every reason a hold is refused by Add.
	ErrInvalidHold = errors.New("retention: invalid hold")
	// ErrNoHold is returned for an unknown hold ID.
	ErrNoHold = errors.New("retention: no such hold")
	// ErrReleased is returned when releasing a hold already released.
	ErrReleased = errors.New("retention: hold already released")
)

// Holds is the legal hold store (table legal_holds). Holds are never
// deleted: a release is recorded on the hold, so the list of holds ever
// placed stays complete.
type Holds struct {
	db  *store.DB
	now func() time.Time
}

// NewHolds returns the hold store over db; now may be nil (time.Now).
func NewHolds(db *store.DB, now func() time.Time) *Holds {
	if now == nil {
		now = time.Now
	}
	return &Holds{db: db, now: now}
}

func newHoldID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "h_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// checkText refuses an empty, over-long, padded or control-character
// value for field.
func checkText(field, v string, max int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidHold, field)
	case len(v) > max:
		return fmt.Errorf("%w: %s is over %d bytes", ErrInvalidHold, field, max)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %s has control characters", ErrInvalidHold, field)
	}
	return nil
}

// Add places h and returns it with its ID and creation time. h names
// exactly one of Session, Target and Subject, a Reason, and CreatedBy
// (who places it). A session must exist and still have its recording; a target or
// user may be any name (a deleted target's sessions can still be held).
// Refusals wrap ErrInvalidHold.
func (s *Holds) Add(ctx context.Context, h Hold) (Hold, error) {
	set := 0
	for _, v := range []string{h.Session, h.Target, h.Subject} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return Hold{}, fmt.Errorf("%w: name exactly one of session, target and user", ErrInvalidHold)
	}
	for _, f := range []struct{ name, v string }{{"session", h.Session}, {"target", h.Target}, {"user", h.Subject}} {
		if f.v != "" {
			if err := checkText(f.name, f.v, maxSelector); err != nil {
				return Hold{}, err
			}
			if strings.TrimSpace(f.v) != f.v {
				return Hold{}, fmt.Errorf("%w: %s %q has leading or trailing space", ErrInvalidHold, f.name, f.v)
			}
		}
	}
	if err := checkText("reason", h.Reason, maxReason); err != nil {
		return Hold{}, fmt.Errorf("%w (a hold needs a reason, such as a case number)", err)
	}
	if h.CreatedBy == "" {
		return Hold{}, fmt.Errorf("%w: who places the hold is not known", ErrInvalidHold)
	}
	if h.Session != "" {
		var disposed int64
		err := s.db.QueryRowContext(ctx, `SELECT disposed_at FROM sessions WHERE id = $1`, h.Session).Scan(&disposed)
		if errors.Is(err, sql.ErrNoRows) {
			return Hold{}, fmt.Errorf("%w: no session %s", ErrInvalidHold, h.Session)
		}
		if err != nil {
			return Hold{}, fmt.Errorf("retention: add hold: look up session %s: %w", h.Session, err)
		}
		if disposed != 0 {
			return Hold{}, fmt.Errorf("%w: the recording of session %s was already disposed of at %s", ErrInvalidHold,
				h.Session, store.Time(disposed).Format(time.RFC3339))
		}
	}
	h.ID, h.CreatedAt = newHoldID(), s.now().UTC()
	h.ReleasedAt, h.ReleasedBy = time.Time{}, ""
	_, err := s.db.ExecContext(ctx, `INSERT INTO legal_holds
		(id, session, target, subject, reason, created_at, created_by, released_at, released_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 0, '')`,
		h.ID, h.Session, h.Target, h.Subject, h.Reason, store.Nanos(h.CreatedAt), h.CreatedBy)
	if err != nil {
		return Hold{}, fmt.Errorf("retention: add hold: %w", err)
	}
	return h, nil
}

const holdColumns = `id, session, target, subject, reason, created_at, created_by, released_at, released_by`

func scanHold(row interface{ Scan(...any) error }) (Hold, error) {
	var h Hold
	var created, released int64
	if err := row.Scan(&h.ID, &h.Session, &h.Target, &h.Subject, &h.Reason, &created, &h.CreatedBy, &released, &h.ReleasedBy); err != nil {
		return Hold{}, err
	}
	h.CreatedAt, h.ReleasedAt = store.Time(created), store.Time(released)
	return h, nil
}

// Get returns the hold with id, released or not.
func (s *Holds) Get(ctx context.Context, id string) (Hold, error) {
	h, err := scanHold(s.db.QueryRowContext(ctx, `SELECT `+holdColumns+` FROM legal_holds WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Hold{}, ErrNoHold
	}
	if err != nil {
		return Hold{}, fmt.Errorf("retention: get hold %s: %w", id, err)
	}
	return h, nil
}

// List returns the holds in force, oldest first; with includeReleased,
// released ones too.
func (s *Holds) List(ctx context.Context, includeReleased bool) ([]Hold, error) {
	q := `SELECT ` + holdColumns + ` FROM legal_holds`
	if !includeReleased {
		q += ` WHERE released_at = 0`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("retention: list holds: %w", err)
	}
	defer rows.Close()
	out := []Hold{}
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, fmt.Errorf("retention: list holds: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: list holds: %w", err)
	}
	return out, nil
}

// Release ends hold id on behalf of by and returns it as released. The
// recordings it kept become subject to their retention again (and are
// disposed of by the next sweep if already expired).
func (s *Holds) Release(ctx context.Context, id, by string) (Hold, error) {
	if by == "" {
		return Hold{}, errors.New("retention: release hold: who releases it is not known")
	}
	now := s.now().UTC()
	res, err := s.db.ExecContext(ctx, `UPDATE legal_holds SET released_at = $2, released_by = $3 WHERE id = $1 AND released_at = 0`,
		id, store.Nanos(now), by)
	if err != nil {
		return Hold{}, fmt.Errorf("retention: release hold %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Hold{}, fmt.Errorf("retention: release hold %s: %w", id, err)
	}
	h, err := s.Get(ctx, id)
	if err != nil {
		return Hold{}, err
	}
	if n == 0 {
		return h, ErrReleased
	}
	return h, nil
}

// covering returns a hold in force that covers the recording of session
// id, on target, by user, or nil. The sweeper asks it right before it
// disposes of a recording, so a hold placed during a sweep is honoured.
func (s *Holds) covering(ctx context.Context, id, target, user string) (*Hold, error) {
	h, err := scanHold(s.db.QueryRowContext(ctx, `SELECT `+holdColumns+` FROM legal_holds
		WHERE released_at = 0 AND ((session <> '' AND session = $1) OR (target <> '' AND target = $2) OR (subject <> '' AND subject = $3))
		ORDER BY created_at, id LIMIT 1`, id, target, user))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retention: check holds on session %s: %w", id, err)
	}
	return &h, nil
}
