package querylog

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// countRows returns the number of rows of table in db.
func countRows(t *testing.T, db *store.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// searchAll returns every stored entry of db, in ID order.
func searchAll(t *testing.T, db *store.DB, q Query) []Stored {
	t.Helper()
	var all []Stored
	q.Limit = MaxLimit
	for {
		res, err := Search(context.Background(), db, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, res.Entries...)
		if res.Next == 0 {
			return all
		}
		q.After = res.Next
	}
}

// TestSessionRows: a session's constant columns are stored once, however
// many entries and transactions it has; an entry that disagrees with its
// session on them gets a row of its own and is stored, and found, as it
// was appended.
func TestSessionRows(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	ctx := context.Background()
	for i := int64(1); i <= 200; i++ {
		if err := w.Append(ctx, entry("s_1", i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	odd := entry("s_1", 201)
	odd.User, odd.Source = "mallory", "10.9.9.9:4000"
	for _, e := range []Entry{odd, entry("s_1", 202), entry("s_2", 1)} {
		if err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, "query_sessions"); got != 3 {
		t.Fatalf("query_sessions: got %d rows, want 3 (s_1, s_1 as mallory, s_2)", got)
	}
	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"user", Query{User: "mallory"}, []string{"s_1/201 mallory 10.9.9.9:4000"}},
		{"source", Query{Source: "10.9.9.9"}, []string{"s_1/201 mallory 10.9.9.9:4000"}},
		{"session tail", Query{Session: "s_1", After: 200}, []string{"s_1/201 mallory 10.9.9.9:4000", "s_1/202 alice 10.0.0.5:50001"}},
		{"user and target", Query{User: "alice", Target: "prod-db", Desc: true, Limit: 2}, []string{"s_2/1 alice 10.0.0.5:50001", "s_1/202 alice 10.0.0.5:50001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Search(ctx, db, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range res.Entries {
				got = append(got, fmt.Sprintf("%s/%d %s %s", s.Session, s.Seq, s.User, s.Source))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSessionIDsNotKeptFromRollback: the query_sessions ID of a row
// inserted by a transaction that then failed is not remembered: after the
// rollback another session may be given it, and the retried entry gets
// the row it stores then.
func TestSessionIDsNotKeptFromRollback(t *testing.T) {
	db, _ := openDB(t)
	// Writes to queries fail: s_2's row of query_sessions is inserted,
	// then rolled back with the rest, at each try.
	w, reg, repair := storedOneThenBroken(t, db, WriterOptions{})
	ctx := context.Background()
	bob := entry("s_2", 1)
	bob.User = "bob"
	if err := w.Append(ctx, bob); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed write", func() bool { return metricValue(t, reg, "vigil_querylog_failed_batches_total") > 0 })
	// Another writer takes the ID the failed transaction had used.
	if _, err := db.Exec(`INSERT INTO query_sessions (session, subject, target, login, database, source)
		VALUES ('s_3', 'carol', 'other-db', 'app', 'main', '10.0.0.7:1')`); err != nil {
		t.Fatal(err)
	}
	repair()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := searchAll(t, db, Query{Session: "s_2"})
	if len(got) != 1 || got[0].User != "bob" || got[0].Target != "prod-db" {
		t.Fatalf("got %+v, want s_2/1 by bob on prod-db", got)
	}
	if got := searchAll(t, db, Query{User: "carol"}); len(got) != 0 {
		t.Fatalf("carol: got %+v, want nothing", got)
	}
}

// TestManySessions: with more sessions than the writer remembers, each
// entry is still stored with its own session's columns, and each
// session's row once.
func TestManySessions(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	// Before the first entry: the writer goroutine reads it only then.
	w.sessions.limit = 4
	ctx := context.Background()
	const sessions, rounds = 30, 5
	for r := int64(1); r <= rounds; r++ {
		for s := range sessions {
			e := entry(fmt.Sprint("s_", s), r)
			e.User, e.Source = fmt.Sprint("user", s), fmt.Sprintf("10.0.0.%d:5000", s)
			if err := w.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := countRows(t, db, "query_sessions"); got != sessions {
		t.Fatalf("query_sessions: got %d rows, want %d", got, sessions)
	}
	all := searchAll(t, db, Query{})
	if len(all) != sessions*rounds {
		t.Fatalf("got %d entries, want %d", len(all), sessions*rounds)
	}
	for _, s := range all {
		var n int
		fmt.Sscanf(s.Session, "s_%d", &n)
		if s.User != fmt.Sprint("user", n) || s.Source != fmt.Sprintf("10.0.0.%d:5000", n) {
			t.Fatalf("%s/%d: got user %s source %s, want user%d 10.0.0.%d:5000", s.Session, s.Seq, s.User, s.Source, n, n)
		}
	}
	if got := w.sessions.len(); got > 4 {
		t.Fatalf("cache: got %d keys, want at most 4", got)
	}
}

func TestSessionCache(t *testing.T) {
	key := func(i int) sessionKey { return sessionKey{session: fmt.Sprint("s_", i)} }
	tests := []struct {
		name  string
		limit int
		puts  []int // keys put, in order, with ID = key
		gets  []int // then looked up, in order
		want  []int // the keys found, in order
	}{
		{"holds up to its limit", 4, []int{1, 2, 3, 4}, []int{4, 3, 2}, []int{4, 3, 2}},
		{"drops the oldest generation", 4, []int{1, 2, 3, 4, 5}, []int{1, 2, 3, 4, 5}, []int{3, 4, 5}},
		{"a key used is kept", 4, []int{1, 2, 3, 4}, []int{1, 5, 1}, []int{1, 1}},
		{"limit of two", 2, []int{1, 2, 3}, []int{1, 2, 3}, []int{2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := sessionCache{limit: tc.limit}
			for _, k := range tc.puts {
				c.put(key(k), int64(k))
			}
			var got []int
			for _, k := range tc.gets {
				if id, ok := c.get(key(k)); ok {
					if id != int64(k) {
						t.Fatalf("key %d: got ID %d, want %d", k, id, k)
					}
					got = append(got, k)
				}
				if c.len() > tc.limit {
					t.Fatalf("got %d keys held, want at most %d", c.len(), tc.limit)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v found, want %v", got, tc.want)
			}
		})
	}
}

// schema8 turns db's statement log back into the layout migrations 7 and
// 8 made (its user, target, login, database and source on every row,
// indexed), empty, and marks migration 9 not applied.
func schema8(t *testing.T, db *store.DB) {
	t.Helper()
	if _, err := db.Exec(`DROP TABLE queries; DROP TABLE query_sessions;
		CREATE TABLE queries (
			id          INTEGER PRIMARY KEY,
			session     TEXT NOT NULL,
			seq         BIGINT NOT NULL,
			time        BIGINT NOT NULL,
			subject     TEXT NOT NULL,
			target      TEXT NOT NULL,
			login       TEXT NOT NULL,
			database    TEXT NOT NULL,
			source      TEXT NOT NULL,
			protocol    TEXT NOT NULL,
			statement   TEXT NOT NULL,
			params      BIGINT NOT NULL,
			duration_us BIGINT NOT NULL,
			rows        BIGINT NOT NULL,
			tag         TEXT NOT NULL,
			outcome     TEXT NOT NULL,
			sqlstate    TEXT NOT NULL,
			error       TEXT NOT NULL,
			rule        TEXT NOT NULL,
			masked      BIGINT NOT NULL
		);
		CREATE UNIQUE INDEX queries_session ON queries (session, seq);
		CREATE INDEX queries_time ON queries (time);
		CREATE INDEX queries_target ON queries (target, time);
		CREATE INDEX queries_subject ON queries (subject, time);
		CREATE INDEX queries_source ON queries (source, time);
		DELETE FROM schema_migrations WHERE version > 8`); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromSchema8: a store written before migration 9 keeps every
// entry, under the same ID (its rowid in the full-text index), searchable
// as before by every filter; the writer adds to it, a retried entry
// already stored is still kept once, and re-applying the migration
// changes nothing.
func TestUpgradeFromSchema8(t *testing.T) {
	db, url := openDB(t)
	ctx := context.Background()
	schema8(t, db)
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	// IDs with gaps, as a store that lost a transaction's entries to a
	// rollback has them; s_1/3 disagrees with its session.
	old := []Stored{
		{ID: 1, Entry: Entry{Session: "s_1", Seq: 1, User: "alice", Target: "prod-db", Login: "app", Database: "main", Source: "10.0.0.5:50001", Statement: "SELECT * FROM customers", Outcome: OutcomeOK}},
		{ID: 2, Entry: Entry{Session: "s_2", Seq: 1, User: "bob", Target: "stage-db", Login: "ro", Database: "stage", Source: "[::1]:40000", Statement: "DROP TABLE orders", Outcome: OutcomeBlocked, Rule: "no-drop"}},
		{ID: 3, Entry: Entry{Session: "s_1", Seq: 2, User: "alice", Target: "prod-db", Login: "app", Database: "main", Source: "10.0.0.5:50001", Statement: "UPDATE customers SET name = $1", Params: 1, Rows: 1, Tag: "UPDATE 1", Outcome: OutcomeOK}},
		{ID: 7, Entry: Entry{Session: "s_1", Seq: 3, User: "alice", Target: "prod-db", Login: "admin", Database: "main", Source: "10.0.0.5:50001", Statement: "SELECT pg_sleep(60)", Outcome: OutcomeCancelled}},
		{ID: 8, Entry: Entry{Session: "s_3", Seq: 1, User: "alice", Target: "stage-db", Login: "app", Database: "stage", Source: "10.0.0.50:41000", Statement: "COMMIT", Outcome: OutcomeError, SQLState: "25P02", Error: "aborted"}},
	}
	for i := range old {
		e := &old[i]
		e.Time = base.Add(time.Duration(i) * time.Minute)
		e.Protocol, e.Duration = "simple", time.Duration(i+1)*time.Millisecond
		if _, err := db.Exec(`INSERT INTO queries (id, session, seq, time, subject, target, login, database, source,
			protocol, statement, params, duration_us, rows, tag, outcome, sqlstate, error, rule, masked)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20);
			INSERT INTO queries_fts (rowid, statement) VALUES ($1, $11)`,
			e.ID, e.Session, e.Seq, store.Nanos(e.Time), e.User, e.Target, e.Login, e.Database, e.Source,
			e.Protocol, e.Statement, e.Params, e.Duration.Microseconds(), e.Rows, e.Tag, e.Outcome, e.SQLState,
			e.Error, e.Rule, e.Masked); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	reopen := func() *store.DB {
		t.Helper()
		db, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db = reopen()
	// What the migration left: the entries as they were, the layout of
	// a new store.
	check := func(t *testing.T, db *store.DB, want []Stored) {
		t.Helper()
		got := searchAll(t, db, Query{})
		if len(got) != len(want) {
			t.Fatalf("got %d entries, want %d", len(got), len(want))
		}
		for i := range got {
			if !got[i].Time.Equal(want[i].Time) {
				t.Fatalf("entry %d: got time %v, want %v", want[i].ID, got[i].Time, want[i].Time)
			}
			got[i].Time = want[i].Time
			if got[i] != want[i] {
				t.Fatalf("got %+v, want %+v", got[i], want[i])
			}
		}
	}
	check(t, db, old)
	if got := countRows(t, db, "query_sessions"); got != 4 {
		t.Fatalf("query_sessions: got %d rows, want 4", got)
	}
	var layout []string
	rows, err := db.Query(`SELECT name FROM pragma_table_info('queries') UNION ALL
		SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'queries' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		layout = append(layout, name)
	}
	rows.Close()
	want := []string{"duration_us", "error", "id", "masked", "outcome", "params", "protocol", "queries_query_session",
		"queries_session", "queries_time", "query_session_id", "rows", "rule", "seq", "session", "sqlstate", "statement", "tag", "time"}
	if !slices.Equal(layout, want) {
		t.Fatalf("queries: got columns and indexes %v, want %v", layout, want)
	}

	tests := []struct {
		name string
		q    Query
		want []int64
	}{
		{"session", Query{Session: "s_1"}, []int64{1, 3, 7}},
		{"user", Query{User: "alice"}, []int64{1, 3, 7, 8}},
		{"target", Query{Target: "stage-db"}, []int64{2, 8}},
		{"source host", Query{Source: "::1"}, []int64{2}},
		{"text", Query{Text: "customers"}, []int64{1, 3}},
		{"text and user", Query{Text: "drop", User: "bob"}, []int64{2}},
		{"since", Query{Since: base.Add(2 * time.Minute), Desc: true}, []int64{8, 7, 3}},
		{"outcome", Query{Outcome: OutcomeCancelled}, []int64{7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			for _, s := range searchAll(t, db, tc.q) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// The writer: s_1/2 again is kept once; s_1/4 is s_1's and takes
	// its row of query_sessions; IDs go on from the highest.
	w := newWriter(t, db, WriterOptions{})
	again, next := old[2].Entry, old[0].Entry
	again.Statement = "a retry"
	next.Seq, next.Time, next.Statement = 4, base.Add(time.Hour), "SELECT 4"
	for _, e := range []Entry{again, next} {
		if err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(old), Stored{ID: 9, Entry: next})
	check(t, db, all)
	if got := countRows(t, db, "query_sessions"); got != 4 {
		t.Fatalf("query_sessions after appending: got %d rows, want 4", got)
	}

	// Migration 9 re-applied to its own result changes nothing.
	if _, err := db.Exec(`DELETE FROM schema_migrations WHERE version = 9`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = reopen()
	check(t, db, all)
	if got := countRows(t, db, "query_sessions"); got != 4 {
		t.Fatalf("query_sessions after re-applying: got %d rows, want 4", got)
	}
}
