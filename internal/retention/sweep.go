package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/metrics"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/vault"
)

// Audit event types of a disposal. Each disposal is two events, so that a
// crash between deleting the file and recording it is visible and no
// event ever claims a deletion that did not happen:
//
//  1. EventDispose, before anything is deleted: the decision (path,
//     digest, age, policy, retention). If it cannot be appended, nothing
//     is deleted and the sweep stops.
//  2. The file is deleted (and its directory synced), then EventDisposed
//     records the outcome ("deleted" or "already_missing"), then the
//     session is marked disposed (sessions.disposed_at).
//
// So a session marked disposed always has its EventDisposed, and an
// EventDispose without a following EventDisposed for the same session is
// a disposal cut short (crash, store failure): the session is not marked,
// the next sweep takes it again and finishes (typically "already_missing").
// A deletion that fails is recorded as EventDisposeFailed and retried by
// the next sweep.
const (
	EventDispose       = "recording.dispose"
	EventDisposed      = "recording.disposed"
	EventDisposeFailed = "recording.dispose_failed"
)

// Outcomes recorded in EventDisposed.
const (
	OutcomeDeleted        = "deleted"
	OutcomeAlreadyMissing = "already_missing"
)

// Actor is the audit actor of disposals.
const Actor = "vigil"

const (
	// batchSize bounds the sessions read per query; a sweep pages through
	// every candidate in batches of this size.
	batchSize = 100
	// finishTimeout bounds finishing a disposal once its EventDispose is
	// recorded: that runs without the caller's cancellation (a cancelled
	// API request must not leave a disposal half done) but not forever.
	finishTimeout = 30 * time.Second
)

// Targets is what the sweeper needs of the vault: the targets that exist
// now, for their labels.
type Targets interface {
	List(ctx context.Context) ([]vault.Target, error)
}

// Config configures a Sweeper. DB, Targets and Audit are required.
type Config struct {
	// Policy is the retention configuration; New validates it.
	Policy config.Retention
	DB     *store.DB
	// Targets supplies target labels. A session whose target has since
	// been deleted gets the default retention.
	Targets Targets
	// Audit records every disposal; it must be durable on return.
	Audit audit.Sink
	// RecordingsDir, when set, confines deletion: a recording path outside
	// it is never deleted (recorded as a failure). Empty trusts the paths
	// in the sessions table.
	RecordingsDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log may be nil (no logging).
	Log *slog.Logger
	// Registerer, when not nil, gets vigil_recordings_disposed_total.
	Registerer prometheus.Registerer
}

// Sweeper deletes recordings past their retention that no legal hold
// keeps, auditing each disposal. Create it with New.
type Sweeper struct {
	policy  Policy
	every   time.Duration
	db      *store.DB
	targets Targets
	audit   audit.Sink
	holds   *Holds
	dir     string
	now     func() time.Time
	log     *slog.Logger
	// maxCutoffTargets is the constant of that name; tests lower it.
	maxCutoffTargets int

	disposedTotal prometheus.Counter

	// mu serialises sweeps (the periodic one and those asked for over
	// the API), so two never dispose of the same recording.
	mu sync.Mutex
}

// New validates cfg and returns its sweeper.
func New(cfg Config) (*Sweeper, error) {
	if cfg.DB == nil || cfg.Targets == nil || cfg.Audit == nil {
		return nil, errors.New("retention: a sweeper needs DB, Targets and Audit")
	}
	p, err := ParsePolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	every, err := parseEvery(cfg.Policy.Every)
	if err != nil {
		return nil, err
	}
	s := &Sweeper{policy: p, every: every, db: cfg.DB, targets: cfg.Targets, audit: cfg.Audit, now: cfg.Now, log: cfg.Log,
		maxCutoffTargets: maxCutoffTargets,
		disposedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_recordings_disposed_total",
			Help: "Recordings disposed of by the retention policy (deleted, or found already missing).",
		})}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RecordingsDir != "" {
		if s.dir, err = filepath.Abs(cfg.RecordingsDir); err != nil {
			return nil, fmt.Errorf("retention: recordings directory %s: %w", cfg.RecordingsDir, err)
		}
	}
	s.holds = NewHolds(cfg.DB, s.now)
	// Another sweeper on the same registry counts together.
	if s.disposedTotal, err = metrics.Register(cfg.Registerer, s.disposedTotal); err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	return s, nil
}

