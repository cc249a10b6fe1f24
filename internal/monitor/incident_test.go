package monitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/token"
)

// TestFloodIdenticalBadSignatures replays 100,000 identical bad-signature
// attempts from one source: one alert, then one summary carrying the
// exact count of what was suppressed.
func TestFloodIdenticalBadSignatures(t *testing.T) {
	e := newEnv(t, nil)
	const n = 100_000
	bad := refused(t0, token.ReasonBadSignature, "alice", attacker)
	for i := 0; i < n; i++ {
		a := bad
		a.Time = t0.Add(time.Duration(i) * time.Millisecond)
		e.clock.Set(a.Time)
		e.m.process(context.Background(), &a)
	}
	// The burst starts at the 10th failure: every one from then on is a
	// finding, the first raised, the rest suppressed.
	findings := float64(n - 9)
	if got := e.alerts(t, ""); len(got) != 1 {
		t.Fatalf("got %d alerts during the flood %v, want 1", len(got), summaries(got))
	}
	e.clock.Set(t0.Add(defaultSummaryEvery + time.Minute))
	e.flush(false)
	got := e.alerts(t, "")
	if len(got) != 2 {
		t.Fatalf("got %d alerts after the summary %v, want 2", len(got), summaries(got))
	}
	sum := got[1]
	if sum.Rule != DetectorSignatureBurst || sum.Data["suppressed"] != findings-1 || sum.Data["occurrences"] != findings {
		t.Errorf("got summary %s %q suppressed %v occurrences %v, want signature_burst %v and %v",
			sum.Rule, sum.Summary, sum.Data["suppressed"], sum.Data["occurrences"], findings-1, findings)
	}
	for _, c := range []struct {
		name string
		want float64
	}{{"findings", findings}, {"alerts", 2}, {"suppressed", findings - 1}} {
		if got := e.counter(c.name, DetectorSignatureBurst); got != c.want {
			t.Errorf("got %s %v, want %v", c.name, got, c.want)
		}
	}
	// Once quiet for the dedup window the incident ends without another
	// alert, and its memory is freed.
	e.clock.Set(t0.Add(3 * time.Hour))
	e.flush(false)
	if got := e.alerts(t, ""); len(got) != 2 {
		t.Errorf("got %d alerts after the incident ended, want 2", len(got))
	}
	if n := e.m.inc.open.len(); n != 0 {
		t.Errorf("got %d open incidents, want 0", n)
	}
}

// TestFloodDistinctSources floods alg-none tokens from 100,000 sources:
// every one is its own incident, so the per-minute cap bounds the alerts
// and the incident table bounds the memory.
func TestFloodDistinctSources(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxIncidents = 1000 })
	const n = 100_000
	for i := 0; i < n; i++ {
		a := with(refused(t0.Add(time.Duration(i)*time.Millisecond), token.ReasonAlgNone, "mallory", ""), func(a *token.Attempt) {
			a.Alg = "none"
			a.Source = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		})
		e.clock.Set(a.Time)
		e.m.process(context.Background(), &a)
	}
	// 100 s of flood: two minutes' worth of capped alerts.
	if got := len(e.alerts(t, DetectorAlg)); got != 2*defaultMaxPerMinute {
		t.Errorf("got %d alerts, want %d (the cap of two minutes)", got, 2*defaultMaxPerMinute)
	}
	if got, want := e.counter("suppressed", DetectorAlg), float64(n-2*defaultMaxPerMinute); got != want {
		t.Errorf("got suppressed %v, want %v", got, want)
	}
	if got := e.m.inc.open.len(); got > 1000 {
		t.Errorf("got %d open incidents, want at most 1000", got)
	}
	// Held-back incidents are reported later, still within the cap.
	e.clock.Set(t0.Add(3 * time.Minute))
	e.flush(false)
	if got := len(e.alerts(t, DetectorAlg)); got != 3*defaultMaxPerMinute {
		t.Errorf("got %d alerts after a flush, want %d", got, 3*defaultMaxPerMinute)
	}
}

// flaky is an alert store that fails while failing is set.
type flaky struct {
	*alert.Store
	failing bool
}

func (f *flaky) Raise(ctx context.Context, a alert.Alert) (alert.Alert, bool, error) {
	if f.failing {
		return alert.Alert{}, false, errors.New("database is locked")
	}
	return f.Store.Raise(ctx, a)
}

