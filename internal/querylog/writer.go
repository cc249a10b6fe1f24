package querylog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/backoff"
	"github.com/vigil-pam/vigil/internal/metrics"
	"github.com/vigil-pam/vigil/internal/store"
)

// Writer defaults and limits.
const (
	// DefaultQueue is the number of entries a Writer holds before Append
	// blocks.
	DefaultQueue = 8192
	// DefaultFailAfter is how long the store may fail before Append and
	// Flush report it.
	DefaultFailAfter = 30 * time.Second
	// maxBatch bounds one transaction; a larger backlog takes several.
	maxBatch = 512
	// retryBase and retryMax pace retries of a failing store: the delay
	// doubles from retryBase to retryMax. retryMax is also how late a
	// failure may be reported after FailAfter.
	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
	// maxIndexedStatement bounds what one statement contributes to the
	// full-text index (a huge statement is indexed by its start; it is
	// stored whole).
	maxIndexedStatement = 32 << 10
)

// ErrClosed is returned by Append and Flush after Close.
var ErrClosed = errors.New("querylog: writer is closed")

// ErrUnavailable wraps the error Append and Flush return once the store
// has failed for longer than WriterOptions.FailAfter: statements can no
// longer be logged, and a gateway that must log them should refuse them.
var ErrUnavailable = errors.New("querylog: statement log unavailable")

// WriterOptions tune a Writer; the zero value is valid.
type WriterOptions struct {
	// Queue is the number of entries held before Append blocks; zero
	// means DefaultQueue.
	Queue int
	// FailAfter is how long the store may keep failing before Append and
	// Flush return an error wrapping ErrUnavailable (until a write
	// succeeds again); zero means DefaultFailAfter.
	FailAfter time.Duration
	// Now is the clock (entry times, failure duration); nil means
	// time.Now.
	Now func() time.Time
	// Log reports store failures and recoveries; nil means slog.Default().
	Log *slog.Logger
	// Registerer receives the metrics vigil_querylog_written_total,
	// vigil_querylog_failed_batches_total and vigil_querylog_queue_depth;
	// nil registers none. Writers on one registry share them.
	Registerer prometheus.Registerer
}

// item is a queued entry, or a flush marker (flush not nil) that is
// answered once every entry queued before it is stored.
type item struct {
	entry Entry
	flush chan error
}

// Writer stores entries in the background, in batches: its goroutine
// takes everything queued (up to maxBatch entries), writes it in one
// transaction, and repeats. Create it with NewWriter; it is safe for
// concurrent use. Entries are stored in the order they were queued, so
// one caller's entries are stored in the order it appended them.
type Writer struct {
	db        *store.DB
	now       func() time.Time
	failAfter time.Duration
	log       *slog.Logger

	in chan item
	// ctx ends the writer's retries when Close gives up waiting.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// closing is closed first by Close, to wake Appends blocked on a full
	// queue; stopped is closed when the writer goroutine has returned.
	closing chan struct{}
	stopped chan struct{}

	// closeMu guards closed against Append and Flush racing Close: they
	// hold it shared while queueing, Close exclusively to close in.
	closeMu   sync.RWMutex
	closed    bool
	closeOnce sync.Once

	// failMu guards failErr and failCh: the error the store has been
	// failing with for longer than FailAfter (nil while it works), and a
	// channel closed when it starts failing that long (replaced when a
	// write succeeds again).
	failMu  sync.Mutex
	failErr error
	failCh  chan struct{}

	// stopErr is set by the writer goroutine before stopped is closed:
	// why entries were left unstored, if any were.
	stopErr error

	written       prometheus.Counter
	failedBatches prometheus.Counter
	depth         prometheus.Gauge
}

// NewWriter returns a Writer storing entries in db and starts its
// goroutine; Close stops it.
func NewWriter(db *store.DB, opts WriterOptions) *Writer {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.FailAfter <= 0 {
		opts.FailAfter = DefaultFailAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	w := &Writer{db: db, now: opts.Now, failAfter: opts.FailAfter, log: opts.Log,
		in: make(chan item, opts.Queue), closing: make(chan struct{}), stopped: make(chan struct{}), failCh: make(chan struct{}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_querylog_written_total",
			Help: "Database statements stored in the statement log.",
		}),
		failedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_querylog_failed_batches_total",
			Help: "Failed attempts to store a batch of statements in the statement log (each is retried).",
		}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_querylog_queue_depth",
			Help: "Database statements appended to the statement log and not stored yet.",
		}),
	}
	// A failure to register leaves the metrics unexported, which is no
	// reason to lose statements: it is logged, not returned.
	var err error
	if w.written, err = metrics.Register(opts.Registerer, w.written); err != nil {
		w.log.Warn("querylog: metrics not registered", "err", err)
	}
	if w.failedBatches, err = metrics.Register(opts.Registerer, w.failedBatches); err != nil {
		w.log.Warn("querylog: metrics not registered", "err", err)
	}
	if w.depth, err = metrics.Register(opts.Registerer, w.depth); err != nil {
		w.log.Warn("querylog: metrics not registered", "err", err)
	}
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	go w.run()
	return w
}