// Holds returns the legal hold store the sweeper honours.
func (s *Sweeper) Holds() *Holds { return s.holds }

// Result is what one sweep did.
type Result struct {
	// StartedAt is the sweep's "now": ages are counted to it.
	StartedAt time.Time `json:"started_at"`
	// Examined counts the recordings looked at: the expired ones (with
	// more than 500 targets on a retention of their own, every one older
	// than the shortest retention).
	Examined int `json:"examined"`
	// Disposed lists the recordings disposed of, in order.
	Disposed []Disposal `json:"disposed"`
	// Held counts expired recordings kept by a legal hold.
	Held int `json:"held"`
	// Failed lists recordings that could not be deleted; the next sweep
	// tries them again.
	Failed []Failure `json:"failed,omitempty"`
}

// Disposal is one recording disposed of.
type Disposal struct {
	Session string `json:"session"`
	Target  string `json:"target"`
	User    string `json:"user"`
	Path    string `json:"path"`
	// Policy is the label policy that applied ("env=prod") or "default".
	Policy string `json:"policy"`
	// Retention and Age are Go durations ("2160h0m0s"); Age is counted
	// from the end of the session.
	Retention string `json:"retention"`
	Age       string `json:"age"`
	// Outcome is "deleted" or "already_missing".
	Outcome string `json:"outcome"`
}

// Failure is one recording that could not be disposed of.
type Failure struct {
	Session string `json:"session"`
	Path    string `json:"path"`
	Error   string `json:"error"`
}

// candidate is an ended session with a recording not yet disposed of.
type candidate struct {
	id, target, user, state, path, digest string
	// ref is when its age is counted from: ended_at, or started_at for a
	// session that never recorded an end.
	ref int64
}

// Sweep disposes of every recording past its retention that no legal hold
// in force covers. Only ended and interrupted sessions are considered,
// never active ones; a recording's age counts from the session's end (its
// start if it has no end time). Retention comes from the target's labels
// now (see Policy.For); a session whose target has been deleted gets the
// default. It returns what it did; an error (the audit log or the store
// failing, or ctx ending) stops it, with what it did before in the result.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	res := Result{StartedAt: now.UTC(), Disposed: []Disposal{}}
	targets, err := s.targets.List(ctx)
	if err != nil {
		return res, fmt.Errorf("retention: sweep: list targets: %w", err)
	}
	labels := make(map[string]map[string]string, len(targets))
	for _, t := range targets {
		labels[t.Name] = t.Labels
	}
	holds, err := s.holds.List(ctx, false)
	if err != nil {
		return res, fmt.Errorf("retention: sweep: %w", err)
	}
	expired := s.expiredBefore(now, labels)
	after := candidate{ref: -1}
	for {
		page, err := s.candidates(ctx, expired, after)
		if err != nil {
			return res, err
		}
		for _, c := range page {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("retention: sweep: %w", err)
			}
			res.Examined++
			tl, exists := labels[c.target]
			keep, policy := s.policy.For(tl)
			age := now.Sub(store.Time(c.ref))
			if age <= keep {
				continue
			}
			if held(holds, c) {
				res.Held++
				continue
			}
			d, f, err := s.dispose(ctx, c, age, keep, policy, !exists)
			switch {
			case err != nil:
				return res, err
			case f != nil:
				res.Failed = append(res.Failed, *f)
			case d != nil:
				res.Disposed = append(res.Disposed, *d)
			default:
				res.Held++ // a hold placed during the sweep
			}
		}
		if len(page) < batchSize {
			return res, nil
		}
		after = page[len(page)-1]
	}
}