// TestRaiseFailureRetried: an alert the store refuses is not lost; the
// next flush raises it with everything counted since.
func TestRaiseFailureRetried(t *testing.T) {
	e := newEnv(t, nil)
	sink := &flaky{Store: e.st, failing: true}
	e.m.sink = sink
	revoked := signedRefusal(t0, token.ReasonRevoked, "alice", attacker)
	e.feed(repeat(revoked, 3, time.Second)...)
	if got := len(e.alerts(t, "")); got != 0 {
		t.Fatalf("got %d alerts while the store fails, want 0", got)
	}
	if got := value(e.m.met.raiseErrors); got != 1 {
		t.Errorf("got raise errors %v, want 1", got)
	}
	sink.failing = false
	e.clock.Set(t0.Add(time.Minute))
	e.flush(false)
	got := e.alerts(t, "")
	if len(got) != 1 || got[0].Data["occurrences"] != float64(3) {
		t.Fatalf("got alerts %v, want one covering 3 occurrences", summaries(got))
	}
}

func TestOverload(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QueueSize = 4 })
	ctx := context.Background()
	a := ok(t0, "alice", office, "j1")
	for i := 0; i < 100; i++ {
		if err := e.m.Observe(ctx, &a); err != nil {
			t.Fatalf("Observe with a full queue: got %v, want nil (verification must not fail)", err)
		}
	}
	if got := value(e.m.met.dropped); got != 96 {
		t.Errorf("got dropped %v, want 96", got)
	}
	e.flush(false)
	got := e.alerts(t, DetectorOverloaded)
	if len(got) != 1 || got[0].Data["dropped"] != float64(96) || got[0].Severity != alert.High {
		t.Fatalf("got %v, want one high monitor_overloaded alert with 96 dropped", summaries(got))
	}
	// More drops: at most one alert a minute.
	for i := 0; i < 10; i++ {
		e.m.Observe(ctx, &a)
	}
	e.clock.Set(t0.Add(30 * time.Second))
	e.flush(false)
	if got := value(e.m.met.alerts[DetectorOverloaded]); got != 1 {
		t.Errorf("got %v overload alerts within a minute, want 1", got)
	}
	e.clock.Set(t0.Add(61 * time.Second))
	e.flush(false)
	if got := value(e.m.met.alerts[DetectorOverloaded]); got != 2 {
		t.Errorf("got %v overload alerts after a minute, want 2", got)
	}
	// The store merges the repeat into the first alert (count 2).
	if got := e.alerts(t, DetectorOverloaded); len(got) != 1 || got[0].Count != 2 {
		t.Errorf("got %d stored overload alerts (count %d), want 1 (count 2)", len(got), got[0].Count)
	}
}

func TestTable(t *testing.T) {
	tb := newTable[string, int](3)
	for i, k := range []string{"a", "b", "c"} {
		v, existed := tb.put(k)
		if existed {
			t.Fatalf("put %s: existed", k)
		}
		*v = i
	}
	tb.get("a") // a is now the most recent; b the least
	v, _ := tb.put("d")
	*v = 3
	tests := []struct {
		key  string
		want int
		ok   bool
	}{{"a", 0, true}, {"b", 0, false}, {"c", 2, true}, {"d", 3, true}}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			got := tb.get(tc.key)
			if (got != nil) != tc.ok || (got != nil && *got != tc.want) {
				t.Errorf("got %v, want %v (present %v)", got, tc.want, tc.ok)
			}
		})
	}
	tb.remove("c")
	if _, existed := tb.put("e"); existed || tb.len() != 3 || len(tb.nodes) != 3 || tb.evicted != 1 {
		t.Errorf("got len %d nodes %d evicted %d, want a removed node reused", tb.len(), len(tb.nodes), tb.evicted)
	}
	var keys []string
	tb.each(func(k string, _ *int) { keys = append(keys, k) })
	if fmt.Sprint(keys) != "[e d a]" {
		t.Errorf("got order %v, want [e d a]", keys)
	}
}

func TestWindow(t *testing.T) {
	tests := []struct {
		name    string
		offsets []time.Duration
		want    int
	}{
		{"same instant", []time.Duration{0, 0, 0}, 3},
		{"within the bucket", []time.Duration{0, 20 * time.Second, 40 * time.Second}, 3},
		{"half the previous bucket still counts", []time.Duration{0, 0, 90 * time.Second}, 2},
		{"two windows later nothing", []time.Duration{0, 0, 0, 150 * time.Second}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w window
			var got int
			base := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
			for _, o := range tc.offsets {
				got = w.add(base.Add(o), time.Minute)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
