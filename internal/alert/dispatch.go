package alert

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/backoff"
	"github.com/vigil-pam/vigil/internal/metrics"
	"github.com/vigil-pam/vigil/internal/store"
)

// Sink delivers alerts somewhere. A Sink that also has a Validate() error
// method (as Webhook does) is checked by NewDispatcher.
type Sink interface {
	// Name identifies the sink and its delivery cursor: renaming a sink
	// makes it a new one.
	Name() string
	// MinSeverity is the least severe alert the sink wants; empty means
	// every alert.
	MinSeverity() Severity
	// Send delivers one alert; nil means delivered. It returns when ctx
	// ends.
	Send(ctx context.Context, a Alert) error
}

// Dispatcher timing defaults.
const (
	// defaultBackoff is the first wait after a failed delivery; it
	// doubles up to defaultMaxBackoff and is reset by a success.
	defaultBackoff    = time.Second
	defaultMaxBackoff = time.Minute
	// defaultPoll is how often a sink looks for alerts without being
	// woken: another node on the same database may have raised them.
	defaultPoll = 5 * time.Second
	// dispatchBatch is how many alerts a sink reads at a time.
	dispatchBatch = 100
	// cursorWriteTimeout bounds one cursor write, which runs even after
	// Run's context ends so a delivery already made is not made again.
	cursorWriteTimeout = 5 * time.Second
)

// Dispatcher delivers every alert to every sink exactly once and in id
// order, across restarts. Each sink has a persistent cursor
// (alert_cursors.delivered, the highest alert id the sink has handled)
// that moves past an alert only once the sink has it. An alert below the
// sink's MinSeverity is skipped (the cursor still moves). A failed
// delivery is retried, with backoff from 1 s doubling to 1 min, until it
// succeeds: an alert is never skipped for failing, and nothing after it is
// sent first. Each sink has its own goroutine, so a sink that is down
// holds up no other. A sink waits for Raise to wake it and polls every
// few seconds anyway.
//
// A sink seen for the first time (no cursor yet) starts at the alerts
// raised from then on: its cursor is created at the highest alert id
// then stored, so adding a sink does not flood it with history.
//
// "Exactly once" has one gap: a crash between a receiver's answer and the
// cursor write means that alert is sent again after the restart, with the
// same id (webhook receivers deduplicate on X-Vigil-Alert-Id). Run one
// Dispatcher per database: two sharing the cursors would race and send
// some alerts twice.
type Dispatcher struct {
	st    *Store
	sinks []Sink
	log   *slog.Logger

	// backoff, maxBackoff and poll are the timing; tests shorten them.
	backoff, maxBackoff, poll time.Duration

	deliveries *prometheus.CounterVec
	backlog    *prometheus.GaugeVec
}

// NewDispatcher returns a Dispatcher delivering st's alerts to sinks. log
// may be nil (no logging); reg may be nil (no metrics). It fails if a sink
// has no name, two share one, or a sink's Validate fails.
func NewDispatcher(st *Store, sinks []Sink, log *slog.Logger, reg prometheus.Registerer) (*Dispatcher, error) {
	if st == nil {
		return nil, errors.New("alert: NewDispatcher needs a store")
	}
	seen := map[string]bool{}
	for _, sk := range sinks {
		if v, ok := sk.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
		name := sk.Name()
		if name == "" {
			return nil, errors.New("alert: a sink without a name")
		}
		if seen[name] {
			// Two sinks on one cursor would each skip what the other sent.
			return nil, fmt.Errorf("alert: two sinks named %q", name)
		}
		seen[name] = true
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		st: st, sinks: sinks, log: log,
		backoff: defaultBackoff, maxBackoff: defaultMaxBackoff, poll: defaultPoll,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_alert_deliveries_total",
			Help: "Alert delivery attempts by sink and outcome (delivered, failed, skipped: below the sink's minimum severity).",
		}, []string{"sink", "outcome"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_alert_sink_backlog",
			Help: "Alerts raised that a sink has not yet handled.",
		}, []string{"sink"}),
	}
	var err error
	if d.deliveries, err = metrics.Register(reg, d.deliveries); err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	if d.backlog, err = metrics.Register(reg, d.backlog); err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	for _, sk := range sinks {
		for _, outcome := range []string{"delivered", "failed", "skipped"} {
			d.deliveries.WithLabelValues(sk.Name(), outcome)
		}
	}
	return d, nil
}

// Run delivers alerts until ctx ends (even with no sinks), then waits for
// every sink's goroutine (an attempt in flight is cancelled) and returns.
// Call it once.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, sk := range d.sinks {
		wg.Go(func() { d.runSink(ctx, sk) })
	}
	<-ctx.Done()
	wg.Wait()
}