// validate reports what makes e unstorable.
func validate(e *Entry) error {
	switch {
	case e.Session == "":
		return errors.New("querylog: entry without a session")
	case e.Seq < 1:
		return fmt.Errorf("querylog: entry %s/%d: seq must be 1 or more", e.Session, e.Seq)
	case !slices.Contains(outcomes, e.Outcome):
		return fmt.Errorf("querylog: entry %s/%d: outcome %q is not one of %s", e.Session, e.Seq, e.Outcome, strings.Join(outcomes, ", "))
	}
	return nil
}

// Append queues e to be stored; e.Time is set when zero. When the queue
// is full it blocks until there is room or ctx ends: the gateway would
// rather slow down than lose a statement. It returns ErrClosed after
// Close, and an error wrapping ErrUnavailable (without queueing e) while
// the store has been failing for longer than FailAfter. Entries already
// queued are kept and retried, never dropped.
func (w *Writer) Append(ctx context.Context, e Entry) error {
	if err := validate(&e); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	w.depth.Inc()
	if err := w.enqueue(ctx, item{entry: e}); err != nil {
		w.depth.Dec()
		return fmt.Errorf("querylog: append %s/%d: %w", e.Session, e.Seq, err)
	}
	return nil
}

// enqueue puts it on the queue, waiting for room.
func (w *Writer) enqueue(ctx context.Context, it item) error {
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	for {
		failed, err := w.failure()
		if err != nil {
			return err
		}
		select {
		case w.in <- it:
			return nil
		case <-failed:
			// Failing for FailAfter now (or already recovered: wait on).
		case <-w.closing:
			return ErrClosed
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Flush returns when every entry appended before the call is stored, or
// with an error when ctx ends, when the store has been failing for longer
// than FailAfter (wrapping ErrUnavailable), or after Close (ErrClosed).
func (w *Writer) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	if err := w.enqueue(ctx, item{flush: done}); err != nil {
		return fmt.Errorf("querylog: flush: %w", err)
	}
	for {
		failed, err := w.failure()
		if err != nil {
			return fmt.Errorf("querylog: flush: %w", err)
		}
		select {
		case err := <-done:
			return err
		case <-failed:
		case <-ctx.Done():
			return fmt.Errorf("querylog: flush: %w", context.Cause(ctx))
		}
	}
}

// Close stops accepting entries (blocked Appends return ErrClosed),
// stores those queued and stops. If ctx ends first (a store that keeps
// failing), it stops retrying and returns an error saying how many
// entries were not stored.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		close(w.closing)
		w.closeMu.Lock()
		w.closed = true
		close(w.in)
		w.closeMu.Unlock()
	})
	select {
	case <-w.stopped:
		w.cancel(ErrClosed)
	case <-ctx.Done():
		w.cancel(fmt.Errorf("querylog: close: %w", context.Cause(ctx)))
		<-w.stopped
	}
	return w.stopErr
}

// failure returns the store's failure, if it has lasted FailAfter, and a
// channel closed when it starts to.
func (w *Writer) failure() (<-chan struct{}, error) {
	w.failMu.Lock()
	defer w.failMu.Unlock()
	return w.failCh, w.failErr
}

// setFailure records that the store has been failing for longer than
// FailAfter (err not nil) or works again (err nil).
func (w *Writer) setFailure(err error) {
	w.failMu.Lock()
	defer w.failMu.Unlock()
	switch {
	case err != nil && w.failErr == nil:
		close(w.failCh)
	case err == nil && w.failErr != nil:
		w.failCh = make(chan struct{})
	}
	w.failErr = err
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.stopped)
	batch := make([]Entry, 0, maxBatch)
	var flushes []chan error
	lost := 0
	for it := range w.in {
		batch, flushes = batch[:0], flushes[:0]
		add := func(it item) {
			if it.flush != nil {
				flushes = append(flushes, it.flush)
			} else {
				batch = append(batch, it.entry)
			}
		}
		add(it)
	drain:
		for len(batch) < maxBatch {
			select {
			case it, ok := <-w.in:
				if !ok {
					break drain
				}
				add(it)
			default:
				break drain
			}
		}
		err := w.store(batch)
		if err != nil {
			// Only Close giving up stops the retries: nothing more
			// will be stored.
			lost += len(batch)
			w.stopErr = err
		}
		for _, f := range flushes {
			f <- err
		}
	}
	if lost > 0 {
		w.stopErr = fmt.Errorf("querylog: %d statements not stored: %w", lost, w.stopErr)
		w.log.Error("querylog: statements not stored at close", "entries", lost, "err", w.stopErr)
	}
}

