package querylog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/store"
)

// waitTimeout bounds waitFor: long enough never to be reached on a slow
// machine unless the condition never comes.
const waitTimeout = 30 * time.Second

func openDB(t testing.TB) (*store.DB, string) {
	t.Helper()
	url := "sqlite://" + filepath.Join(t.TempDir(), "q.db")
	db, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, url
}

// newWriter returns a silent Writer on db with opts, closed when the test
// ends.
func newWriter(t *testing.T, db *store.DB, opts WriterOptions) *Writer {
	t.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := NewWriter(db, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.Close(ctx)
	})
	return w
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue returns the value of the counter or gauge name in reg, or
// -1 when it is not there.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

func entry(session string, seq int64) Entry {
	return Entry{Session: session, Seq: seq, User: "alice", Target: "prod-db", Login: "app", Database: "main",
		Source: "10.0.0.5:50001", Protocol: "simple", Statement: fmt.Sprintf("SELECT %d FROM customers", seq),
		Duration: 1500 * time.Microsecond, Rows: 1, Tag: "SELECT 1", Outcome: OutcomeOK}
}

// storedKeys returns "session/seq" of every stored entry, in ID order,
// and how many rows the full-text index has.
func storedKeys(t *testing.T, db *store.DB) ([]string, int) {
	t.Helper()
	rows, err := db.Query(`SELECT session, seq FROM queries ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fmt.Sprintf("%s/%d", s, n))
	}
	var fts int
	if err := db.QueryRow(`SELECT count(*) FROM queries_fts`).Scan(&fts); err != nil {
		t.Fatal(err)
	}
	return keys, fts
}

func TestWriterConcurrentAppends(t *testing.T) {
	db, _ := openDB(t)
	reg := prometheus.NewRegistry()
	w := newWriter(t, db, WriterOptions{Queue: 64, Registerer: reg})
	ctx := context.Background()
	const writers, each = 16, 150
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := int64(1); i <= each; i++ {
				if err := w.Append(ctx, entry(fmt.Sprint("s_", g), i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	keys, fts := storedKeys(t, db)
	if len(keys) != writers*each || fts != writers*each {
		t.Fatalf("got %d rows and %d indexed, want %d", len(keys), fts, writers*each)
	}
	// Each session's statements are stored once each, in order.
	next := map[string]int64{}
	for _, k := range keys {
		sess, n, _ := strings.Cut(k, "/")
		seq, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if seq != next[sess]+1 {
			t.Fatalf("%s: got seq %d after %d, want %d", sess, seq, next[sess], next[sess]+1)
		}
		next[sess] = seq
	}
	if len(next) != writers {
		t.Fatalf("got %d sessions, want %d", len(next), writers)
	}
	for _, m := range []struct {
		name string
		want float64
	}{{"vigil_querylog_written_total", writers * each}, {"vigil_querylog_failed_batches_total", 0}, {"vigil_querylog_queue_depth", 0}} {
		if got := metricValue(t, reg, m.name); got != m.want {
			t.Fatalf("%s: got %v, want %v", m.name, got, m.want)
		}
	}
}

func TestFlushAndClose(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	ctx := context.Background()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush of nothing: got %v, want nil", err)
	}
	for i := int64(1); i <= 1000; i++ {
		if err := w.Append(ctx, entry("s_1", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Flush returns only once everything before it is stored: no
	// waiting after it.
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := storedKeys(t, db); len(keys) != 1000 {
		t.Fatalf("after flush: got %d rows, want 1000", len(keys))
	}
	for i := int64(1001); i <= 1100; i++ {
		if err := w.Append(ctx, entry("s_1", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Close stores what is queued.
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := storedKeys(t, db); len(keys) != 1100 {
		t.Fatalf("after close: got %d rows, want 1100", len(keys))
	}
	if err := w.Append(ctx, entry("s_1", 1101)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: got %v, want ErrClosed", err)
	}
	if err := w.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("flush after close: got %v, want ErrClosed", err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("second close: got %v, want nil", err)
	}
}

func TestAppendRefusesInvalidEntries(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	tests := []struct {
		name   string
		change func(*Entry)
	}{
		{"no session", func(e *Entry) { e.Session = "" }},
		{"seq zero", func(e *Entry) { e.Seq = 0 }},
		{"no outcome", func(e *Entry) { e.Outcome = "" }},
		{"unknown outcome", func(e *Entry) { e.Outcome = "canceled" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := entry("s_1", 1)
			tc.change(&e)
			if err := w.Append(context.Background(), e); err == nil {
				t.Fatalf("got nil, want an error")
			}
		})
	}
}

// TestDuplicateKeptOnce: an entry stored twice (a retried commit that had
// succeeded, or a gateway repeating itself) is kept once, and does not
// stop the entries after it, whether the two are in one transaction or
// not.
func TestDuplicateKeptOnce(t *testing.T) {
	tests := []struct {
		name  string
		flush bool // after each entry: one transaction each
	}{{"one transaction", false}, {"a transaction each", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t)
			// Nothing is stored until a Flush: the entries appended
			// between two are written in one transaction.
			w := newWriter(t, db, WriterOptions{CommitInterval: time.Hour})
			ctx := context.Background()
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for _, seq := range []int64{1, 2, 1, 3, 3} {
				if err := w.Append(ctx, entry("s_1", seq)); err != nil {
					t.Fatal(err)
				}
				if tc.flush {
					if err := w.Flush(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			keys, fts := storedKeys(t, db)
			if fmt.Sprint(keys) != "[s_1/1 s_1/2 s_1/3]" || fts != 3 {
				t.Fatalf("got %v with %d indexed, want [s_1/1 s_1/2 s_1/3] with 3", keys, fts)
			}
		})
	}
}

// TestBatchStoredAsAppended: a transaction of many entries (every size of
// multi-row INSERT) stores each as it was appended, in order, and indexes
// each statement (a blank one not at all, a huge one by its start).
func TestBatchStoredAsAppended(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{CommitInterval: time.Hour})
	ctx := context.Background()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	n := 0
	for _, r := range insertRows {
		n += r
	}
	n += 2 // and a 64, 16, 4, 1, 1, 1 after
	var want []Entry
	for i := range n {
		e := Entry{Session: fmt.Sprint("s_", i%3), Seq: int64(i/3 + 1), Time: base.Add(time.Duration(i) * time.Second),
			User: fmt.Sprint("user", i%5), Target: fmt.Sprint("target", i%7), Login: fmt.Sprint("login", i),
			Database: fmt.Sprint("db", i), Source: fmt.Sprintf("10.0.0.%d:%d", i, 40000+i), Protocol: "extended",
			Statement: fmt.Sprintf("SELECT %d FROM customers WHERE note = 'row%d'", i, i), Params: i % 4,
			Duration: time.Duration(i) * time.Millisecond, Rows: int64(i * 10), Tag: fmt.Sprint("SELECT ", i*10),
			Outcome: outcomes[i%len(outcomes)], SQLState: fmt.Sprint("4200", i%10), Error: fmt.Sprint("error ", i),
			Rule: fmt.Sprint("rule", i), Masked: i % 3}
		switch i {
		case 40:
			e.Statement = " \t\n "
		case 41:
			e.Statement = "SELECT early, " + strings.Repeat("x, ", maxIndexedStatement/3) + "late FROM wide"
		}
		want = append(want, e)
		if err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := Search(ctx, db, Query{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != n {
		t.Fatalf("got %d entries, want %d", len(res.Entries), n)
	}
	for i, got := range res.Entries {
		if got.ID != int64(i+1) {
			t.Fatalf("entry %d: got ID %d, want %d", i, got.ID, i+1)
		}
		if !got.Time.Equal(want[i].Time) {
			t.Fatalf("entry %d: got time %v, want %v", i, got.Time, want[i].Time)
		}
		got.Time = want[i].Time
		if got.Entry != want[i] {
			t.Fatalf("entry %d: got %+v, want %+v", i, got.Entry, want[i])
		}
	}
	if _, fts := storedKeys(t, db); fts != n-1 {
		t.Fatalf("got %d statements indexed, want %d (all but the blank one)", fts, n-1)
	}
	for _, tc := range []struct {
		text string
		want []int64
	}{{"row17", []int64{18}}, {"early wide", nil}, {"early", []int64{42}}, {"late", nil}} {
		res, err := Search(ctx, db, Query{Text: tc.text})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, s := range res.Entries {
			got = append(got, s.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("text %q: got %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestCommitInterval: an entry appended less than CommitInterval after
// the last commit began waits for the rest of it, unless a Flush or Close
// asks for it, or the queue holds a transaction's worth.
func TestCommitInterval(t *testing.T) {
	ctx := context.Background()
	t.Run("waits", func(t *testing.T) {
		db, _ := openDB(t)
		w := newWriter(t, db, WriterOptions{CommitInterval: time.Hour})
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Append(ctx, entry("s_1", 1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if keys, _ := storedKeys(t, db); len(keys) != 0 {
			t.Fatalf("before the interval: got %v stored, want none", keys)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if keys, _ := storedKeys(t, db); len(keys) != 1 {
			t.Fatalf("after flush: got %v stored, want s_1/1", keys)
		}
	})
	t.Run("stores when it has passed", func(t *testing.T) {
		db, _ := openDB(t)
		w := newWriter(t, db, WriterOptions{CommitInterval: 50 * time.Millisecond})
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Append(ctx, entry("s_1", 1)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the entry to be stored", func() bool { keys, _ := storedKeys(t, db); return len(keys) == 1 })
	})
	t.Run("a full queue does not wait", func(t *testing.T) {
		db, _ := openDB(t)
		w := newWriter(t, db, WriterOptions{Queue: 4, CommitInterval: time.Hour})
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		for i := int64(1); i <= 50; i++ {
			if err := w.Append(short, entry("s_1", i)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "a full queue's entries to be stored", func() bool { keys, _ := storedKeys(t, db); return len(keys) >= 46 })
	})
	t.Run("close does not wait", func(t *testing.T) {
		db, _ := openDB(t)
		w := newWriter(t, db, WriterOptions{CommitInterval: time.Hour})
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Append(ctx, entry("s_1", 1)); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		if err := w.Close(short); err != nil {
			t.Fatal(err)
		}
		if keys, _ := storedKeys(t, db); len(keys) != 1 {
			t.Fatalf("after close: got %v stored, want s_1/1", keys)
		}
	})
}

// TestBackpressure: with the store's write lock held elsewhere, a tiny
// queue fills and Append blocks (until its context ends, or until there
// is room); nothing is lost.
func TestBackpressure(t *testing.T) {
	db, url := openDB(t)
	reg := prometheus.NewRegistry()
	w := newWriter(t, db, WriterOptions{Queue: 1, Registerer: reg})
	ctx := context.Background()
	other, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lock, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()

	// The writer takes the first entry and waits for the lock (holding a
	// connection); the second fills the queue.
	if err := w.Append(ctx, entry("s_1", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the writer to wait for the lock", func() bool { return db.Stats().InUse == 1 })
	if err := w.Append(ctx, entry("s_1", 2)); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := w.Append(short, entry("s_1", 3)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append to a full queue: got %v, want context.DeadlineExceeded", err)
	}
	if got := metricValue(t, reg, "vigil_querylog_queue_depth"); got != 2 {
		t.Fatalf("queue_depth: got %v, want 2", got)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- w.Append(ctx, entry("s_1", 3)) }()
	select {
	case err := <-blocked:
		t.Fatalf("append returned %v with the queue full, want it to block", err)
	default:
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := storedKeys(t, db); fmt.Sprint(keys) != "[s_1/1 s_1/2 s_1/3]" {
		t.Fatalf("got %v, want [s_1/1 s_1/2 s_1/3]", keys)
	}
}

// TestStoreFailure: while the store fails, entries are kept; once it has
// failed for FailAfter, Append and Flush say so (the gateway fails
// closed); when it works again every kept entry is stored once, in order.
// storedOneThenBroken stores s_1/1 through a new Writer with opts (and
// its metrics in a registry of its own), then takes the queries table
// away, so that every later write fails until repair puts it back.
func storedOneThenBroken(t *testing.T, db *store.DB, opts WriterOptions) (w *Writer, reg *prometheus.Registry, repair func()) {
	t.Helper()
	reg = prometheus.NewRegistry()
	opts.Registerer = reg
	w = newWriter(t, db, opts)
	ctx := context.Background()
	if err := w.Append(ctx, entry("s_1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE queries RENAME TO queries_away`); err != nil {
		t.Fatal(err)
	}
	return w, reg, func() {
		t.Helper()
		if _, err := db.Exec(`ALTER TABLE queries_away RENAME TO queries`); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreFailure(t *testing.T) {
	db, _ := openDB(t)
	// The table goes away: every write fails until it is back.
	w, reg, repair := storedOneThenBroken(t, db, WriterOptions{Queue: 4, FailAfter: 10 * time.Millisecond})
	ctx := context.Background()
	var appendErr error
	seq := int64(1)
	for {
		seq++
		if appendErr = w.Append(ctx, entry("s_1", seq)); appendErr != nil {
			break
		}
	}
	if !errors.Is(appendErr, ErrUnavailable) {
		t.Fatalf("append to a failing store: got %v, want ErrUnavailable", appendErr)
	}
	accepted := seq - 1
	if err := w.Flush(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("flush of a failing store: got %v, want ErrUnavailable", err)
	}
	if metricValue(t, reg, "vigil_querylog_failed_batches_total") <= 0 {
		t.Fatal("failed_batches_total: got 0, want failures counted")
	}
	if got := metricValue(t, reg, "vigil_querylog_queue_depth"); got != float64(accepted-1) {
		t.Fatalf("queue_depth: got %v, want %d", got, accepted-1)
	}

	repair()
	waitFor(t, "the writer to recover", func() bool { _, err := w.failure(); return err == nil })
	if err := w.Append(ctx, entry("s_1", seq)); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	keys, fts := storedKeys(t, db)
	if int64(len(keys)) != seq || fts != len(keys) {
		t.Fatalf("got %d rows (%d indexed), want %d", len(keys), fts, seq)
	}
	for i, k := range keys {
		if want := fmt.Sprintf("s_1/%d", i+1); k != want {
			t.Fatalf("row %d: got %s, want %s", i, k, want)
		}
	}
}

// TestCloseGivesUp: a store that never comes back does not hang Close
// past its context; Close says how many entries were not stored, and an
// Append blocked on the full queue is released.
func TestCloseGivesUp(t *testing.T) {
	db, _ := openDB(t)
	reg := prometheus.NewRegistry()
	w := newWriter(t, db, WriterOptions{Queue: 1, Registerer: reg})
	ctx := context.Background()
	db.Close()
	// The writer takes the first entry and retries it; the second fills
	// the queue.
	if err := w.Append(ctx, entry("s_1", 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed write", func() bool { return metricValue(t, reg, "vigil_querylog_failed_batches_total") > 0 })
	if err := w.Append(ctx, entry("s_1", 2)); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- w.Append(ctx, entry("s_1", 3)) }()

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := w.Close(short)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: got %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if want := "querylog: 2 statements not stored"; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("close: got %q, want it to start %q", err, want)
	}
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked append: got %v, want ErrClosed", err)
	}
}

// TestUpgradeFromSchema7: a store written before migration 8 (the
// full-text index's merge setting) keeps its entries searchable after it,
// and the writer adds to them.
func TestUpgradeFromSchema7(t *testing.T) {
	db, url := openDB(t)
	ctx := context.Background()
	w := newWriter(t, db, WriterOptions{})
	for i := int64(1); i <= 3; i++ {
		if err := w.Append(ctx, entry("s_1", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Back to schema 7 as it was: FTS5's default merge setting.
	if _, err := db.Exec(`DELETE FROM schema_migrations WHERE version > 7;
		INSERT INTO queries_fts (queries_fts, rank) VALUES ('automerge', 4)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var automerge string
	if err := db.QueryRow(`SELECT v FROM queries_fts_config WHERE k = 'automerge'`).Scan(&automerge); err != nil || automerge != "3" {
		t.Fatalf("automerge: got %q (%v), want 3", automerge, err)
	}
	w = newWriter(t, db, WriterOptions{})
	if err := w.Append(ctx, entry("s_2", 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := Search(ctx, db, Query{Text: "customers"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range res.Entries {
		got = append(got, fmt.Sprintf("%s/%d", s.Session, s.Seq))
	}
	if want := "[s_1/1 s_1/2 s_1/3 s_2/1]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}
