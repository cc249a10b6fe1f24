package monitor

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/token"
)

// BenchmarkVerifyMonitored measures Verifier.Verify with a no-op observer
// (monitoring off) and with the no-op observer chained to a running
// monitor (on), interleaved in one run so both see the same machine, and
// reports each and their ratio (goal: on/off ≤ 1.05). Run with -cpu 1 to
// make the monitor's goroutine share the verifying core.
func BenchmarkVerifyMonitored(b *testing.B) {
	e := newEnv(b, nil)
	noop := func(context.Context, *token.Attempt) error { return nil }
	ve := newVerifierEnv(b, noop, e)
	on, err := token.NewVerifier(token.VerifierConfig{Issuer: "vigil", Audience: "vigil", MaxTTL: token.DefaultMaxTTL,
		Keyring: ve.kr, Revocations: ve.revs, Now: e.clock.Now, Observe: token.Observers(noop, e.m.Observe)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	toks := make([]string, 1024)
	srcs := make([]netip.Addr, len(toks))
	for i := range toks {
		toks[i], _ = ve.issue(b, token.Request{Subject: fmt.Sprintf("user%d", i)})
		srcs[i] = netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)})
	}
	var offNs, onNs time.Duration
	timed := func(v *token.Verifier, i int) time.Duration {
		t := time.Now()
		if _, err := v.Verify(ctx, toks[i], srcs[i]); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	n := 0
	for b.Loop() {
		// Each token is verified by both, in alternating order: the second
		// of a pair finds the caches warm.
		i := n % len(toks)
		if n%2 == 0 {
			offNs += timed(ve.v, i)
			onNs += timed(on, i)
		} else {
			onNs += timed(on, i)
			offNs += timed(ve.v, i)
		}
		n++
	}
	off, onv := float64(offNs)/float64(n), float64(onNs)/float64(n)
	b.ReportMetric(off, "off-ns/verify")
	b.ReportMetric(onv, "on-ns/verify")
	b.ReportMetric(onv/off, "on/off")
	b.ReportMetric(value(e.m.met.dropped), "dropped")
}

// BenchmarkProcess is the monitor's own cost per verification, spent on
// its goroutine: an accepted token (the common case) and a refused one.
func BenchmarkProcess(b *testing.B) {
	for _, tc := range []struct {
		name string
		a    token.Attempt
	}{
		{"accepted", ok(t0, "alice", office, "j1")},
		{"bad-signature", refused(t0, token.ReasonBadSignature, "alice", attacker)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, nil)
			e.m.sink = discard{}
			i := 0
			for b.Loop() {
				a := tc.a
				a.Time = t0.Add(time.Duration(i) * time.Millisecond)
				a.JTI = "jti-" + fmt.Sprint(i%1000)
				e.m.process(context.Background(), &a)
				i++
			}
		})
	}
}

// discard is a Raiser that stores nothing.
type discard struct{}

func (discard) Raise(_ context.Context, a alert.Alert) (alert.Alert, bool, error) {
	a.ID = 1
	return a, false, nil
}

// TestMemoryBounded feeds 100,000 distinct sources (each with a bad
// signature, an unknown kid and an accepted token of its own user) and
// reports the heap the detectors hold; then 300,000 more: the tables stay
// at their bounds and the heap stops growing (the maps grow once, when
// eviction starts, and no more).
func TestMemoryBounded(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("memory measurement: not with -short or -race")
	}
	e := newEnv(t, nil)
	e.m.sink = discard{}
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	feed := func(from, to int) {
		for i := from; i < to; i++ {
			src := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}).String()
			at := t0.Add(time.Duration(i) * time.Millisecond)
			sub := fmt.Sprintf("user-%d", i)
			for _, a := range []token.Attempt{
				refused(at, token.ReasonBadSignature, sub, src),
				with(refused(at, token.ReasonUnknownKID, sub, src), func(a *token.Attempt) { a.KID = "kid-" + sub }),
				ok(at, sub, src, "jti-"+sub),
			} {
				e.clock.Set(a.Time)
				e.m.process(context.Background(), &a)
			}
		}
	}
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	base := heap()
	feed(0, 100_000)
	at100k := heap() - base
	feed(100_000, 200_000)
	at200k := heap() - base
	feed(200_000, 400_000)
	at400k := heap() - base
	// Then 100,000 alg-none tokens from as many sources: each its own
	// incident, so the incident table fills to its bound.
	for i := 0; i < 100_000; i++ {
		a := with(refused(t0.Add(time.Hour+time.Duration(i)*time.Millisecond), token.ReasonAlgNone, "mallory",
			netip.AddrFrom4([4]byte{101, byte(i >> 16), byte(i >> 8), byte(i)}).String()), func(a *token.Attempt) { a.Alg = "none" })
		e.clock.Set(a.Time)
		e.m.process(context.Background(), &a)
	}
	withIncidents := heap() - base
	d := e.m.det
	t.Logf("distinct sources: 100,000: %.1f MiB (%d bytes/source); 200,000: %.1f MiB; 400,000: %.1f MiB; and %d incidents: %.1f MiB",
		mib(at100k), at100k/100_000, mib(at200k), mib(at400k), e.m.inc.open.len(), mib(withIncidents))
	t.Logf("tables: burst by source %d, by subject %d, first network %d, usual hours %d, incidents %d",
		d.burstBySource.len(), d.burstBySubject.len(), d.firstNet.len(), d.hours.users.len(), e.m.inc.open.len())
	for _, c := range []struct {
		name   string
		n, max int
	}{
		{"burst by source", d.burstBySource.len(), defaultMaxTracked},
		{"burst by subject", d.burstBySubject.len(), defaultMaxTracked},
		{"first network", d.firstNet.len(), defaultMaxTracked},
		{"usual hours", d.hours.users.len(), defaultMaxUsers},
		{"incidents", e.m.inc.open.len(), defaultMaxIncidents},
	} {
		if c.n > c.max {
			t.Errorf("%s holds %d entries, want at most %d", c.name, c.n, c.max)
		}
	}
	if grown := at400k - at200k; grown > 2<<20 {
		t.Errorf("heap grew %.1f MiB from 200,000 to 400,000 sources, want it bounded", mib(grown))
	}
	if withIncidents > 128<<20 {
		t.Errorf("the detectors hold %.1f MiB, want less than 128", mib(withIncidents))
	}
}