func held(holds []Hold, c candidate) bool {
	for i := range holds {
		if holds[i].Covers(c.id, c.target, c.user) {
			return true
		}
	}
	return false
}

// maxCutoffTargets bounds the targets given their own cutoff in the
// candidate query; with more targets whose retention is not the default,
// the query selects by the shortest retention and Sweep filters the rest.
const maxCutoffTargets = 500

// cutoffs says, per target, before which age reference (Unix nanoseconds)
// a recording is expired, so the candidate query returns expired
// recordings only, and pages stay few however many recordings are kept.
type cutoffs struct {
	// def applies to targets not in targets (and to deleted ones).
	def     int64
	targets map[string]int64
}

// expiredBefore returns the cutoffs at now for the targets' labels.
func (s *Sweeper) expiredBefore(now time.Time, labels map[string]map[string]string) cutoffs {
	def, _ := s.policy.For(nil)
	c := cutoffs{def: store.Nanos(now.Add(-def)), targets: map[string]int64{}}
	for name, l := range labels {
		if keep, _ := s.policy.For(l); keep != def {
			c.targets[name] = store.Nanos(now.Add(-keep))
		}
	}
	if len(c.targets) > s.maxCutoffTargets {
		return cutoffs{def: store.Nanos(now.Add(-s.policy.Shortest()))}
	}
	return c
}

