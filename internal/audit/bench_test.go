package audit

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// BenchmarkAppendSigned measures durable appends per second as the server
// runs them: 128 concurrent writers, group commit, a command in every
// event (full-text indexed), checkpoints signed every second.
func BenchmarkAppendSigned(b *testing.B) {
	db, _ := openDB(b)
	key, _, err := OpenSigningKey(context.Background(), db, testMasterKey(b), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	l, err := OpenWith(context.Background(), db, Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(64)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(context.Background(), Event{Type: "ssh.exec", Actor: "alice", Target: "prod-db-1", Session: "s_abc",
				Source: "10.1.2.3", Data: map[string]any{"command": "sudo systemctl restart nginx && tail -n 100 /var/log/nginx/error.log"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// synthLog fills db with n events as a busy deployment would have them
// (200 users, 50 targets, 20,000 sessions over 30 days, commands in
// a third of them), valid chain, one checkpoint per 1,000 events. It
// writes rows directly (in large transactions) so that a million take
// seconds, not minutes; the hashing is the real one.
func synthLog(tb testing.TB, db *store.DB, key *SigningKey, n int) {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	commands := []string{"ls -la /var/log", "sudo systemctl restart nginx", "tail -f /var/log/syslog", "psql -c 'select 1'",
		"cat /etc/hosts", "df -h", "kubectl get pods -A", "docker ps", "vim /etc/nginx/nginx.conf", "git pull",
		"DROP TABLE customers", "grep -r password /etc", "uptime", "top -b -n 1", "journalctl -u sshd"}
	types := []string{"ssh.exec", "ssh.exec", "ssh.exec", "token.verify", "token.verify", "session.start", "session.end",
		"ssh.file_transfer", "rule.hit", "token.issue"}
	start := time.Now().Add(-30 * 24 * time.Hour)
	step := 30 * 24 * time.Hour / time.Duration(n)
	prev := ""
	const tx = 50000
	for base := 0; base < n; base += tx {
		err := db.Tx(ctx, func(t *sql.Tx) error {
			ins, err := t.PrepareContext(ctx, `INSERT INTO audit_events (seq, time, type, actor, target, session, source, data, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`)
			if err != nil {
				return err
			}
			fts, err := t.PrepareContext(ctx, `INSERT INTO audit_fts (rowid, text) VALUES ($1, $2)`)
			if err != nil {
				return err
			}
			for i := base; i < min(base+tx, n); i++ {
				ev := Event{Seq: int64(i + 1), Time: start.Add(time.Duration(i) * step), Type: types[rng.IntN(len(types))],
					Actor: fmt.Sprintf("user%03d", rng.IntN(200)), Target: fmt.Sprintf("target%02d", rng.IntN(50)),
					Session: fmt.Sprintf("s_%05d", rng.IntN(20000)), Source: fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), rng.IntN(256))}
				if ev.Type == "ssh.exec" {
					ev.Data = map[string]any{"command": commands[rng.IntN(len(commands))]}
				} else {
					ev.Data = map[string]any{"outcome": "ok"}
				}
				ev.PrevHash = prev
				ev.Hash = Hash(prev, &ev)
				prev = ev.Hash
				if _, err := ins.ExecContext(ctx, ev.Seq, ev.Time.UnixNano(), ev.Type, ev.Actor, ev.Target, ev.Session, ev.Source,
					string(canonicalData(ev.Data)), ev.PrevHash, ev.Hash); err != nil {
					return err
				}
				if text := searchText(ev.Data); text != "" {
					if _, err := fts.ExecContext(ctx, ev.Seq, text); err != nil {
						return err
					}
				}
				if (i+1)%1000 == 0 || i == n-1 {
					if err := writeCheckpointTx(ctx, t, key.sign(ev.Seq, ev.Hash, ev.Time)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func writeCheckpointTx(ctx context.Context, tx *sql.Tx, c Checkpoint) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES ($1, $2, $3, $4, $5)`,
		c.Seq, c.Hash, store.Nanos(c.Time), c.KID, c.Signature)
	return err
}

// synthDB is a synthesised log of n events, built once per process.
var synthDB = struct {
	sync.Mutex
	dbs  map[int]*store.DB
	dirs []string
}{dbs: map[int]*store.DB{}}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, db := range synthDB.dbs {
		db.Close()
	}
	for _, dir := range synthDB.dirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func synthesised(b *testing.B, n int) *store.DB {
	b.Helper()
	synthDB.Lock()
	defer synthDB.Unlock()
	if db := synthDB.dbs[n]; db != nil {
		return db
	}
	dir, err := os.MkdirTemp("", "vigil-audit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	synthDB.dirs = append(synthDB.dirs, dir)
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "a.db"))
	if err != nil {
		b.Fatal(err)
	}
	key, _, err := OpenSigningKey(context.Background(), db, testMasterKey(b), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	synthLog(b, db, key, n)
	b.Logf("synthesised %d events in %v (%s)", n, time.Since(t0).Round(time.Millisecond), dir)
	synthDB.dbs[n] = db
	return db
}

// BenchmarkVerify measures verification of a 1,000,000-event log: chain,
// links and 1,000 checkpoints (goal ≥ 500,000 events/s).
func BenchmarkVerify(b *testing.B) {
	const n = 1_000_000
	db := synthesised(b, n)
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rep, err := Verify(context.Background(), db, VerifyOptions{})
		total += time.Since(t0)
		if err != nil || !rep.OK || rep.Events != n {
			b.Fatalf("verify: ok %v, events %d, err %v, first %+v", rep.OK, rep.Events, err, rep.First)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "events/s")
}

// BenchmarkSearch measures search latency on 1,000,000 events for
// indexed queries (goal p99 ≤ 50 ms): each iteration runs one query of a
// mix with random values; p50 and p99 over all iterations are reported.
func BenchmarkSearch(b *testing.B) {
	const n = 1_000_000
	db := synthesised(b, n)
	now := time.Now()
	rng := rand.New(rand.NewPCG(3, 4))
	queries := []struct {
		name string
		q    func() Query
	}{
		{"actor+7d", func() Query {
			return Query{Actor: fmt.Sprintf("user%03d", rng.IntN(200)), Since: now.Add(-7 * 24 * time.Hour), Limit: 100}
		}},
		{"target+type+since", func() Query {
			return Query{Target: fmt.Sprintf("target%02d", rng.IntN(50)), Type: "session.start", Since: now.Add(-time.Duration(rng.IntN(30)) * 24 * time.Hour), Limit: 100}
		}},
		{"session", func() Query { return Query{Session: fmt.Sprintf("s_%05d", rng.IntN(20000))} }},
		{"source", func() Query {
			return Query{Source: fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), rng.IntN(256))}
		}},
		{"text+target+7d", func() Query {
			return Query{Text: `"drop table"`, Target: fmt.Sprintf("target%02d", rng.IntN(50)), Since: now.Add(-7 * 24 * time.Hour), Limit: 100}
		}},
		{"text+actor", func() Query {
			return Query{Text: "nginx", Actor: fmt.Sprintf("user%03d", rng.IntN(200)), Limit: 100}
		}},
		{"type+time-window-desc", func() Query {
			since := now.Add(-time.Duration(rng.IntN(29*24)) * time.Hour)
			return Query{Type: "rule.hit", Since: since, Until: since.Add(24 * time.Hour), Desc: true, Limit: 100}
		}},
	}
	for _, qc := range queries {
		b.Run(qc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
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