// store writes batch, retrying until it is stored or w.ctx ends. After a
// give-up it reports every batch it is given as failed without trying.
func (w *Writer) store(batch []Entry) error {
	if len(batch) == 0 {
		return nil
	}
	if w.ctx.Err() != nil {
		w.depth.Sub(float64(len(batch)))
		return context.Cause(w.ctx)
	}
	retry := backoff.Backoff{Base: retryBase, Max: retryMax}
	var since time.Time
	for {
		err := w.commit(batch)
		if err == nil {
			w.written.Add(float64(len(batch)))
			w.depth.Sub(float64(len(batch)))
			if !since.IsZero() {
				w.setFailure(nil)
				w.log.Info("querylog: store works again", "entries", len(batch), "failed_for", w.now().Sub(since).Round(time.Millisecond))
			}
			return nil
		}
		w.failedBatches.Inc()
		now := w.now()
		if since.IsZero() {
			since = now
			w.log.Error("querylog: store failed; retrying", "entries", len(batch), "err", err)
		}
		if now.Sub(since) >= w.failAfter {
			if _, failing := w.failure(); failing == nil {
				w.log.Error("querylog: store failing; refusing new statements until it recovers", "since", since, "err", err)
			}
			w.setFailure(fmt.Errorf("%w: store failing since %s: %w", ErrUnavailable, since.UTC().Format(time.RFC3339), err))
		}
		if !backoff.Sleep(w.ctx, retry.Next()) {
			w.depth.Sub(float64(len(batch)))
			return fmt.Errorf("%w (last store error: %w)", context.Cause(w.ctx), err)
		}
	}
}

// insertEntry stores one entry and returns its ID; a (session, seq)
// already stored (a retry of a commit that did succeed, or a gateway
// repeating itself) returns no row and keeps the first.
const insertEntry = `INSERT INTO queries (session, seq, time, subject, target, login, database, source, protocol,
	statement, params, duration_us, rows, tag, outcome, sqlstate, error, rule, masked)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
	ON CONFLICT (session, seq) DO NOTHING RETURNING id`

// commit writes batch in one transaction: each entry in queries and its
// statement in queries_fts under the same rowid.
func (w *Writer) commit(batch []Entry) error {
	ctx := w.ctx
	var dups []string
	err := w.db.Tx(ctx, func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, insertEntry)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer ins.Close()
		fts, err := tx.PrepareContext(ctx, `INSERT INTO queries_fts (rowid, statement) VALUES ($1, $2)`)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer fts.Close()
		dups = dups[:0]
		for i := range batch {
			e := &batch[i]
			var id int64
			err := ins.QueryRowContext(ctx, e.Session, e.Seq, store.Nanos(e.Time), e.User, e.Target, e.Login, e.Database,
				e.Source, e.Protocol, e.Statement, e.Params, e.Duration.Microseconds(), e.Rows, e.Tag, e.Outcome,
				e.SQLState, e.Error, e.Rule, e.Masked).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				dups = append(dups, fmt.Sprintf("%s/%d", e.Session, e.Seq))
				continue
			}
			if err != nil {
				return fmt.Errorf("insert %s/%d: %w", e.Session, e.Seq, err)
			}
			if text := indexText(e.Statement); text != "" {
				if _, err := fts.ExecContext(ctx, id, text); err != nil {
					return fmt.Errorf("index %s/%d: %w", e.Session, e.Seq, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("querylog: store %d statements: %w", len(batch), err)
	}
	if len(dups) > 0 {
		w.log.Warn("querylog: statements already stored; kept the first", "entries", dups)
	}
	return nil
}

// indexText is what a statement contributes to the full-text index: its
// first maxIndexedStatement bytes.
func indexText(s string) string {
	if len(s) > maxIndexedStatement {
		s = strings.ToValidUTF8(s[:maxIndexedStatement], "")
	}
	return strings.TrimSpace(s)
}
