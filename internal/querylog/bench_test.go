package querylog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// benchRows is the size of the synthesised statement log searched by
// BenchmarkSearch.
const benchRows = 1_000_000

// synthStatements are the statements of the synthesised log; %d is
// replaced by a random number, so literals vary.
var synthStatements = []string{
	"SELECT id, email, created_at FROM customers WHERE id = %d",
	"SELECT count(*) FROM orders WHERE status = 'open' AND customer_id = %d",
	"UPDATE orders SET status = 'shipped' WHERE id = %d",
	"INSERT INTO audit_trail (actor, action) VALUES ($1, $2) -- %d",
	"SELECT * FROM pg_stat_activity WHERE pid <> %d",
	"BEGIN",
	"COMMIT",
	"DELETE FROM sessions WHERE expires_at < now() - interval '%d days'",
	"SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id LIMIT %d",
	"EXPLAIN ANALYZE SELECT * FROM invoices WHERE total > %d",
	"VACUUM ANALYZE orders",
	"SET statement_timeout = %d",
	"SELECT pg_size_pretty(pg_database_size(current_database())) /* %d */",
	"DROP TABLE customers_backup_%d",
	"GRANT SELECT ON payroll TO analyst_%d",
}

// synthLog fills db with n entries as a busy deployment would have them
// (mixedEntry): 200 users, 50 targets, 20,000 sessions over 30 days; 90%
// of statements succeed, the rest fail, are blocked, cancelled or
// incomplete. It stores them through a Writer, as the gateway does, so
// that the tables and the full-text index are laid out as the writer lays
// them out (which matters: a search checking rows against the full-text
// index takes as long as the index has segments); a million take about a
// minute.
func synthLog(tb testing.TB, db *store.DB, n int, start time.Time) {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	step := 30 * 24 * time.Hour / time.Duration(n)
	seqs := map[int]int64{}
	w := NewWriter(db, WriterOptions{Queue: 4 * maxBatch, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for i := range n {
		if err := w.Append(ctx, mixedEntry(rng, 20000, seqs, start.Add(time.Duration(i)*step))); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		tb.Fatal(err)
	}
}

// synthDB is the synthesised log, built once per process.
var synthDB struct {
	sync.Mutex
	db    *store.DB
	dir   string
	start time.Time
}

func TestMain(m *testing.M) {
	code := m.Run()
	if synthDB.db != nil {
		synthDB.db.Close()
		os.RemoveAll(synthDB.dir)
	}
	os.Exit(code)
}

func synthesised(b *testing.B) (*store.DB, time.Time) {
	b.Helper()
	synthDB.Lock()
	defer synthDB.Unlock()
	if synthDB.db != nil {
		return synthDB.db, synthDB.start
	}
	dir, err := os.MkdirTemp("", "vigil-querylog-bench-")
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "q.db"))
	if err != nil {
		os.RemoveAll(dir)
		b.Fatal(err)
	}
	start := time.Now().Add(-30 * 24 * time.Hour)
	t0 := time.Now()
	synthLog(b, db, benchRows, start)
	b.Logf("synthesised %d statements in %v", benchRows, time.Since(t0).Round(time.Millisecond))
	synthDB.db, synthDB.dir, synthDB.start = db, dir, start
	return db, start
}

// BenchmarkSearch measures search latency on a 1,000,000-statement log:
// each iteration runs one query of a kind with random values; p50 and p99
// over the iterations are reported.
func BenchmarkSearch(b *testing.B) {
	db, start := synthesised(b)
	now := start.Add(30 * 24 * time.Hour)
	rng := rand.New(rand.NewPCG(3, 4))
	user := func() string { return fmt.Sprintf("user%03d", rng.IntN(200)) }
	target := func() string { return fmt.Sprintf("target%02d", rng.IntN(50)) }
	queries := []struct {
		name string
		q    func() Query
	}{
		{"latest", func() Query { return Query{Desc: true} }},
		{"session", func() Query { return Query{Session: fmt.Sprintf("s_%05d", rng.IntN(20000))} }},
		{"user+7d", func() Query { return Query{User: user(), Since: now.Add(-7 * 24 * time.Hour)} }},
		{"target+1d-desc", func() Query { return Query{Target: target(), Since: now.Add(-24 * time.Hour), Desc: true} }},
		{"time-window", func() Query {
			since := start.Add(time.Duration(rng.IntN(29*24)) * time.Hour)
			return Query{Since: since, Until: since.Add(time.Hour)}
		}},
		{"since-30d", func() Query { return Query{Since: now.Add(-30 * 24 * time.Hour)} }},
		{"source", func() Query {
			s := rng.IntN(20000)
			return Query{Source: fmt.Sprintf("10.%d.%d.%d", s%4, s/256%256, s%256)}
		}},
		{"outcome-blocked", func() Query { return Query{Outcome: OutcomeBlocked, Desc: true} }},
		{"text-rare", func() Query { return Query{Text: `"drop table"`} }},
		{"text-common", func() Query { return Query{Text: "select", Desc: true} }},
		{"text-prefix", func() Query { return Query{Text: "pg_stat*"} }},
		{"text+user", func() Query { return Query{Text: "payroll", User: user()} }},
		{"text+target+7d", func() Query {
			return Query{Text: `"drop table"`, Target: target(), Since: now.Add(-7 * 24 * time.Hour)}
		}},
		{"text+7d", func() Query { return Query{Text: "orders", Since: now.Add(-7 * 24 * time.Hour)} }},
		{"text+user+1d-desc", func() Query {
			return Query{Text: "select", User: user(), Since: now.Add(-24 * time.Hour), Desc: true}
		}},
		{"text+session", func() Query { return Query{Text: "select", Session: fmt.Sprintf("s_%05d", rng.IntN(20000))} }},
		{"page-deep", func() Query { return Query{User: user(), After: int64(rng.IntN(benchRows))} }},
	}
	for _, qc := range queries {
		b.Run(qc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				q := qc.q()
				t0 := time.Now()
				if _, err := Search(context.Background(), db, q); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkAppend measures stored statements per second through a
// Writer: 32 concurrent appenders (sessions) per CPU, group commit,
// full-text index; the time includes storing the last one (Close).
func BenchmarkAppend(b *testing.B) {
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w := NewWriter(db, WriterOptions{})
	var next sync.Mutex
	sessions := 0
	b.SetParallelism(32)
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		sessions++
		sess := fmt.Sprintf("s_%d", sessions)
		next.Unlock()
		var seq int64
		for pb.Next() {
			seq++
			if err := w.Append(context.Background(), Entry{Session: sess, Seq: seq, User: "alice", Target: "prod-db",
				Login: "app", Database: "main", Source: "10.1.2.3:50000", Protocol: "extended",
				Statement: "SELECT id, email FROM customers WHERE id = $1", Params: 1, Duration: 800 * time.Microsecond,
				Rows: 1, Tag: "SELECT 1", Outcome: OutcomeOK}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "statements/s")
}
