package siem

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/backoff"
	"github.com/vigil-pam/vigil/internal/metrics"
	"github.com/vigil-pam/vigil/internal/store"
)

// Sink delivers batches of audit events to a SIEM. A Sink that also has a
// Validate() error method (as Syslog and Webhook do) is checked by
// NewForwarder. The Forwarder calls Send from one goroutine per sink.
type Sink interface {
	// Name identifies the sink and its forwarding cursor: renaming a sink
	// makes it a new one, which starts again from the first event.
	Name() string
	// Send delivers a prefix of events (in seq order, never empty) and
	// returns its length n: events[:n] are delivered. n < len(events)
	// with a nil error means the sink took what fits in one request and
	// the Forwarder sends the rest next. With an error, events[n:] are
	// not delivered (n is usually 0). It returns when ctx ends.
	Send(ctx context.Context, events []audit.Event) (n int, err error)
	// Close releases the sink's connections; Run calls it on return.
	Close() error
}

// AuditSource is what the Forwarder reads: *audit.Log satisfies it.
type AuditSource interface {
	// After returns up to limit events with seq greater than afterSeq, in
	// seq order.
	After(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error)
	// Changed returns a channel closed when more events are durable.
	Changed() <-chan struct{}
	// Head returns the seq of the last durable event.
	Head() int64
}

// Forwarder timing defaults.
const (
	// defaultBackoff is the first wait after a failed send; it doubles up
	// to defaultMaxBackoff and is reset by a success.
	defaultBackoff    = time.Second
	defaultMaxBackoff = time.Minute
	// defaultPoll is how often a caught-up sink looks for events without
	// being woken by Changed: a safety net, not the way events arrive.
	defaultPoll = 5 * time.Second
	// readBatch is how many events a sink reads at a time.
	readBatch = 500
	// cursorWriteTimeout bounds one cursor write, which runs even after
	// Run's context ends so a delivery already made is not made again.
	cursorWriteTimeout = 5 * time.Second
)

// Forwarder sends every audit event to every sink, in seq order, across
// restarts (see the package documentation for the delivery guarantee).
// Each sink has its own goroutine, so a sink that is down holds up no
// other, and its own persistent cursor in audit_forward_cursors. Run one
// Forwarder per database: two sharing the cursors would send batches
// twice.
type Forwarder struct {
	db    *store.DB
	src   AuditSource
	sinks []Sink
	log   *slog.Logger
	// now stamps cursor writes; tests replace it.
	now func() time.Time

	// backoff, maxBackoff and poll are the timing; tests shorten them.
	backoff, maxBackoff, poll time.Duration

	// cursors holds each sink's cursor once read (-1 before). The map is
	// not changed after NewForwarder; the values are atomic.
	cursors map[string]*atomic.Int64

	forwarded *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

// NewForwarder returns a Forwarder sending the events of src, stored in
// db, to sinks. logger may be nil (no logging); reg may be nil (no
// metrics). It fails if a sink has no name, two share one, or a sink's
// Validate fails. The metrics are vigil_siem_events_forwarded_total,
// vigil_siem_send_failures_total and vigil_siem_backlog, by sink; the
// backlog is read when scraped, so a second Forwarder cannot register on
// the same reg.
func NewForwarder(db *store.DB, src AuditSource, sinks []Sink, logger *slog.Logger, reg prometheus.Registerer) (*Forwarder, error) {
	if db == nil || src == nil {
		return nil, errors.New("siem: NewForwarder needs a store and an audit source")
	}
	f := &Forwarder{
		db: db, src: src, sinks: sinks, log: logger, now: time.Now,
		backoff: defaultBackoff, maxBackoff: defaultMaxBackoff, poll: defaultPoll,
		cursors: map[string]*atomic.Int64{},
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_siem_events_forwarded_total",
			Help: "Audit events delivered to a SIEM sink.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_siem_send_failures_total",
			Help: "Failed attempts to send a batch of audit events to a SIEM sink (each is retried).",
		}, []string{"sink"}),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for _, sk := range sinks {
		if v, ok := sk.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
		name := sk.Name()
		if name == "" {
			return nil, errors.New("siem: a sink without a name")
		}
		if f.cursors[name] != nil {
			// Two sinks on one cursor would each skip what the other sent.
			return nil, fmt.Errorf("siem: two sinks named %q", name)
		}
		c := &atomic.Int64{}
		c.Store(-1)
		f.cursors[name] = c
	}
	var err error
	if f.forwarded, err = metrics.Register(reg, f.forwarded); err != nil {
		return nil, fmt.Errorf("siem: %w", err)
	}
	if f.failures, err = metrics.Register(reg, f.failures); err != nil {
		return nil, fmt.Errorf("siem: %w", err)
	}
	if reg != nil {
		if err := reg.Register(backlogCollector{f}); err != nil {
			return nil, fmt.Errorf("siem: register metrics: %w", err)
		}
	}
	for _, sk := range sinks {
		f.forwarded.WithLabelValues(sk.Name())
		f.failures.WithLabelValues(sk.Name())
	}
	return f, nil
}

// backlogDesc describes vigil_siem_backlog.
var backlogDesc = prometheus.NewDesc("vigil_siem_backlog",
	"Audit events not yet delivered to a SIEM sink (the log's head minus the sink's cursor).", []string{"sink"}, nil)

// backlogCollector reports each sink's backlog when scraped, so the gauge
// keeps growing while a sink is down.
type backlogCollector struct{ f *Forwarder }

