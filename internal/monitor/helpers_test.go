package monitor

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

// t0 is a Tuesday morning in the tests' clock.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func openTestDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// env is a monitor over a real alert store, a fake clock and its own
// registry.
type env struct {
	m     *Monitor
	st    *alert.Store
	db    *store.DB
	clock *clock
	reg   *prometheus.Registry
}

// newEnv returns a monitor with DefaultConfig changed by mutate (may be
// nil).
func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	e := &env{db: openTestDB(t), clock: newClock(t0), reg: prometheus.NewRegistry()}
	var err error
	if e.st, err = alert.NewStore(e.db, e.clock.Now, 0, nil); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if e.m, err = New(cfg, e.st, nil, e.reg, e.clock.Now); err != nil {
		t.Fatal(err)
	}
	return e
}

// feed examines attempts in order, on the clock of each.
func (e *env) feed(attempts ...token.Attempt) {
	for i := range attempts {
		e.clock.Set(attempts[i].Time)
		e.m.process(context.Background(), &attempts[i])
	}
}

// flush runs the goroutine's tick at the clock's time (final reports
// every open incident).
func (e *env) flush(final bool) { e.m.tick(context.Background(), final) }

// alerts returns the monitor's alerts, oldest first, with rule (all when
// rule is empty).
func (e *env) alerts(t testing.TB, rule string) []alert.Alert {
	t.Helper()
	as, err := e.st.List(context.Background(), alert.Filter{Kind: AlertKind, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(as)
	out := as[:0]
	for _, a := range as {
		if rule == "" || a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

// counter reads the monitor's counter vigil_monitor_NAME_total{detector}.
func (e *env) counter(name, detector string) float64 {
	m := map[string]map[string]prometheus.Counter{"findings": e.m.met.findings, "alerts": e.m.met.alerts,
		"suppressed": e.m.met.suppressed}[name]
	return value(m[detector])
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// ok is an accepted Vigil token of sub at at, from src.
func ok(at time.Time, sub, src, jti string) token.Attempt {
	return token.Attempt{Time: at, Accepted: true, Reason: token.ReasonOK, Issuer: "vigil", Subject: sub, JTI: jti,
		KID: "kid-2026-11", Alg: token.AlgEdDSA, Source: src, Kind: "vigil", SignatureValid: true,
		IssuedAt: at.Add(-time.Minute), ExpiresAt: at.Add(14 * time.Minute)}
}

// refused is a token refused for reason before its signature was checked
// (claims unverified).
func refused(at time.Time, reason token.Reason, sub, src string) token.Attempt {
	return token.Attempt{Time: at, Reason: reason, Detail: string(reason), Issuer: "vigil", Subject: sub,
		JTI: "jti-" + sub, KID: "kid-2026-11", Alg: token.AlgEdDSA, Source: src, Kind: "vigil"}
}

// with returns a changed by fn.
func with(a token.Attempt, fn func(*token.Attempt)) token.Attempt {
	fn(&a)
	return a
}

// repeat returns n copies of a, dt apart.
func repeat(a token.Attempt, n int, dt time.Duration) []token.Attempt {
	out := make([]token.Attempt, n)
	for i := range out {
		out[i] = a
		out[i].Time = a.Time.Add(time.Duration(i) * dt)
	}
	return out
}

// want is an expected alert: its severity and a subset of its evidence
// (compared as printed).
type want struct {
	severity alert.Severity
	// actor is checked unless empty; "-" wants none.
	actor string
	data  map[string]any
}

// detectorCase feeds attempts to a monitor (DefaultConfig changed by
// cfg) and expects the alerts of detector.
type detectorCase struct {
	name     string
	cfg      func(*Config)
	attempts []token.Attempt
	want     []want
	// suppressed is the expected vigil_monitor_suppressed_total.
	suppressed float64
}

func runDetectorCases(t *testing.T, detector string, cases []detectorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			e.feed(tc.attempts...)
			got := e.alerts(t, detector)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d %s alerts %v, want %d", len(got), detector, summaries(got), len(tc.want))
			}
			for i, w := range tc.want {
				a := got[i]
				if a.Severity != w.severity {
					t.Errorf("alert %d: got severity %s, want %s", i, a.Severity, w.severity)
				}
				if wantActor := strings.TrimPrefix(w.actor, "-"); w.actor != "" && a.Actor != wantActor {
					t.Errorf("alert %d: got actor %q, want %q", i, a.Actor, wantActor)
				}
				for k, v := range w.data {
					if fmt.Sprint(a.Data[k]) != fmt.Sprint(v) {
						t.Errorf("alert %d: got data[%s] %v, want %v", i, k, a.Data[k], v)
					}
				}
				checkEvidence(t, a)
			}
			if got := e.counter("suppressed", detector); got != tc.suppressed {
				t.Errorf("got suppressed %v, want %v", got, tc.suppressed)
			}
		})
	}
}

// checkEvidence checks what every monitor alert carries.
func checkEvidence(t *testing.T, a alert.Alert) {
	t.Helper()
	if a.Kind != AlertKind || a.Summary == "" || a.Data["detector"] != a.Rule {
		t.Errorf("got kind %q summary %q detector %v, want kind monitor, a summary and the detector", a.Kind, a.Summary, a.Data["detector"])
	}
	for _, k := range []string{"first_seen", "last_seen", "occurrences"} {
		if _, ok := a.Data[k]; !ok {
			t.Errorf("alert %q has no %s", a.Summary, k)
		}
	}
}

func summaries(as []alert.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a.Severity) + ": " + a.Summary
	}
	return out
}
