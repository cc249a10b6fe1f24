package alert

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/metrics"
	"github.com/vigil-pam/vigil/internal/store"
)

// DefaultWindow is the dedup window when NewStore is given zero.
const DefaultWindow = 5 * time.Minute

// List limits: a Filter without a Limit gets defaultLimit, and no Filter
// gets more than maxLimit.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// Errors a caller branches on.
var (
	// ErrNotFound is returned for an unknown alert id.
	ErrNotFound = errors.New("alert: no such alert")
	// ErrAcked is returned by Ack for an alert acknowledged before.
	ErrAcked = errors.New("alert: already acknowledged")
)

// columns is the column list every query of a whole alert reads, in the
// order scanAlert expects.
const columns = `id, time, last_time, severity, kind, rule, actor, target, session, source,
	summary, data, dedup_key, count, acked_by, acked_at, ack_note`

// Store keeps alerts in the state database. Create it with NewStore; it is
// safe for concurrent use, and concurrent Raises (from this process or
// another on the same database) are serialised by the database
// transaction.
type Store struct {
	db     *store.DB
	now    func() time.Time
	window time.Duration

	raisedTotal *prometheus.CounterVec
	mergedTotal *prometheus.CounterVec

	// mu guards raised.
	mu sync.Mutex
	// raised is closed, and replaced, each time an alert is inserted: a
	// dispatcher takes it before reading and waits on it after.
	raised chan struct{}
}

// NewStore returns the alert store over db. now may be nil (time.Now);
// window is the dedup window (0 means DefaultWindow); reg may be nil (no
// metrics are registered).
func NewStore(db *store.DB, now func() time.Time, window time.Duration, reg prometheus.Registerer) (*Store, error) {
	if db == nil {
		return nil, errors.New("alert: NewStore needs a database")
	}
	if window < 0 {
		return nil, fmt.Errorf("alert: dedup window %v is negative", window)
	}
	if window == 0 {
		window = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{
		db: db, now: now, window: window, raised: make(chan struct{}),
		raisedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_alerts_raised_total",
			Help: "Alerts raised (not counting repeats merged into an earlier alert) by kind and severity.",
		}, []string{"kind", "severity"}),
		mergedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_alerts_merged_total",
			Help: "Repeats merged into an earlier unacknowledged alert with the same dedup key, by kind.",
		}, []string{"kind"}),
	}
	var err error
	if s.raisedTotal, err = metrics.Register(reg, s.raisedTotal); err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	if s.mergedTotal, err = metrics.Register(reg, s.mergedTotal); err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	return s, nil
}

// Raise stores a, or merges it into a recent unacknowledged alert with the
// same DedupKey, durably before returning, and returns the stored alert;
// merged reports whether it was merged. A merge counts the occurrence
// (Count, LastTime) and keeps the earlier alert's id, summary and data; it
// is not delivered to sinks again. An alert more severe than the one it
// would merge into is raised on its own, so a repeat never hides an
// escalation. A new alert wakes the dispatchers.
//
// a.Kind, a.Summary and a valid a.Severity are required; a zero a.Time
// means now. ID, LastTime, Count and the acknowledgement fields of a are
// ignored.
func (s *Store) Raise(ctx context.Context, a Alert) (stored Alert, merged bool, err error) {
	if err := a.validate(); err != nil {
		return Alert{}, false, err
	}
	if a.Time.IsZero() {
		a.Time = s.now()
	}
	a.Time = store.Time(store.Nanos(a.Time))
	a.LastTime, a.Count = a.Time, 1
	a.AckedBy, a.AckedAt, a.AckNote = "", time.Time{}, ""
	data, err := encodeData(a.Data)
	if err != nil {
		return Alert{}, false, err
	}
	// Read the evidence back as Get will, so the caller sees what is stored.
	if a.Data, err = decodeData(data); err != nil {
		return Alert{}, false, err
	}

	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		if a.DedupKey != "" {
			m, ok, err := s.merge(ctx, tx, &a)
			if err != nil {
				return err
			}
			if ok {
				stored, merged = m, true
				return nil
			}
		}
		// Ids are allocated as MAX(id)+1 inside the writing transaction, so
		// id N+1 can exist only once N is committed: a dispatcher that has
		// seen N may safely wait for ids above it. On PostgreSQL two
		// racing Raises collide on the primary key and one fails rather
		// than commit out of order; do not replace this with a sequence.
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM alerts`).Scan(&a.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO alerts (`+columns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
			a.ID, store.Nanos(a.Time), store.Nanos(a.LastTime), string(a.Severity), a.Kind, a.Rule,
			a.Actor, a.Target, a.Session, a.Source, a.Summary, data, a.DedupKey, a.Count, "", int64(0), "")
		stored, merged = a, false
		return err
	})
	if err != nil {
		return Alert{}, false, fmt.Errorf("alert: raise %s alert: %w", a.Kind, err)
	}
	if merged {
		s.mergedTotal.WithLabelValues(a.Kind).Inc()
		return stored, true, nil
	}
	s.raisedTotal.WithLabelValues(a.Kind, string(a.Severity)).Inc()
	s.notify()
	return stored, false, nil
}

