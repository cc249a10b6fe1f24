package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/token"
)

// Timing of the monitor's goroutine.
const (
	// pollEvery is how often Run takes the attempts queued since it last
	// looked. It polls rather than waits on the queue so that Observe
	// never has to wake it: waking a parked goroutine on another core
	// cost each verification 7-13 % (BenchmarkVerifyMonitored), a
	// buffered send costs tens of nanoseconds. At 10 ms the default queue
	// absorbs 400,000 verifications a second.
	pollEvery = 10 * time.Millisecond
	// tickEvery paces flushing incidents (summaries, alerts held back by
	// the cap) and the overload check.
	tickEvery = 10 * time.Second
	// overloadEvery is the least time between two monitor_overloaded
	// alerts.
	overloadEvery = time.Minute
	// raiseTimeout bounds one Raise, so a stuck alert store costs the
	// monitor a queue's worth of dropped attempts, not its goroutine.
	raiseTimeout = 5 * time.Second
	// stopTimeout bounds the work Run does once its context ends:
	// examining what is queued and reporting open incidents.
	stopTimeout = 5 * time.Second
)

// EventAlert is the audit event type Audited appends for each alert.
const EventAlert = "monitor.alert"

// Raiser stores an alert; *alert.Store is one.
type Raiser interface {
	Raise(ctx context.Context, a alert.Alert) (stored alert.Alert, merged bool, err error)
}

// Monitor examines every token verification for attacks and misuse and
// raises deduplicated, rate-limited alerts. Create it with New, pass its
// Observe to the Verifier (after the audit recorder, with
// token.Observers), and run Run in a goroutine.
type Monitor struct {
	cfg  Config
	sink Raiser
	log  *slog.Logger
	now  func() time.Time
	met  *metrics

	// queue holds copies of the attempts Observe was given; nil when the
	// monitor is disabled.
	queue chan token.Attempt
	// dropped counts attempts Observe could not queue.
	dropped atomic.Uint64

	// mu guards inc and keyWarned: Run's goroutine and KeyAge (called by
	// housekeeping) both raise alerts. It is never held across a Raise.
	mu        sync.Mutex
	inc       *incidents
	keyWarned map[string]time.Time

	// det is the detectors' state, used by Run's goroutine only.
	det *detectors
	// found collects one attempt's findings; Run's goroutine only.
	found []finding
	// droppedReported and lastOverload track the overload alert; Run's
	// goroutine only.
	droppedReported uint64
	lastOverload    time.Time
}

// New returns a monitor raising its alerts with sink. logger may be nil
// (no logging); reg may be nil (metrics not registered); now may be nil
// (time.Now). cfg is validated; zero thresholds take their defaults.
func New(cfg Config, sink Raiser, logger *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("monitor: New needs an alert sink")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	m := &Monitor{cfg: cfg, sink: sink, log: logger, now: now, keyWarned: make(map[string]time.Time)}
	if cfg.Enabled {
		m.queue = make(chan token.Attempt, cfg.QueueSize)
	}
	var err error
	if m.det, err = newDetectors(&m.cfg); err != nil {
		return nil, err
	}
	if m.met, err = newMetrics(reg, func() float64 { return float64(len(m.queue)) }); err != nil {
		return nil, err
	}
	m.inc = newIncidents(cfg)
	m.inc.onSuppress = func(detector string) { m.met.suppressed[detector].Inc() }
	return m, nil
}

// Observe is a token.Observer: it queues a copy of a for the monitor's
// goroutine and returns at once. It never fails a verification: when the
// queue is full the attempt is dropped, counted
// (vigil_monitor_dropped_total) and reported by a monitor_overloaded
// alert at most once a minute.
func (m *Monitor) Observe(_ context.Context, a *token.Attempt) error {
	if m.queue == nil || a == nil {
		return nil
	}
	select {
	case m.queue <- *a:
	default:
		m.dropped.Add(1)
		m.met.dropped.Inc()
	}
	return nil
}

// Run examines queued attempts and raises alerts until ctx ends; then it
// examines what is still queued and reports the occurrences its open
// incidents have counted but not yet reported, within a few seconds. Call
// it once, in its own goroutine.
func (m *Monitor) Run(ctx context.Context) {
	if m.queue == nil {
		<-ctx.Done()
		return
	}
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-poll.C:
			m.drain(ctx)
		case <-t.C:
			m.tick(ctx, false)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			m.drain(sctx)
			m.tick(sctx, true)
			return
		}
	}
}

