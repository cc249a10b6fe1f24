package querylog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pgbenchEntry is the statement log entry of one `pgbench -S`
// transaction: in simple mode its text carries a different literal each
// time (unique), in prepared mode it is the same text every time.
func pgbenchEntry(sess string, seq int64, unique bool, rng *rand.Rand) Entry {
	e := Entry{Session: sess, Seq: seq, User: "bench@example.com", Target: "pgbench", Login: "postgres",
		Database: "pgbench", Source: "10.1.2.3:50412", Protocol: "extended",
		Statement: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", Params: 1,
		Duration: 95 * time.Microsecond, Rows: 1, Tag: "SELECT 1", Outcome: OutcomeOK}
	if unique {
		e.Protocol, e.Params = "simple", 0
		e.Statement = fmt.Sprintf("SELECT abalance FROM pgbench_accounts WHERE aid = %d;", 1+rng.IntN(10_000_000))
	}
	return e
}

// BenchmarkAppendStream measures the cost of storing one entry of a
// pgbench -S stream through a Writer, ns/op being wall time per entry
// and cpu-ns/entry the process's CPU time (user and system) per entry,
// which is what the statement log takes from the gateway on a small
// machine. The streams: "unique" (simple mode: a different literal in
// each statement) and "identical" (prepared mode). The paces:
// "saturated" (8 sessions appending as fast as they can: the writer
// takes full batches), "rate10k" and "rate2k" (8 sessions appending
// 10,000 or 2,000 entries a second in all, as pgbench -S through a
// gateway on a small machine or a busy application would), "batch32"
// and "batch4" (one session flushing every 32 or 4 entries: transactions
// of that size whatever the writer would do).
//
//	go test ./internal/querylog/ -run '^$' -bench 'AppendStream' -benchtime 20000x -cpu 1,2
func BenchmarkAppendStream(b *testing.B) {
	for _, stream := range []string{"unique", "identical"} {
		for _, pace := range []struct {
			name     string
			sessions int
			every    int // flush every so many entries; 0: never
			rate     int // entries a second in all; 0: as fast as they go
		}{{"saturated", 8, 0, 0}, {"rate10k", 8, 0, 10000}, {"rate2k", 8, 0, 2000}, {"batch32", 1, 32, 0}, {"batch4", 1, 4, 0}} {
			b.Run(stream+"/"+pace.name, func(b *testing.B) {
				db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "q.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				w := NewWriter(db, WriterOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
				ctx := context.Background()
				unique := stream == "unique"
				cpu0 := cpuTime(b)
				b.ResetTimer()
				if pace.rate > 0 {
					appendAtRate(b, pace.sessions, pace.rate, unique, func(e Entry) error { return w.Append(ctx, e) })
				} else {
					appendConcurrently(b, w, pace.sessions, pace.every, unique)
				}
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/entry")
				var n int
				if err := db.QueryRow(`SELECT count(*) FROM queries`).Scan(&n); err != nil {
					b.Fatal(err)
				}
				if n != b.N {
					b.Fatalf("got %d rows, want %d", n, b.N)
				}
			})
		}
	}
}

