// Package audit owns Vigil's audit trail: the one place events are
// appended. Every append is durable before Append returns (group commit: a
// single writer batches concurrent appends into one transaction), and every
// event is linked to its predecessor by a SHA-256 hash chain
// (hash = SHA-256(prev_hash ‖ canonical event)).
//
// It does not decide what is worth auditing; callers do. Signed
// checkpoints, verification, search and export build on this package.
package audit

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// Event is one audit record. Seq, PrevHash and Hash are assigned by Append.
type Event struct {
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`
	Target  string         `json:"target"`
	Session string         `json:"session"`
	Source  string         `json:"source"`
	Data    map[string]any `json:"data"`
	// PrevHash and Hash are hex-encoded SHA-256 values.
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Sink is what a component that records events needs: the narrow interface
// the token service and the API take, so tests can count events.
type Sink interface {
	Append(ctx context.Context, ev Event) error
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log is closed")

// maxBatch bounds one group commit; larger bursts take several.
const maxBatch = 512

type pending struct {
	ev   Event
	done chan error
}

// Log appends events to the audit_events table. Create it with Open; it is
// safe for concurrent use.
type Log struct {
	db  *store.DB
	now func() time.Time
	in  chan *pending

	// closeMu guards closed against Append racing Close.
	closeMu sync.RWMutex
	closed  bool
	stopped chan struct{}

	// seq and last are owned by the writer goroutine after Open.
	seq  int64
	last string

	// headMu guards head and changed: the last committed seq, and a
	// channel closed (and replaced) at each commit.
	headMu  sync.Mutex
	head    int64
	changed chan struct{}
}

// Open returns a Log appending to db, continuing its chain. now may be nil
// for time.Now.
func Open(ctx context.Context, db *store.DB, now func() time.Time) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	l := &Log{db: db, now: now, in: make(chan *pending, maxBatch), stopped: make(chan struct{}), changed: make(chan struct{})}
	err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&l.seq, &l.last)
	if err != nil && err != sql.ErrNoRows {
		return nil, fmt.Errorf("audit: read chain head: %w", err)
	}
	l.head = l.seq
	go l.write()
	return l, nil
}

// Head returns the seq of the last durable event (0 for an empty log).
func (l *Log) Head() int64 {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.head
}

// Changed returns a channel that is closed when more events are durable;
// consumers (forwarders, live search) wait on it instead of polling.
func (l *Log) Changed() <-chan struct{} {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.changed
}

func (l *Log) advance(seq int64) {
	l.headMu.Lock()
	l.head = seq
	close(l.changed)
	l.changed = make(chan struct{})
	l.headMu.Unlock()
}

// Append records ev and returns once it is durable. ev.Time is set when
// zero. An error means the event is not recorded and the action it
// describes must not proceed.
func (l *Log) Append(ctx context.Context, ev Event) error {
	if ev.Type == "" {
		return errors.New("audit: event without a type")
	}
	if ev.Time.IsZero() {
		ev.Time = l.now()
	}
	p := &pending{ev: ev, done: make(chan error, 1)}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case l.in <- p:
		l.closeMu.RUnlock()
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return fmt.Errorf("audit: append %s: %w", ev.Type, ctx.Err())
	}
	// Once queued the event will be written or fail; wait for the outcome
	// even if ctx ends, so the caller never guesses.
	return <-p.done
}

// Close stops accepting events, writes those queued, and returns.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if !l.closed {
		l.closed = true
		close(l.in)
	}
	l.closeMu.Unlock()
	<-l.stopped
	return nil
}

func (l *Log) write() {
	defer close(l.stopped)
	batch := make([]*pending, 0, maxBatch)
	for p := range l.in {
		batch = append(batch[:0], p)
	drain:
		for len(batch) < maxBatch {
			select {
			case q, ok := <-l.in:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		err := l.commit(batch)
		for _, q := range batch {
			q.done <- err
		}
	}
}

// commit writes batch in one transaction; on failure the chain head is
// left where it was so the next batch links to the last durable event.
func (l *Log) commit(batch []*pending) error {
	seq, last := l.seq, l.last
	rows := make([]Event, len(batch))
	for i, p := range batch {
		ev := p.ev
		seq++
		ev.Seq = seq
		ev.PrevHash = last
		ev.Hash = Hash(last, &ev)
		last = ev.Hash
		rows[i] = ev
	}
	// The write must finish even if the appenders gave up: their events
	// are in this batch with others'.
	ctx := context.Background()
	err := l.db.Tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events
			(seq, time, type, actor, target, session, source, data, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range rows {
			ev := &rows[i]
			if _, err := stmt.ExecContext(ctx, ev.Seq, ev.Time.UnixNano(), ev.Type, ev.Actor, ev.Target,
				ev.Session, ev.Source, string(canonicalData(ev.Data)), ev.PrevHash, ev.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: append: %w", err)
	}
	l.seq, l.last = seq, last
	l.advance(seq)
	return nil
}

// canonicalData is the stored and hashed form of an event's data: JSON
// with object keys sorted (encoding/json sorts map keys), "{}" when empty.
func canonicalData(d map[string]any) []byte {
	if len(d) == 0 {
		return []byte("{}")
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Callers put plain values in Data; a value that cannot be
		// encoded is recorded as such rather than dropping the event.
		b, _ = json.Marshal(map[string]string{"encoding_error": err.Error()})
	}
	return b
}

// Hash returns hex(SHA-256(prevHash ‖ canonical(ev))) where canonical is
// the JSON array [seq, time (Unix ns), type, actor, target, session,
// source, data].
func Hash(prevHash string, ev *Event) string {
	canon, _ := json.Marshal([]any{ev.Seq, ev.Time.UnixNano(), ev.Type, ev.Actor, ev.Target,
		ev.Session, ev.Source, json.RawMessage(canonicalData(ev.Data))})
	h := sha256.New()
	h.Write([]byte(prevHash))
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// After returns up to limit events with seq greater than after, in seq
// order: what a forwarder with a cursor reads next.
func (l *Log) After(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT seq, time, type, actor, target, session, source, data, prev_hash, hash
		FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: read after %d: %w", after, err)
	}
	return scanEvents(rows)
}

// Query selects events; zero fields do not filter.
type Query struct {
	Type  string
	Actor string
	Since time.Time
	// Limit caps the result; 0 means 1000.
	Limit int
}

// Search returns events matching q, oldest first.
func (l *Log) Search(ctx context.Context, q Query) ([]Event, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	rows, err := l.db.QueryContext(ctx, `SELECT seq, time, type, actor, target, session, source, data, prev_hash, hash
		FROM audit_events
		WHERE ($1 = '' OR type = $1) AND ($2 = '' OR actor = $2) AND time >= $3
		ORDER BY seq LIMIT $4`, q.Type, q.Actor, store.Nanos(q.Since), q.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	return scanEvents(rows)
}

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var ev Event
		var t int64
		var data string
		if err := rows.Scan(&ev.Seq, &t, &ev.Type, &ev.Actor, &ev.Target, &ev.Session, &ev.Source, &data, &ev.PrevHash, &ev.Hash); err != nil {
			return nil, fmt.Errorf("audit: search: %w", err)
		}
		ev.Time = store.Time(t)
		if err := json.Unmarshal([]byte(data), &ev.Data); err != nil {
			return nil, fmt.Errorf("audit: search: event %d data: %w", ev.Seq, err)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}
