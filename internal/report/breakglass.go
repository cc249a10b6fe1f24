package report

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Review states in BreakglassRow.Review.
const (
	Reviewed   = "reviewed"
	Unreviewed = "UNREVIEWED"
)

// BreakglassRow is one use of break-glass access: who took it, for which
// account and target, why, what sessions ran under it, and who reviewed
// it afterwards.
type BreakglassRow struct {
	Time    time.Time `json:"time"`
	User    string    `json:"user"`
	Account string    `json:"account"`
	Target  string    `json:"target"`
	Reason  string    `json:"reason"`
	// JTI is the break-glass token's ID; TTLS its lifetime in seconds.
	JTI  string `json:"jti"`
	TTLS int64  `json:"ttl_s"`
	// Sessions are the sessions that ran on the token, oldest first.
	Sessions     []string `json:"sessions"`
	SessionCount int      `json:"session_count"`
	// Review is Reviewed or Unreviewed; ReviewedBy, ReviewedAt and
	// ReviewNote are from the first breakglass.review of the use.
	Review     string    `json:"review"`
	ReviewedBy string    `json:"reviewed_by"`
	ReviewedAt time.Time `json:"reviewed_at,omitzero"`
	ReviewNote string    `json:"review_note"`
	// AuditSeq is the seq of the breakglass.use event in the audit trail.
	AuditSeq int64 `json:"audit_seq"`
}

var breakglassColumns = []string{"TIME", "USER", "ACCOUNT", "TARGET", "REASON", "TTL", "JTI", "SESSIONS", "SESSION IDS",
	"REVIEW", "REVIEWED BY", "REVIEWED AT", "REVIEW NOTE", "AUDIT SEQ"}

func (b BreakglassRow) cells() []string {
	ttl := ""
	if b.TTLS > 0 {
		ttl = (time.Duration(b.TTLS) * time.Second).String()
	}
	return []string{cellTime(b.Time), b.User, b.Account, b.Target, b.Reason, ttl, b.JTI, strconv.Itoa(b.SessionCount),
		strings.Join(b.Sessions, " "), b.Review, b.ReviewedBy, cellTime(b.ReviewedAt), b.ReviewNote, strconv.FormatInt(b.AuditSeq, 10)}
}

// Breakglass returns every break-glass use at or after since: unreviewed
// ones first, then oldest first. Reviews and sessions are matched
// whenever they happened.
func (r *Reporter) Breakglass(ctx context.Context, since time.Time) ([]BreakglassRow, error) {
	// The first review of each use (by its token's jti) is its review.
	reviews := map[string]*event{}
	err := r.scanEvents(ctx, time.Time{}, []string{typeBreakglassReview}, func(e *event) error {
		if j := e.str("jti"); j != "" && reviews[j] == nil {
			reviews[j] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []BreakglassRow{}
	var useSessions []string // the session each use event names, if any
	err = r.scanEvents(ctx, since, []string{typeBreakglassUse}, func(e *event) error {
		b := BreakglassRow{Time: e.time, User: e.actor, Account: e.str("account"), Target: e.target, Reason: e.str("reason"),
			JTI: e.str("jti"), TTLS: int64(e.num("ttl_s")), Review: Unreviewed, AuditSeq: e.seq, Sessions: []string{}}
		if rv := reviews[b.JTI]; rv != nil && b.JTI != "" {
			b.Review, b.ReviewedBy, b.ReviewedAt, b.ReviewNote = Reviewed, rv.actor, rv.time, rv.str("note")
		}
		out = append(out, b)
		useSessions = append(useSessions, e.session)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if err := r.tokenSessions(ctx, &out[i], useSessions[i]); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b BreakglassRow) int {
		if ua, ub := a.Review == Unreviewed, b.Review == Unreviewed; ua != ub {
			if ua {
				return -1
			}
			return 1
		}
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.AuditSeq, b.AuditSeq))
	})
	return out, nil
}

// tokenSessions sets b.Sessions to the sessions that ran on b's token,
// and the session its use event names (if any and not among them).
func (r *Reporter) tokenSessions(ctx context.Context, b *BreakglassRow, useSession string) error {
	if b.JTI != "" {
		rows, err := r.db.QueryContext(ctx, `SELECT id FROM sessions WHERE jti = $1 ORDER BY started_at, id`, b.JTI)
		if err != nil {
			return fmt.Errorf("report: sessions of break-glass token %s: %w", b.JTI, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("report: sessions of break-glass token %s: %w", b.JTI, err)
			}
			b.Sessions = append(b.Sessions, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("report: sessions of break-glass token %s: %w", b.JTI, err)
		}
	}
	if useSession != "" && !slices.Contains(b.Sessions, useSession) {
		b.Sessions = append(b.Sessions, useSession)
	}
	b.SessionCount = len(b.Sessions)
	return nil
}