// candidates returns the next batch (after the cursor, in (ref, id)
// order) of ended or interrupted sessions with a recording not disposed
// of, whose age reference is before their target's cutoff.
func (s *Sweeper) candidates(ctx context.Context, expired cutoffs, after candidate) ([]candidate, error) {
	args := []any{session.StateEnded, session.StateInterrupted, after.ref, after.id, batchSize}
	cutoff := "$" + fmt.Sprint(len(args)+1)
	args = append(args, expired.def)
	if len(expired.targets) > 0 {
		var b strings.Builder
		b.WriteString("CASE target")
		for name, at := range expired.targets {
			fmt.Fprintf(&b, " WHEN $%d THEN $%d", len(args)+1, len(args)+2)
			args = append(args, name, at)
		}
		b.WriteString(" ELSE " + cutoff + " END")
		cutoff = b.String()
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, target, subject, state, recording, digest, ref FROM (
			SELECT id, target, subject, state, recording, digest,
				CASE WHEN ended_at <> 0 THEN ended_at ELSE started_at END AS ref
			FROM sessions
			WHERE state IN ($1, $2) AND disposed_at = 0 AND recording <> ''
		) c
		WHERE ref < `+cutoff+` AND (ref > $3 OR (ref = $3 AND id > $4))
		ORDER BY ref, id LIMIT $5`, args...)
	if err != nil {
		return nil, fmt.Errorf("retention: sweep: list sessions: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.id, &c.target, &c.user, &c.state, &c.path, &c.digest, &c.ref); err != nil {
			return nil, fmt.Errorf("retention: sweep: list sessions: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: sweep: list sessions: %w", err)
	}
	return out, nil
}

// dispose disposes of one expired recording (see EventDispose for the
// order of steps). It returns the disposal, or a failure to delete that
// the sweep should step over, or neither when a hold placed since the
// sweep began now covers it; an error stops the sweep.
func (s *Sweeper) dispose(ctx context.Context, c candidate, age, keep time.Duration, policy string, targetDeleted bool) (*Disposal, *Failure, error) {
	// The holds were read when the sweep began; a hold placed since must
	// still win.
	if h, err := s.holds.covering(ctx, c.id, c.target, c.user); err != nil {
		return nil, nil, fmt.Errorf("retention: sweep: %w", err)
	} else if h != nil {
		return nil, nil, nil
	}
	d := Disposal{Session: c.id, Target: c.target, User: c.user, Path: c.path, Policy: policy,
		Retention: keep.String(), Age: age.Round(time.Second).String()}
	data := map[string]any{"path": c.path, "digest": c.digest, "age": d.Age, "retention": d.Retention,
		"policy": policy, "state": c.state, "user": c.user}
	if targetDeleted {
		data["target_deleted"] = true
	}
	log := s.log.With("session", c.id, "target", c.target, "path", c.path)
	if err := s.within(c.path); err != nil {
		data["error"] = err.Error()
		if aerr := s.audit.Append(ctx, s.event(EventDisposeFailed, c, data)); aerr != nil {
			return nil, nil, fmt.Errorf("retention: record %s for session %s: %w", EventDisposeFailed, c.id, aerr)
		}
		log.Error("recording not disposed of", "err", err)
		return nil, &Failure{Session: c.id, Path: c.path, Error: err.Error()}, nil
	}
	if err := s.audit.Append(ctx, s.event(EventDispose, c, data)); err != nil {
		return nil, nil, fmt.Errorf("retention: record %s for session %s (nothing deleted): %w", EventDispose, c.id, err)
	}

	// The decision is on record: finish even if the caller goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	d.Outcome = OutcomeDeleted
	if err := os.Remove(c.path); errors.Is(err, fs.ErrNotExist) {
		d.Outcome = OutcomeAlreadyMissing
	} else if err != nil {
		fdata := map[string]any{"path": c.path, "error": err.Error()}
		if aerr := s.audit.Append(ctx, s.event(EventDisposeFailed, c, fdata)); aerr != nil {
			return nil, nil, fmt.Errorf("retention: record %s for session %s: %w", EventDisposeFailed, c.id, aerr)
		}
		log.Error("recording not disposed of", "err", err)
		return nil, &Failure{Session: c.id, Path: c.path, Error: err.Error()}, nil
	} else if err := syncDir(filepath.Dir(c.path)); err != nil {
		// The file is unlinked; only its durability across a power
		// loss is in doubt.
		log.Warn("recording deleted; syncing its directory failed", "err", err)
	}
	if err := s.audit.Append(ctx, s.event(EventDisposed, c, map[string]any{"path": c.path, "digest": c.digest, "outcome": d.Outcome})); err != nil {
		return nil, nil, fmt.Errorf("retention: record %s for session %s (file %s): %w", EventDisposed, c.id, d.Outcome, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET disposed_at = $2 WHERE id = $1 AND disposed_at = 0`,
		c.id, store.Nanos(s.now())); err != nil {
		return nil, nil, fmt.Errorf("retention: mark session %s disposed: %w", c.id, err)
	}
	s.disposedTotal.Inc()
	log.Info("recording disposed of", "policy", policy, "retention", d.Retention, "age", d.Age, "outcome", d.Outcome)
	return &d, nil, nil
}

func (s *Sweeper) event(typ string, c candidate, data map[string]any) audit.Event {
	return audit.Event{Type: typ, Actor: Actor, Target: c.target, Session: c.id, Data: data}
}

// within refuses a path outside the recordings directory (when one is
// configured): the sweeper deletes recordings, never anything else a
// damaged or tampered sessions table might name.
func (s *Sweeper) within(path string) error {
	if s.dir == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("retention: recording path %s: %w", path, err)
	}
	rel, err := filepath.Rel(s.dir, abs)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("retention: recording path %s is outside the recordings directory %s; not deleted", path, s.dir)
	}
	return nil
}

// syncDir makes a deletion in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Run sweeps now and then every Every until ctx ends, logging what each
// sweep did. Errors are logged; the next sweep tries again.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		res, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.log.Error("retention sweep stopped", "err", err, "disposed", len(res.Disposed))
		case len(res.Disposed) > 0 || len(res.Failed) > 0:
			s.log.Info("retention sweep", "disposed", len(res.Disposed), "held", res.Held, "failed", len(res.Failed))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