// appendAtRate appends b.N entries of the pgbench stream (unique or
// not), sessions taking turns, rate a second in all, with add. One
// goroutine keeps to the schedule, waking every millisecond (cheaper
// than a timer per entry).
func appendAtRate(b *testing.B, sessions, rate int, unique bool, add func(Entry) error) {
	rng := rand.New(rand.NewPCG(1, 7))
	seqs := make([]int64, sessions)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	t0 := time.Now()
	for i := 0; i < b.N; {
		<-tick.C
		for due := min(b.N, int(time.Since(t0).Seconds()*float64(rate))); i < due; i++ {
			s := i % sessions
			seqs[s]++
			if err := add(pgbenchEntry(fmt.Sprintf("s_%026d", s), seqs[s], unique, rng)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// appendConcurrently appends b.N entries of the pgbench stream (unique or
// not) to w from sessions goroutines, each as fast as it can, each
// flushing every so many entries (never if every is 0).
func appendConcurrently(b *testing.B, w *Writer, sessions, every int, unique bool) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for s := range sessions {
		n := b.N / sessions
		if s < b.N%sessions {
			n++
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(s), 7))
			sess := fmt.Sprintf("s_%026d", s)
			for i := 1; i <= n; i++ {
				if err := w.Append(ctx, pgbenchEntry(sess, int64(i), unique, rng)); err != nil {
					b.Error(err)
					return
				}
				if every > 0 && i%every == 0 {
					if err := w.Flush(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkAppendPacer is the floor of BenchmarkAppendStream's rate
// paces: the CPU the pacing itself takes (waking every millisecond and
// making the entries), with no writer.
func BenchmarkAppendPacer(b *testing.B) {
	for _, rate := range []int{10000, 2000} {
		b.Run(fmt.Sprintf("rate%dk", rate/1000), func(b *testing.B) {
			var sink int
			cpu0 := cpuTime(b)
			appendAtRate(b, 8, rate, true, func(e Entry) error { sink += len(e.Statement); return nil })
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/entry")
		})
	}
}

// mixedEntry is the next entry, at time t, of a log of many sessions at
// once, one session in sessions taking each statement at random, as
// synthLog (which uses it) has them: a user for every 100 sessions, up to 200
// users, 50 targets, a client address per session; 90% of statements
// succeed, the rest fail, are blocked, cancelled or incomplete. seqs
// holds each session's last seq.
func mixedEntry(rng *rand.Rand, sessions int, seqs map[int]int64, t time.Time) Entry {
	s := rng.IntN(sessions)
	seqs[s]++
	stmt := fmt.Sprintf(synthStatements[rng.IntN(len(synthStatements))], rng.IntN(100000))
	outcome, sqlstate, rule := OutcomeOK, "", ""
	switch r := rng.IntN(100); {
	case r < 6:
		outcome, sqlstate = OutcomeError, "42P01"
	case r < 8:
		outcome, rule = OutcomeBlocked, "no-drop"
	case r < 9:
		outcome = OutcomeCancelled
	case r < 10:
		outcome = OutcomeIncomplete
	}
	return Entry{Session: fmt.Sprintf("s_%05d", s), Seq: seqs[s], Time: t,
		User: fmt.Sprintf("user%03d", s%200), Target: fmt.Sprintf("target%02d", s%50), Login: "app", Database: "main",
		Source: fmt.Sprintf("10.%d.%d.%d:%d", s%4, s/256%256, s%256, 40000+s%1000), Protocol: "simple", Statement: stmt,
		Duration: time.Duration(rng.IntN(50000)) * time.Microsecond, Rows: int64(rng.IntN(1000)), Tag: "SELECT 1",
		Outcome: outcome, SQLState: sqlstate, Rule: rule}
}

// BenchmarkAppendMixed is BenchmarkAppendStream's saturated pace for a
// log of many sessions at once (mixedEntry): each transaction then
// changes index pages all over (a session's entries are together in
// queries_session and queries_query_session), which the write-ahead log
// and its checkpoints pay for; and with 20,000 sessions, more than the
// writer remembers (maxCachedSessions), it looks some sessions up again.
//
//	go test ./internal/querylog/ -run '^$' -bench 'AppendMixed' -benchtime 200000x
func BenchmarkAppendMixed(b *testing.B) {
	for _, sessions := range []int{200, 20000} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "q.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			w := NewWriter(db, WriterOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			rng := rand.New(rand.NewPCG(1, 2))
			seqs := map[int]int64{}
			start := time.Now()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for i := range b.N {
				if err := w.Append(ctx, mixedEntry(rng, sessions, seqs, start.Add(time.Duration(i)*time.Millisecond))); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/entry")
		})
	}
}

// BenchmarkAppendSchema measures what the parts of the schema cost the
// writer, by storing the same entries in a database without them: the
// pgbench -S stream with unique literals (BenchmarkAppendStream's
// unique/saturated) and many sessions at once (BenchmarkAppendMixed's
// sessions=200), each appended as fast as it goes. The variants:
// "as-is"; "no-query-session-index" (dropping queries_query_session,
// which finds a user's, a target's or a client address's entries: what
// it costs is what searching by them costs the writer; before migration
// 9 they had an index each on queries, which cost as much for the
// pgbench stream, whose entries share one user, target and source, and
// five times as much for many sessions); "fts-automerge4" (FTS5 merging
// segments four at a time, its default, rather than three as migration
// 8 has it: less merging, more segments for searches to look in);
// "fts-columnsize0" and "fts-detail-none" (queries_fts without its
// document sizes, which contentless_delete needs, or without positions,
// which phrase queries need); "no-fts".
//
//	go test ./internal/querylog/ -run '^$' -bench 'AppendSchema' -benchtime 100000x
func BenchmarkAppendSchema(b *testing.B) {
	variants := []struct{ name, sql string }{
		{"as-is", ""},
		{"no-query-session-index", `DROP INDEX queries_query_session`},
		{"fts-automerge4", `INSERT INTO queries_fts(queries_fts, rank) VALUES('automerge', 4)`},
		{"fts-columnsize0", `DROP TABLE queries_fts; CREATE VIRTUAL TABLE queries_fts USING fts5(statement, content='', columnsize=0);
			INSERT INTO queries_fts(queries_fts, rank) VALUES('automerge', 3)`},
		{"fts-detail-none", `DROP TABLE queries_fts;
			CREATE VIRTUAL TABLE queries_fts USING fts5(statement, content='', contentless_delete=1, detail=none);
			INSERT INTO queries_fts(queries_fts, rank) VALUES('automerge', 3)`},
		{"no-fts", `DROP TABLE queries_fts; CREATE TABLE queries_fts (rowid INTEGER PRIMARY KEY, statement TEXT);
			CREATE TRIGGER queries_fts_none BEFORE INSERT ON queries_fts BEGIN SELECT RAISE(IGNORE); END`},
	}
	for _, stream := range []string{"pgbench-unique", "mixed200"} {
		for _, v := range variants {
			b.Run(stream+"/"+v.name, func(b *testing.B) {
				db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "q.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if v.sql != "" {
					if _, err := db.Exec(v.sql); err != nil {
						b.Fatal(err)
					}
				}
				ctx := context.Background()
				w := NewWriter(db, WriterOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
				rng := rand.New(rand.NewPCG(1, 2))
				seqs := map[int]int64{}
				start := time.Now()
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for i := range b.N {
					var e Entry
					if stream == "mixed200" {
						e = mixedEntry(rng, 200, seqs, start.Add(time.Duration(i)*time.Millisecond))
					} else {
						s := i % 8
						seqs[s]++
						e = pgbenchEntry(fmt.Sprintf("s_%026d", s), seqs[s], true, rng)
					}
					if err := w.Append(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/entry")
			})
		}
	}
}