// runSink is one sink's delivery loop.
func (d *Dispatcher) runSink(ctx context.Context, sk Sink) {
	name := sk.Name()
	log := d.log.With("sink", name)
	retry := backoff.Backoff{Base: d.backoff, Max: d.maxBackoff}

	var cursor int64
	for {
		var err error
		if cursor, err = openCursor(ctx, d.st, name); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Error("alert sink: cannot read its delivery cursor; retrying", "err", err)
		if !backoff.Sleep(ctx, retry.Next()) {
			return
		}
	}
	log.Debug("alert sink started", "cursor", cursor)

	// retry paces the redelivery of one alert, readRetry the reading of
	// the table after a database error.
	retry = backoff.Backoff{Base: d.backoff, Max: d.maxBackoff}
	readRetry := backoff.Backoff{Base: d.backoff, Max: d.maxBackoff}
	backlog := d.backlog.WithLabelValues(name)
	for {
		wake := d.st.wakeup()
		batch, err := d.st.after(ctx, cursor, dispatchBatch)
		// top, read after the batch, is at least its last id.
		var top int64
		if err == nil {
			top, err = d.st.maxID(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("alert sink: cannot read alerts; retrying", "err", err)
			if !backoff.Sleep(ctx, readRetry.Next()) {
				return
			}
			continue
		}
		readRetry.Reset()
		backlog.Set(float64(top - cursor))
		// Skipped alerts move the cursor in memory; it is written after the
		// next delivery or at the end of the batch.
		skipped := false
		for _, a := range batch {
			if a.Severity.Rank() < sk.MinSeverity().Rank() {
				d.deliveries.WithLabelValues(name, "skipped").Inc()
				cursor, skipped = a.ID, true
				backlog.Set(float64(top - cursor))
				continue
			}
			if !d.deliver(ctx, log, sk, a, &retry) {
				if skipped {
					d.saveCursor(ctx, log, name, cursor)
				}
				return
			}
			cursor, skipped = a.ID, false
			backlog.Set(float64(top - cursor))
			if !d.saveCursor(ctx, log, name, cursor) {
				return
			}
		}
		if skipped && !d.saveCursor(ctx, log, name, cursor) {
			return
		}
		if len(batch) == dispatchBatch {
			continue
		}
		t := time.NewTimer(d.poll)
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

// deliver sends a to sk until it succeeds (true) or ctx ends (false).
func (d *Dispatcher) deliver(ctx context.Context, log *slog.Logger, sk Sink, a Alert, retry *backoff.Backoff) bool {
	for attempt := 1; ; attempt++ {
		err := sk.Send(ctx, a)
		if err == nil {
			d.deliveries.WithLabelValues(sk.Name(), "delivered").Inc()
			retry.Reset()
			if attempt > 1 {
				log.Info("alert delivered after retries", "alert", a.ID, "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.deliveries.WithLabelValues(sk.Name(), "failed").Inc()
		wait := retry.Next()
		log.Warn("alert delivery failed; retrying", "alert", a.ID, "attempt", attempt, "retry_in", wait, "err", err)
		if !backoff.Sleep(ctx, wait) {
			return false
		}
	}
}

// saveCursor writes the sink's cursor, retrying until it is written
// (true) or ctx ends (false). Each attempt runs to completion even if ctx
// has ended, so a delivery already made is recorded.
func (d *Dispatcher) saveCursor(ctx context.Context, log *slog.Logger, name string, cursor int64) bool {
	retry := backoff.Backoff{Base: d.backoff, Max: d.maxBackoff}
	for {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cursorWriteTimeout)
		err := writeCursor(wctx, d.st, name, cursor)
		cancel()
		if err == nil {
			return ctx.Err() == nil
		}
		log.Error("alert sink: cannot record its delivery cursor; retrying", "alert", cursor, "err", err)
		if !backoff.Sleep(ctx, retry.Next()) {
			return false
		}
	}
}

// openCursor returns the sink's cursor, creating it at the highest alert id
// if the sink has none (a new sink starts with the alerts raised from now
// on).
func openCursor(ctx context.Context, st *Store, name string) (int64, error) {
	var cursor int64
	err := st.db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT delivered FROM alert_cursors WHERE sink = $1`, name).Scan(&cursor)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM alerts`).Scan(&cursor); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_cursors (sink, delivered, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (sink) DO NOTHING`, name, cursor, store.Nanos(st.now())); err != nil {
			return err
		}
		// Another node may have created it first; its value stands.
		return tx.QueryRowContext(ctx, `SELECT delivered FROM alert_cursors WHERE sink = $1`, name).Scan(&cursor)
	})
	if err != nil {
		return 0, fmt.Errorf("alert: cursor of sink %s: %w", name, err)
	}
	return cursor, nil
}

// writeCursor moves the sink's cursor forward to id (never back).
func writeCursor(ctx context.Context, st *Store, name string, id int64) error {
	_, err := st.db.ExecContext(ctx, `UPDATE alert_cursors SET delivered = $1, updated_at = $2
		WHERE sink = $3 AND delivered < $1`, id, store.Nanos(st.now()), name)
	if err != nil {
		return fmt.Errorf("alert: cursor of sink %s: %w", name, err)
	}
	return nil
}
