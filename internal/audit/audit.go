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
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// Options tune a Log; the zero value is valid.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Key signs checkpoints; nil means none are written (tests of other
	// packages).
	Key *SigningKey
	// CheckpointEvery is the longest activity goes without a checkpoint;
	// zero means DefaultCheckpointEvery.
	CheckpointEvery time.Duration
	// Logger reports checkpoint failures; nil means slog.Default().
	Logger *slog.Logger
}

// Log appends events to the audit_events table. Create it with Open; it is
// safe for concurrent use.
type Log struct {
	db   *store.DB
	now  func() time.Time
	in   chan *pending
	opts Options

	// closeMu guards closed against Append racing Close.
	closeMu sync.RWMutex
	closed  bool
	stopped chan struct{}

	// seq and last are owned by the writer goroutine after Open, as is
	// sealed (the seq of the last checkpoint).
	seq    int64
	last   string
	sealed int64

	// archiveMu is held by Archive (write) and Verify (read): a
	// verification never sees the archive boundary move under it.
	archiveMu sync.RWMutex

	// headMu guards head and changed: the last committed seq, and a
	// channel closed (and replaced) at each commit.
	headMu  sync.Mutex
	head    int64
	changed chan struct{}
}

// Open returns a Log appending to db, continuing its chain, without
// checkpoints. now may be nil for time.Now.
func Open(ctx context.Context, db *store.DB, now func() time.Time) (*Log, error) {
	return OpenWith(ctx, db, Options{Now: now})
}

// OpenWith returns a Log appending to db, continuing its chain (or
// starting after the last archive boundary), signing checkpoints with
// opts.Key.
func OpenWith(ctx context.Context, db *store.DB, opts Options) (*Log, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{db: db, now: opts.Now, opts: opts, in: make(chan *pending, maxBatch), stopped: make(chan struct{}), changed: make(chan struct{})}
	err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&l.seq, &l.last)
	if errors.Is(err, sql.ErrNoRows) {
		// Empty: a fresh log, or every event archived and pruned.
		err = db.QueryRowContext(ctx, `SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1`).Scan(&l.seq, &l.last)
		if errors.Is(err, sql.ErrNoRows) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read chain head: %w", err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints`).Scan(&l.sealed); err != nil {
		return nil, fmt.Errorf("audit: read last checkpoint: %w", err)
	}
	l.head = l.seq
	go l.write()
	if opts.Key != nil && l.seq > l.sealed {
		// A crash (or a version without checkpoints) left events
		// unsealed: they get sealed now, and that is on record, so
		// sealing at start cannot quietly launder a rewrite.
		from, to := l.sealed+1, l.seq
		if err := l.Append(ctx, Event{Type: "audit.unsealed_at_start", Actor: "vigil", Data: map[string]any{
			"first_seq": from, "last_seq": to, "note": "events not covered by a checkpoint when the log was opened; sealed now"}}); err != nil {
			l.Close()
			return nil, err
		}
	}
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

// Close stops accepting events, writes those queued and a final
// checkpoint, and returns.
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
	// tick is armed when events are committed after the last checkpoint:
	// a checkpoint follows within CheckpointEvery.
	tick := time.NewTimer(time.Hour)
	tick.Stop()
	armed := false
	for {
		var p *pending
		select {
		case q, ok := <-l.in:
			if !ok {
				l.checkpoint()
				return
			}
			p = q
		case <-tick.C:
			armed = false
			if !l.checkpoint() {
				tick.Reset(l.opts.CheckpointEvery)
				armed = true
			}
			continue
		}
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
		if err == nil && !armed && l.opts.Key != nil {
			tick.Reset(l.opts.CheckpointEvery)
			armed = true
		}
	}
}

// checkpoint signs and stores a checkpoint of the chain head if events
// were added since the last one. It reports success (or nothing to do).
func (l *Log) checkpoint() bool {
	if l.opts.Key == nil || l.seq <= l.sealed {
		return true
	}
	c := l.opts.Key.sign(l.seq, l.last, l.now())
	if err := writeCheckpoint(context.Background(), l.db, c); err != nil {
		l.opts.Logger.Error("audit checkpoint not written; retrying", "seq", c.Seq, "err", err)
		return false
	}
	l.sealed = c.Seq
	return true
}

// commit writes batch in one transaction; on failure the chain head is
// left where it was so the next batch links to the last durable event.
func (l *Log) commit(batch []*pending) error {
	seq, last := l.seq, l.last
	rows := make([]Event, len(batch))
	for i, p := range batch {
		ev := p.ev
		// Stored as hashed: invalid UTF-8 would be hashed as U+FFFD but
		// kept raw, so those bytes could change without the hash.
		for _, f := range []*string{&ev.Type, &ev.Actor, &ev.Target, &ev.Session, &ev.Source} {
			*f = strings.ToValidUTF8(*f, "\uFFFD")
		}
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
		var fts *sql.Stmt
		for i := range rows {
			ev := &rows[i]
			if _, err := stmt.ExecContext(ctx, ev.Seq, ev.Time.UnixNano(), ev.Type, ev.Actor, ev.Target,
				ev.Session, ev.Source, string(canonicalData(ev.Data)), ev.PrevHash, ev.Hash); err != nil {
				return err
			}
			text := searchText(ev.Data)
			if text == "" {
				continue
			}
			if fts == nil {
				if fts, err = tx.PrepareContext(ctx, `INSERT INTO audit_fts (rowid, text) VALUES ($1, $2)`); err != nil {
					return err
				}
				defer fts.Close()
			}
			if _, err := fts.ExecContext(ctx, ev.Seq, text); err != nil {
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
// source, data] (see canon.go).
func Hash(prevHash string, ev *Event) string {
	return hashRow(prevHash, ev.Seq, ev.Time.UnixNano(), ev.Type, ev.Actor, ev.Target, ev.Session, ev.Source, canonicalData(ev.Data))
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