// drain examines the attempts queued now (not those queued meanwhile, so
// that a flood cannot keep Run from its ticks).
func (m *Monitor) drain(ctx context.Context) {
	for n := len(m.queue); n > 0 && ctx.Err() == nil; n-- {
		a := <-m.queue
		m.process(ctx, &a)
	}
}

// process runs the detectors on a and raises what they find.
func (m *Monitor) process(ctx context.Context, a *token.Attempt) {
	m.found = m.det.detect(a, m.found[:0])
	if len(m.found) == 0 {
		return
	}
	now := m.now()
	var out []pending
	m.mu.Lock()
	for i := range m.found {
		m.met.findings[m.found[i].detector].Inc()
		out = append(out, m.inc.offer(&m.found[i], now)...)
	}
	m.mu.Unlock()
	for i := range out {
		m.raise(ctx, &out[i])
	}
	clear(m.found) // drop references to evidence
}

// tick raises what the open incidents have to report (everything, when
// final) and checks for dropped attempts.
func (m *Monitor) tick(ctx context.Context, final bool) {
	now := m.now()
	m.mu.Lock()
	out := m.inc.flush(now, final)
	m.mu.Unlock()
	for i := range out {
		m.raise(ctx, &out[i])
	}
	m.checkOverload(ctx, now)
}

// checkOverload raises a monitor_overloaded alert when attempts were
// dropped since the last one, at most once per overloadEvery.
func (m *Monitor) checkOverload(ctx context.Context, now time.Time) {
	d := m.dropped.Load()
	if d == m.droppedReported || (!m.lastOverload.IsZero() && now.Sub(m.lastOverload) < overloadEvery) {
		return
	}
	n := d - m.droppedReported
	m.met.findings[DetectorOverloaded].Inc()
	p := pending{detector: DetectorOverloaded, alert: alert.Alert{Time: now, Severity: alert.High, Kind: AlertKind,
		Rule: DetectorOverloaded, DedupKey: "monitor/" + DetectorOverloaded,
		Summary: fmt.Sprintf("token monitor overloaded: %d verifications dropped unexamined (queue of %d full)", n, cap(m.queue)),
		Data:    map[string]any{"detector": DetectorOverloaded, "dropped": n, "dropped_total": d, "queue_size": cap(m.queue)}}}
	if m.raise(ctx, &p) == nil {
		m.droppedReported, m.lastOverload = d, now
	}
}

// raise hands p's alert to the sink, logs and counts it. On failure the
// incident's occurrences are put back so the next tick reports them.
func (m *Monitor) raise(ctx context.Context, p *pending) error {
	rctx, cancel := context.WithTimeout(ctx, raiseTimeout)
	defer cancel()
	stored, merged, err := m.sink.Raise(rctx, p.alert)
	if err != nil && stored.ID == 0 {
		m.met.raiseErrors.Inc()
		m.log.Error("monitor alert not raised", "detector", p.detector, "summary", p.alert.Summary, "err", err)
		if p.incident != "" {
			m.mu.Lock()
			m.inc.failed(p)
			m.mu.Unlock()
		}
		return fmt.Errorf("monitor: raise %s alert: %w", p.detector, err)
	}
	if err != nil {
		// Stored, but a later step (Audited's audit event) failed.
		m.log.Error("monitor alert raised but not audited", "detector", p.detector, "alert", stored.ID, "err", err)
	}
	m.met.alerts[p.detector].Inc()
	d := p.alert.Data
	str := func(k string) string { s, _ := d[k].(string); return s }
	m.log.Warn("monitor alert", "detector", p.detector, "severity", p.alert.Severity, "alert", stored.ID, "merged", merged,
		"summary", p.alert.Summary, "user", p.alert.Actor, "source", p.alert.Source, "jti", str("jti"), "kid", str("kid"),
		"occurrences", d["occurrences"])
	return nil
}

