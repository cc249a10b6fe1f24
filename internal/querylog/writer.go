package querylog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// DefaultCommitInterval is the least time between the starts of two
	// commits (see WriterOptions.CommitInterval). A transaction costs
	// as much CPU as some thirty entries in it (BenchmarkAppendStream):
	// at 10,000 statements a second, 20ms makes transactions of 200. It
	// is also how long an entry may wait to be stored under load.
	DefaultCommitInterval = 20 * time.Millisecond
	// maxBatch bounds one transaction; a larger backlog takes several.
	maxBatch = 512
	// retryBase and retryMax pace retries of a failing store: the delay
	// doubles from retryBase to retryMax. retryMax is also how late a
	// failure may be reported after FailAfter.
	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
	// maxIndexedStatement bounds what one statement contributes to the
	// full-text index, in characters (a huge statement is indexed by its
	// start; it is stored whole).
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
	// CommitInterval is the least time between the starts of two
	// commits: an entry queued sooner than that after the last commit
	// began waits for the rest of it, with those queued after it, unless
	// a transaction's worth is queued (maxBatch entries, or the whole
	// queue if it is shorter) or a Flush or Close asks for it. A busy
	// gateway's statements so go in a few large transactions rather than
	// many small ones, which cost several times as much CPU per entry; a
	// quiet one's are stored at once. Zero means DefaultCommitInterval;
	// negative means no wait (a transaction holds whatever was queued
	// when it began).
	CommitInterval time.Duration
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
// takes everything queued (up to maxBatch entries, waiting for more until
// CommitInterval has passed since the last commit began), writes it in
// one transaction, and repeats. Create it with NewWriter; it is safe for
// concurrent use. Entries are stored in the order they were queued, so
// one caller's entries are stored in the order it appended them.
type Writer struct {
	db        *store.DB
	now       func() time.Time
	failAfter time.Duration
	interval  time.Duration
	log       *slog.Logger

	// stmts (nil until the first commit prepares them) and args, the
	// values of an INSERT, belong to the writer goroutine.
	stmts *statements
	args  []any
	// sessions, ids and looked belong to the writer goroutine too: the
	// query_sessions IDs of the sessions stored lately, those of the
	// batch being committed (ids[i] is batch[i]'s), and those the commit
	// had to look up (added to sessions once it has committed).
	sessions sessionCache
	ids      []int64
	looked   map[sessionKey]int64

	in chan item
	// flushes counts the flush markers queued and not yet taken, and
	// hurry wakes the writer goroutine from its wait for the commit
	// interval (a Flush, or fullBatch entries queued): entries are
	// queued without waking it one by one.
	flushes atomic.Int64
	hurry   chan struct{}
	// fullBatch is as many entries as one commit takes: maxBatch, or
	// the whole queue if it is shorter.
	fullBatch int
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
	if opts.CommitInterval == 0 {
		opts.CommitInterval = DefaultCommitInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	w := &Writer{db: db, now: opts.Now, failAfter: opts.FailAfter, interval: opts.CommitInterval, log: opts.Log,
		in: make(chan item, opts.Queue), hurry: make(chan struct{}, 1), fullBatch: min(maxBatch, opts.Queue),
		closing: make(chan struct{}), stopped: make(chan struct{}), failCh: make(chan struct{}),
		sessions: sessionCache{limit: maxCachedSessions}, looked: map[sessionKey]int64{},
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
	if len(w.in) >= w.fullBatch {
		w.wake()
	}
	return nil
}

// wake ends the writer goroutine's wait for the commit interval, if it
// is waiting (or its next wait, if it is not).
func (w *Writer) wake() {
	select {
	case w.hurry <- struct{}{}:
	default:
	}
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
	w.flushes.Add(1)
	if err := w.enqueue(ctx, item{flush: done}); err != nil {
		w.flushes.Add(-1)
		return fmt.Errorf("querylog: flush: %w", err)
	}
	w.wake()
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
	defer func() {
		if w.stmts != nil {
			w.stmts.close()
		}
	}()
	batch := make([]Entry, 0, maxBatch)
	var flushes []chan error
	lost := 0
	// began is when the last commit began; wait times the rest of the
	// commit interval.
	var began time.Time
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for it := range w.in {
		batch, flushes = batch[:0], flushes[:0]
		add := func(it item) {
			if it.flush != nil {
				w.flushes.Add(-1)
				flushes = append(flushes, it.flush)
			} else {
				batch = append(batch, it.entry)
			}
		}
		add(it)
		// A wake from before: for items already taken. (One that comes
		// after this still ends the wait: Flush counts its marker, and
		// Append queues its entry, before they wake.)
		select {
		case <-w.hurry:
		default:
		}
		// Real time, not w.now: this paces transactions, it does not
		// date anything.
		if rest := w.interval - time.Since(began); rest > 0 && len(flushes) == 0 && w.flushes.Load() == 0 && len(w.in) < w.fullBatch {
			wait.Reset(rest)
			select {
			case <-wait.C:
			case <-w.hurry:
			case <-w.closing:
			}
			wait.Stop()
		}
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
		began = time.Now()
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