// merge counts a into the latest unacknowledged alert with its dedup key,
// at least as severe, whose last occurrence is within the window of a's
// time; ok is false when there is none.
func (s *Store) merge(ctx context.Context, tx *sql.Tx, a *Alert) (stored Alert, ok bool, err error) {
	at := store.Nanos(a.Time)
	args := []any{a.DedupKey, at - s.window.Nanoseconds()}
	q := `SELECT id FROM alerts WHERE dedup_key = $1 AND last_time >= $2 AND acked_at = 0 AND severity IN (` +
		placeholders(&args, atLeast(a.Severity)) + `) ORDER BY last_time DESC, id DESC LIMIT 1`
	var id int64
	switch err := tx.QueryRowContext(ctx, q, args...).Scan(&id); {
	case errors.Is(err, sql.ErrNoRows):
		return Alert{}, false, nil
	case err != nil:
		return Alert{}, false, err
	}
	// count = count + 1 in SQL, not in Go, so that concurrent merges on a
	// database without SQLite's whole-database write lock lose nothing.
	if _, err := tx.ExecContext(ctx, `UPDATE alerts SET count = count + 1,
		last_time = CASE WHEN last_time < $1 THEN $1 ELSE last_time END
		WHERE id = $2`, at, id); err != nil {
		return Alert{}, false, err
	}
	stored, err = get(ctx, tx, id)
	return stored, err == nil, err
}

// placeholders appends vals to args and returns their "$N, $M" list.
func placeholders[T any](args *[]any, vals []T) string {
	ph := make([]string, len(vals))
	for i, v := range vals {
		*args = append(*args, v)
		ph[i] = fmt.Sprintf("$%d", len(*args))
	}
	return strings.Join(ph, ", ")
}

// notify wakes everything waiting on the current raised channel.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.raised)
	s.raised = make(chan struct{})
	s.mu.Unlock()
}

// wakeup returns a channel closed at the next insert. Take it before
// reading the table, so an insert between the read and the wait still
// wakes the reader.
func (s *Store) wakeup() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raised
}

// Filter selects alerts for List. The zero Filter selects the latest 100
// alerts.
type Filter struct {
	// Since keeps alerts with an occurrence (LastTime) at or after it;
	// zero means no bound.
	Since time.Time
	// MinSeverity keeps alerts at least this severe; empty means all.
	MinSeverity Severity
	// Kind and Session keep alerts with exactly this kind or session;
	// empty means any.
	Kind    string
	Session string
	// Unacked keeps only unacknowledged alerts.
	Unacked bool
	// BeforeID keeps alerts with a smaller id, for paging backwards from
	// the last id of a previous page; zero means no bound.
	BeforeID int64
	// Limit bounds the number returned: 0 means 100, and at most 1000.
	Limit int
}

// List returns the alerts f selects, newest (highest id) first.
func (s *Store) List(ctx context.Context, f Filter) ([]Alert, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !f.Since.IsZero() {
		add("last_time >= $%d", store.Nanos(f.Since))
	}
	if f.MinSeverity != "" {
		if f.MinSeverity.Rank() == 0 {
			return nil, fmt.Errorf("alert: list: unknown severity %q", f.MinSeverity)
		}
		where = append(where, "severity IN ("+placeholders(&args, atLeast(f.MinSeverity))+")")
	}
	if f.Kind != "" {
		add("kind = $%d", f.Kind)
	}
	if f.Session != "" {
		add("session = $%d", f.Session)
	}
	if f.Unacked {
		where = append(where, "acked_at = 0")
	}
	if f.BeforeID > 0 {
		add("id < $%d", f.BeforeID)
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = defaultLimit
	case limit > maxLimit:
		limit = maxLimit
	}
	q := `SELECT ` + columns + ` FROM alerts`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	out, err := query(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("alert: list: %w", err)
	}
	return out, nil
}

