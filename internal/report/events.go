package report

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// Audit event types the reports read. The breakglass ones are written by
// the break-glass feature: breakglass.use (actor the user; target; data
// jti, account, reason, ttl_s) and breakglass.review (actor the reviewer;
// data jti of the use, note).
const (
	typeSessionStart     = "session.start"
	typeBreakglassUse    = "breakglass.use"
	typeBreakglassReview = "breakglass.review"
	typeRuleHit          = "rule.hit"
	typeSSHAuth          = "ssh.auth"
	typeRequestDenied    = "ssh.request_denied"
	typeIssueDenied      = "token.issue_denied"
	typeTokenVerify      = "token.verify"
)

// event is an audit event as the reports read it.
type event struct {
	seq                                 int64
	time                                time.Time
	typ, actor, target, session, source string
	data                                map[string]any
}

// str returns data[key] as text: strings as they are, numbers and other
// JSON values in JSON form, absent as "".
func (e *event) str(key string) string {
	switch v := e.data[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// num returns data[key] as a number, 0 when absent or not a number.
func (e *event) num(key string) float64 {
	f, _ := e.data[key].(float64)
	return f
}

// scanEvents calls fn for each audit event of one of types at or after
// since, in chain (seq) order, without holding them all in memory: token
// verifications alone can be many.
func (r *Reporter) scanEvents(ctx context.Context, since time.Time, types []string, fn func(*event) error) error {
	args := []any{store.Nanos(since)}
	marks := make([]string, len(types))
	for i, t := range types {
		args = append(args, t)
		marks[i] = "$" + strconv.Itoa(i+2)
	}
	rows, err := r.db.QueryContext(ctx, `SELECT seq, time, type, actor, target, session, source, data
		FROM audit_events WHERE time >= $1 AND type IN (`+strings.Join(marks, ", ")+`) ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("report: read audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e event
		var t int64
		var data string
		if err := rows.Scan(&e.seq, &t, &e.typ, &e.actor, &e.target, &e.session, &e.source, &data); err != nil {
			return fmt.Errorf("report: read audit events: %w", err)
		}
		e.time = store.Time(t)
		if err := json.Unmarshal([]byte(data), &e.data); err != nil {
			return fmt.Errorf("report: audit event %d: data: %w", e.seq, err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("report: read audit events: %w", err)
	}
	return nil
}

// breakglassJTIs returns the token IDs of every break-glass use on
// record, whenever it was: a session in the period may run on a token
// issued before it.
func (r *Reporter) breakglassJTIs(ctx context.Context) (map[string]bool, error) {
	jtis := map[string]bool{}
	err := r.scanEvents(ctx, time.Time{}, []string{typeBreakglassUse}, func(e *event) error {
		if j := e.str("jti"); j != "" {
			jtis[j] = true
		}
		return nil
	})
	return jtis, err
}