// Describe implements prometheus.Collector.
func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backlogDesc }

// Collect implements prometheus.Collector. A sink whose cursor is not
// read yet is left out.
func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	for _, sk := range c.f.sinks {
		if b := c.f.Backlog(sk.Name()); b >= 0 {
			ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(b), sk.Name())
		}
	}
}

// Backlog returns how many events sink has yet to receive: the log's
// head minus the sink's cursor. It is -1 for an unknown sink or one whose
// cursor Run has not read yet.
func (f *Forwarder) Backlog(sink string) int64 {
	c := f.cursors[sink]
	if c == nil {
		return -1
	}
	cur := c.Load()
	if cur < 0 {
		return -1
	}
	return max(f.src.Head()-cur, 0)
}

// Run forwards events until ctx ends (even with no sinks), then waits for
// every sink's goroutine (a send in flight is cancelled), closes the
// sinks and returns. Call it once.
func (f *Forwarder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sk := range f.sinks {
		wg.Go(func() {
			defer sk.Close()
			f.runSink(ctx, sk)
		})
	}
	<-ctx.Done()
	wg.Wait()
}

// runSink is one sink's forwarding loop.
func (f *Forwarder) runSink(ctx context.Context, sk Sink) {
	name := sk.Name()
	log := f.log.With("sink", name)
	retry := backoff.Backoff{Base: f.backoff, Max: f.maxBackoff}

	var cursor int64
	for {
		var err error
		if cursor, err = f.openCursor(ctx, name); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Error("siem sink: cannot read its cursor; retrying", "err", err)
		if !backoff.Sleep(ctx, retry.Next()) {
			return
		}
	}
	f.cursors[name].Store(cursor)
	log.Info("siem sink started", "cursor", cursor, "backlog", f.Backlog(name))

	// retry paces the resending of a batch, readRetry the reading of the
	// log after a database error.
	retry.Reset()
	readRetry := backoff.Backoff{Base: f.backoff, Max: f.maxBackoff}
	forwarded := f.forwarded.WithLabelValues(name)
	failures := f.failures.WithLabelValues(name)
	for {
		// Take the channel before reading, so an event committed after the
		// read still wakes the wait below.
		wake := f.src.Changed()
		batch, err := f.src.After(ctx, cursor, readBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("siem sink: cannot read the audit log; retrying", "err", err)
			if !backoff.Sleep(ctx, readRetry.Next()) {
				return
			}
			continue
		}
		readRetry.Reset()
		if len(batch) > 0 && batch[0].Seq != cursor+1 {
			// The log has no gaps by construction; a gap means rows were
			// removed. Forward what there is and say so loudly.
			log.Error("siem sink: gap in the audit log", "after", cursor, "next", batch[0].Seq)
		}
		read := len(batch)
		for len(batch) > 0 {
			n, err := sk.Send(ctx, batch)
			n = min(max(n, 0), len(batch))
			if n > 0 {
				last := batch[n-1].Seq
				if !f.saveCursor(ctx, log, name, last) {
					return
				}
				cursor = last
				f.cursors[name].Store(cursor)
				forwarded.Add(float64(n))
				batch = batch[n:]
			}
			if err == nil && n == 0 {
				err = errors.New("siem: sink sent nothing and reported no error")
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures.Inc()
				wait := retry.Next()
				log.Warn("siem sink: send failed; retrying", "seq", cursor+1, "retry_in", wait, "err", err)
				if !backoff.Sleep(ctx, wait) {
					return
				}
				continue
			}
			retry.Reset()
		}
		if read > 0 && f.src.Head() > cursor {
			// More was committed while this batch was sent.
			continue
		}
		t := time.NewTimer(f.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// openCursor returns the sink's cursor, creating it at 0 if the sink has
// none: a new sink receives the whole log.
func (f *Forwarder) openCursor(ctx context.Context, name string) (int64, error) {
	var cursor int64
	err := f.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_forward_cursors (sink, seq, updated_at) VALUES ($1, 0, $2)
			ON CONFLICT (sink) DO NOTHING`, name, store.Nanos(f.now())); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT seq FROM audit_forward_cursors WHERE sink = $1`, name).Scan(&cursor)
	})
	if err != nil {
		return 0, fmt.Errorf("siem: cursor of sink %s: %w", name, err)
	}
	return cursor, nil
}

// saveCursor writes the sink's cursor, retrying until it is written
// (true) or ctx ends (false). Each attempt runs to completion even if ctx
// has ended, so a delivery already made is recorded.
func (f *Forwarder) saveCursor(ctx context.Context, log *slog.Logger, name string, seq int64) bool {
	retry := backoff.Backoff{Base: f.backoff, Max: f.maxBackoff}
	for {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cursorWriteTimeout)
		err := f.writeCursor(wctx, name, seq)
		cancel()
		if err == nil {
			return ctx.Err() == nil
		}
		log.Error("siem sink: cannot record its cursor; retrying", "seq", seq, "err", err)
		if !backoff.Sleep(ctx, retry.Next()) {
			return false
		}
	}
}

// writeCursor moves the sink's cursor forward to seq (never back), in a
// transaction.
func (f *Forwarder) writeCursor(ctx context.Context, name string, seq int64) error {
	err := f.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE audit_forward_cursors SET seq = $1, updated_at = $2
			WHERE sink = $3 AND seq < $1`, seq, store.Nanos(f.now()), name)
		return err
	})
	if err != nil {
		return fmt.Errorf("siem: cursor of sink %s: %w", name, err)
	}
	return nil
}