// Get returns the alert with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Alert, error) {
	a, err := get(ctx, s.db, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Alert{}, fmt.Errorf("alert: get %d: %w", id, err)
	}
	return a, err
}

// Ack acknowledges alert id on behalf of by, with an optional note, and
// returns it. It returns ErrNotFound for an unknown id, and ErrAcked with
// the stored alert if it was acknowledged before (the first
// acknowledgement stands). An acknowledged alert no longer absorbs
// repeats: the next occurrence raises a new alert.
func (s *Store) Ack(ctx context.Context, id int64, by, note string) (Alert, error) {
	if by == "" {
		return Alert{}, errors.New("alert: an acknowledgement needs who made it")
	}
	var a Alert
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = get(ctx, tx, id); err != nil {
			return err
		}
		if a.Acked() {
			return ErrAcked
		}
		a.AckedBy, a.AckedAt, a.AckNote = by, store.Time(store.Nanos(s.now())), note
		// acked_at = 0 keeps the first acknowledgement on a database where
		// two could race.
		res, err := tx.ExecContext(ctx, `UPDATE alerts SET acked_by = $1, acked_at = $2, ack_note = $3
			WHERE id = $4 AND acked_at = 0`, a.AckedBy, store.Nanos(a.AckedAt), a.AckNote, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			if a, err = get(ctx, tx, id); err != nil {
				return err
			}
			return ErrAcked
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Alert{}, ErrNotFound
	case errors.Is(err, ErrAcked):
		return a, ErrAcked
	case err != nil:
		return Alert{}, fmt.Errorf("alert: ack %d: %w", id, err)
	}
	return a, nil
}

// after returns up to limit alerts with ids above id, oldest first: what a
// sink whose cursor is at id has still to handle.
func (s *Store) after(ctx context.Context, id int64, limit int) ([]Alert, error) {
	return query(ctx, s.db, `SELECT `+columns+` FROM alerts WHERE id > $1 ORDER BY id LIMIT $2`, id, limit)
}

// maxID returns the highest alert id, 0 when there are none.
func (s *Store) maxID(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM alerts`).Scan(&id)
	return id, err
}

// queryer is what reading an alert needs: a *store.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// get reads one alert; ErrNotFound if there is none.
func get(ctx context.Context, q queryer, id int64) (Alert, error) {
	a, err := scanAlert(q.QueryRowContext(ctx, `SELECT `+columns+` FROM alerts WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, ErrNotFound
	}
	return a, err
}

// query reads the alerts a query of columns returns.
func query(ctx context.Context, q queryer, sqlText string, args ...any) ([]Alert, error) {
	rows, err := q.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// scanAlert reads one row of columns.
func scanAlert(row interface{ Scan(...any) error }) (Alert, error) {
	var a Alert
	var t, last, acked int64
	var sev, data string
	if err := row.Scan(&a.ID, &t, &last, &sev, &a.Kind, &a.Rule, &a.Actor, &a.Target, &a.Session, &a.Source,
		&a.Summary, &data, &a.DedupKey, &a.Count, &a.AckedBy, &acked, &a.AckNote); err != nil {
		return Alert{}, err
	}
	a.Time, a.LastTime, a.AckedAt, a.Severity = store.Time(t), store.Time(last), store.Time(acked), Severity(sev)
	var err error
	if a.Data, err = decodeData(data); err != nil {
		return Alert{}, fmt.Errorf("alert %d: %w", a.ID, err)
	}
	return a, nil
}

// encodeData is the stored form of an alert's evidence: JSON, "{}" when
// empty.
func encodeData(d map[string]any) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("alert: data: %w", err)
	}
	return string(b), nil
}

// decodeData reverses encodeData; empty evidence reads back as nil.
func decodeData(s string) (map[string]any, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("alert: data: %w", err)
	}
	if len(d) == 0 {
		return nil, nil
	}
	return d, nil
}
