package siem

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
)

// waitDeadline bounds every wait for a condition; generous, because the
// race detector and a loaded machine are slow, and nothing asserts on it.
const waitDeadline = 30 * time.Second

// waitFor polls cond until it holds, failing the test after waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openDB opens a fresh migrated SQLite database in a temporary directory.
func openDB(t testing.TB) *store.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vigil.db")
	// store.Open reads the path as a URI path; t.TempDir keeps '#' and
	// '%' from the test's name, which SQLite would misread.
	if strings.ContainsAny(path, "#?%") {
		t.Fatalf("test name gives database path %q, which SQLite would misread", path)
	}
	db, err := store.Open(context.Background(), "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openLog opens an audit log on db, closed when the test ends.
func openLog(t testing.TB, db *store.DB) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends n events, each with about size bytes of data, from
// several goroutines so the log commits them in groups. Their seqs follow
// the log's head; which event gets which seq is the log's business.
func appendN(t testing.TB, l *audit.Log, n, size int) {
	t.Helper()
	const workers = 16
	pad := strings.Repeat("x", size)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				ev := audit.Event{Type: "ssh.exec", Actor: fmt.Sprintf("user%d", i%7), Target: "db-prod",
					Session: fmt.Sprintf("s-%d", i%3), Source: "192.0.2.1:4242", Data: map[string]any{"i": i, "pad": pad}}
				if err := l.Append(context.Background(), ev); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// seqs returns from..to.
func seqs(from, to int64) []int64 {
	out := []int64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// testLog writes the forwarder's log lines to the test log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startForwarder runs a Forwarder over sinks with short timings until the
// returned stop is called (or the test ends); stop returns once Run has.
func startForwarder(t testing.TB, db *store.DB, src AuditSource, reg prometheus.Registerer, sinks ...Sink) (*Forwarder, func()) {
	t.Helper()
	f, err := NewForwarder(db, src, sinks, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), reg)
	if err != nil {
		t.Fatal(err)
	}
	f.backoff, f.maxBackoff, f.poll = 10*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return f, stop
}

// cursorOf reads a sink's stored cursor.
func cursorOf(t testing.TB, db *store.DB, name string) int64 {
	t.Helper()
	var c int64
	err := db.QueryRowContext(context.Background(), `SELECT seq FROM audit_forward_cursors WHERE sink = $1`, name).Scan(&c)
	if err != nil {
		return -1
	}
	return c
}

// metricValue returns the value of the counter or gauge name{sink} in
// reg, or -1 when absent.
func metricValue(t testing.TB, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "sink" && lp.GetValue() == sink {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