// KeyAge warns (a key_age alert) for each active key in keys older than
// the rotation policy (key_age.max_age), at most once per key_age.every
// per key. Housekeeping calls it with token.Keyring.List(). It returns the
// errors of alerts it could not raise.
func (m *Monitor) KeyAge(ctx context.Context, keys []token.KeyInfo) error {
	c := m.cfg.KeyAge
	if !m.cfg.Enabled || !c.Enabled {
		return nil
	}
	now := m.now()
	var errs []error
	for _, k := range keys {
		age := now.Sub(k.CreatedAt)
		if !k.Active || age <= c.MaxAge {
			continue
		}
		m.mu.Lock()
		last, warned := m.keyWarned[k.KID]
		due := !warned || now.Sub(last) >= c.Every
		if due {
			m.keyWarned[k.KID] = now
		}
		m.mu.Unlock()
		if !due {
			continue
		}
		m.met.findings[DetectorKeyAge].Inc()
		p := pending{detector: DetectorKeyAge, alert: alert.Alert{Time: now, Severity: c.Severity, Kind: AlertKind,
			Rule: DetectorKeyAge, Target: k.KID, DedupKey: "monitor/" + DetectorKeyAge + "/" + k.KID,
			Summary: fmt.Sprintf("signing key %s (%s) is %s old, older than the rotation policy of %s; rotate it",
				k.KID, k.Alg, days(age), days(c.MaxAge)),
			Data: map[string]any{"detector": DetectorKeyAge, "kid": k.KID, "alg": k.Alg,
				"created_at": k.CreatedAt.UTC().Format(time.RFC3339), "age_days": int(age.Hours() / 24),
				"max_age_days": int(c.MaxAge.Hours() / 24)}}}
		if err := m.raise(ctx, &p); err != nil {
			m.mu.Lock()
			delete(m.keyWarned, k.KID)
			m.mu.Unlock()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// days writes d in days (with hours below two days).
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// Audited returns a Raiser that raises with r and, for every alert newly
// stored (not a repeat merged into an earlier one), appends an
// EventAlert audit event with its evidence to sink. The audit forwarders
// (audit.forward: syslog, webhook) thus carry the monitor's alerts to the
// SIEM, and the tamper-evident trail holds them. If the event cannot be
// appended the stored alert is returned with the error.
func Audited(r Raiser, sink audit.Sink) Raiser { return auditedRaiser{r: r, sink: sink} }

type auditedRaiser struct {
	r    Raiser
	sink audit.Sink
}

func (a auditedRaiser) Raise(ctx context.Context, al alert.Alert) (alert.Alert, bool, error) {
	stored, merged, err := a.r.Raise(ctx, al)
	if err != nil || merged {
		return stored, merged, err
	}
	data := make(map[string]any, len(stored.Data)+4)
	maps.Copy(data, stored.Data)
	data["alert_id"], data["severity"], data["rule"], data["summary"] = stored.ID, string(stored.Severity), stored.Rule, stored.Summary
	actor := stored.Actor
	if actor == "" {
		actor = "vigil"
	}
	ev := audit.Event{Time: stored.Time, Type: EventAlert, Actor: actor, Target: stored.Target, Source: stored.Source, Data: data}
	if err := a.sink.Append(ctx, ev); err != nil {
		return stored, false, fmt.Errorf("monitor: audit alert %d: %w", stored.ID, err)
	}
	return stored, false, nil
}

// metrics are the monitor's Prometheus metrics, with the per-detector
// counters resolved once.
type metrics struct {
	findings, alerts, suppressed map[string]prometheus.Counter
	dropped, raiseErrors         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, queued func() float64) (*metrics, error) {
	findings := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_monitor_findings_total",
		Help: "Token monitor findings (detector matches, before deduplication) by detector."}, []string{"detector"})
	alerts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_monitor_alerts_total",
		Help: "Token monitor alerts handed to the alert store (first alerts and summaries) by detector."}, []string{"detector"})
	suppressed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_monitor_suppressed_total",
		Help: "Token monitor findings not raised as an alert of their own (deduplicated or over the rate cap; counted in a summary) by detector."}, []string{"detector"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_monitor_dropped_total",
		Help: "Token verifications the monitor dropped unexamined because its queue was full."})
	raiseErrors := prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_monitor_raise_errors_total",
		Help: "Token monitor alerts the alert store refused (retried by the next summary)."})
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_monitor_queue_length",
		Help: "Token verifications waiting for the monitor."}, queued)
	if reg != nil {
		for _, c := range []prometheus.Collector{findings, alerts, suppressed, dropped, raiseErrors, queue} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("monitor: register metrics: %w", err)
			}
		}
	}
	m := &metrics{findings: map[string]prometheus.Counter{}, alerts: map[string]prometheus.Counter{},
		suppressed: map[string]prometheus.Counter{}, dropped: dropped, raiseErrors: raiseErrors}
	for _, d := range detectorNames {
		m.findings[d], m.alerts[d], m.suppressed[d] = findings.WithLabelValues(d), alerts.WithLabelValues(d), suppressed.WithLabelValues(d)
	}
	return m, nil
}
