package querylog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSearch(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	seed := []Entry{
		{Session: "s_1", User: "alice", Target: "prod-db", Source: "10.0.0.5:50001", Statement: "DROP TABLE customers;", Outcome: OutcomeBlocked, Rule: "no-drop"},                                           // 1
		{Session: "s_1", User: "alice", Target: "prod-db", Source: "10.0.0.5:50001", Statement: "select * from drop_log", Outcome: OutcomeOK},                                                                // 2
		{Session: "s_1", User: "alice", Target: "prod-db", Source: "10.0.0.5:50001", Statement: "SELECT name FROM users WHERE name = 'O''Brien'", Outcome: OutcomeOK},                                        // 3
		{Session: "s_2", User: "bob", Target: "stage-db", Source: "[::1]:40000", Statement: "UPDATE accounts SET balance = balance - $1 WHERE id = $2", Params: 2, Outcome: OutcomeError, SQLState: "40001"}, // 4
		{Session: "s_2", User: "bob", Target: "stage-db", Source: "[::1]:40000", Statement: "SELECT pg_sleep(600)", Outcome: OutcomeCancelled},                                                               // 5
		{Session: "s_3", User: "carol", Target: "prod-db", Source: "10.0.0.50:41000", Statement: "SELECT count(*) FROM orders WHERE placed_at > now() - interval '1 day'", Outcome: OutcomeOK},               // 6
		{Session: "s_3", User: "carol", Target: "prod-db", Source: "10.0.0.50:41000", Statement: "SELECT near, far FROM distances WHERE near < 10", Outcome: OutcomeIncomplete},                              // 7
	}
	seqs := map[string]int64{}
	for i, e := range seed {
		seqs[e.Session]++
		e.Seq = seqs[e.Session]
		e.Time = base.Add(time.Duration(i) * time.Hour)
		if err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		q    Query
		want []int64
		next int64
		bad  bool
	}{
		{name: "all", q: Query{}, want: []int64{1, 2, 3, 4, 5, 6, 7}},
		{name: "session", q: Query{Session: "s_2"}, want: []int64{4, 5}},
		{name: "user", q: Query{User: "carol"}, want: []int64{6, 7}},
		{name: "target", q: Query{Target: "prod-db"}, want: []int64{1, 2, 3, 6, 7}},
		{name: "source host matches any port", q: Query{Source: "10.0.0.5"}, want: []int64{1, 2, 3}},
		{name: "source exact", q: Query{Source: "10.0.0.50:41000"}, want: []int64{6, 7}},
		{name: "source ipv6 host", q: Query{Source: "::1"}, want: []int64{4, 5}},
		{name: "since until", q: Query{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, want: []int64{2, 3}},
		{name: "outcome", q: Query{Outcome: OutcomeBlocked}, want: []int64{1}},
		{name: "outcome and target", q: Query{Outcome: OutcomeOK, Target: "prod-db"}, want: []int64{2, 3, 6}},
		{name: "phrase", q: Query{Text: `"drop table"`}, want: []int64{1}},
		{name: "words any order", q: Query{Text: "customers drop"}, want: []int64{1}},
		{name: "case ignored", q: Query{Text: "CUSTOMERS"}, want: []int64{1}},
		{name: "punctuation splits words", q: Query{Text: "log"}, want: []int64{2}},
		{name: "prefix", q: Query{Text: "drop*"}, want: []int64{1, 2}},
		{name: "prefix of a phrase-like word", q: Query{Text: "pg_sl*"}, want: []int64{5}},
		{name: "quote inside a word", q: Query{Text: "o'brien"}, want: []int64{3}},
		{name: "quoted phrase with quote inside", q: Query{Text: `"name = 'O''Brien'"`}, want: []int64{3}},
		{name: "quote mid-word", q: Query{Text: `o"brien`}, want: []int64{3}},
		{name: "parentheses are punctuation", q: Query{Text: "count(*)"}, want: []int64{6}},
		{name: "FTS operators are words", q: Query{Text: "drop OR customers"}, want: nil},
		{name: "NOT is a word", q: Query{Text: "NOT customers"}, want: nil},
		{name: "NEAR is a word", q: Query{Text: "near far"}, want: []int64{7}},
		{name: "NEAR group is a phrase", q: Query{Text: "NEAR(drop customers)"}, want: nil},
		{name: "column filter is a phrase", q: Query{Text: "statement:drop"}, want: nil},
		{name: "lone operators ignored", q: Query{Text: "* ( ) drop -"}, want: []int64{1, 2}},
		{name: "text and session", q: Query{Text: "select", Session: "s_1"}, want: []int64{2, 3}},
		{name: "text and user elsewhere", q: Query{Text: "customers", User: "bob"}, want: nil},
		{name: "text and outcome and source", q: Query{Text: "select", Outcome: OutcomeOK, Source: "10.0.0.5"}, want: []int64{2, 3}},
		{name: "desc", q: Query{Desc: true}, want: []int64{7, 6, 5, 4, 3, 2, 1}},
		{name: "first page", q: Query{Limit: 3}, want: []int64{1, 2, 3}, next: 3},
		{name: "next page", q: Query{Limit: 3, After: 3}, want: []int64{4, 5, 6}, next: 6},
		{name: "last page", q: Query{Limit: 3, After: 6}, want: []int64{7}},
		{name: "exactly a page has no next", q: Query{Limit: 7}, want: []int64{1, 2, 3, 4, 5, 6, 7}},
		{name: "desc pages", q: Query{Desc: true, Limit: 2, After: 6}, want: []int64{5, 4}, next: 4},
		{name: "text pages", q: Query{Text: "select", Limit: 2, After: 2}, want: []int64{3, 5}, next: 5},
		{name: "text desc pages", q: Query{Text: "select", Desc: true, Limit: 2, After: 6}, want: []int64{5, 3}, next: 3},
		{name: "limit capped", q: Query{Limit: MaxLimit + 1}, want: []int64{1, 2, 3, 4, 5, 6, 7}},
		{name: "unbalanced quote", q: Query{Text: `"drop table`}, bad: true},
		{name: "punctuation only", q: Query{Text: `;;; -- *`}, bad: true},
		{name: "too many words", q: Query{Text: strings.Repeat("a ", 17) /* audit.FTSQuery takes 16 */}, bad: true},
		{name: "until before since", q: Query{Since: base.Add(2 * time.Hour), Until: base}, bad: true},
		{name: "negative limit", q: Query{Limit: -1}, bad: true},
		{name: "negative cursor", q: Query{After: -1}, bad: true},
		{name: "unknown outcome", q: Query{Outcome: "denied"}, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Search(ctx, db, tc.q)
			if tc.bad {
				if !errors.Is(err, ErrBadQuery) {
					t.Fatalf("got %v, want ErrBadQuery", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, s := range res.Entries {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if res.Next != tc.next {
				t.Fatalf("next: got %d, want %d", res.Next, tc.next)
			}
		})
	}

	// What is stored is what was appended.
	res, err := Search(ctx, db, Query{Session: "s_2", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := seed[3]
	want.Seq, want.Time = 1, base.Add(3*time.Hour)
	got := res.Entries[0]
	if !got.Time.Equal(want.Time) {
		t.Fatalf("time: got %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if got.Entry != want || got.ID != 4 {
		t.Fatalf("got %+v, want ID 4 with %+v", got, want)
	}
}

// TestSearchTextPlans pages through text searches whose other filters
// select few rows (each checked against the full-text index) and many
// (the full-text index drives), forwards and backwards, and compares
// with what was stored.
func TestSearchTextPlans(t *testing.T) {
	db, _ := openDB(t)
	w := newWriter(t, db, WriterOptions{})
	ctx := context.Background()
	type row struct {
		id            int64
		session, user string
		text          bool
	}
	var rows []row
	for i := range 3 * perRowMax {
		e := entry(fmt.Sprint("s_", i%7), int64(i/7+1))
		e.User = []string{"alice", "bob"}[i%2]
		e.Statement = fmt.Sprintf("SELECT %d FROM customers", i)
		if i%3 == 0 {
			e.Statement = fmt.Sprintf("DELETE FROM orders WHERE id = %d", i)
		}
		if err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row{id: int64(i + 1), session: e.Session, user: e.User, text: i%3 == 0})
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    Query
		keep func(row) bool
	}{
		{"session: few rows", Query{Session: "s_3", Text: "delete orders"}, func(r row) bool { return r.session == "s_3" && r.text }},
		{"user: many rows", Query{User: "bob", Text: "delete orders"}, func(r row) bool { return r.user == "bob" && r.text }},
		{"text only", Query{Text: "delete"}, func(r row) bool { return r.text }},
	}
	for _, tc := range tests {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s desc=%v", tc.name, desc), func(t *testing.T) {
				var want, got []int64
				for _, r := range rows {
					if tc.keep(r) {
						want = append(want, r.id)
					}
				}
				if desc {
					slices.Reverse(want)
				}
				q := tc.q
				q.Desc, q.Limit = desc, 10
				for pages := 0; ; pages++ {
					if pages > len(rows) {
						t.Fatal("paging does not end")
					}
					res, err := Search(ctx, db, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range res.Entries {
						got = append(got, s.ID)
					}
					if res.Next == 0 {
						break
					}
					q.After = res.Next
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			})
		}
	}
}

func TestEntryJSON(t *testing.T) {
	s := Stored{ID: 42, Entry: Entry{Session: "s_1", Seq: 3, Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
		User: "alice", Target: "prod-db", Protocol: "extended", Statement: "SELECT $1", Params: 1,
		Duration: 1500*time.Microsecond + 300*time.Nanosecond, Rows: 1, Tag: "SELECT 1", Outcome: OutcomeOK}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		want  any
	}{
		{"id", float64(42)},
		{"duration_us", float64(1500)},
		{"user", "alice"},
		{"params", float64(1)},
		{"sqlstate", nil},
		{"rule", nil},
	}
	for _, tc := range tests {
		if got := fields[tc.field]; got != tc.want {
			t.Errorf("%s: got %v, want %v in %s", tc.field, got, tc.want, b)
		}
	}
	var back Stored
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := s
	want.Duration = 1500 * time.Microsecond
	if back != want {
		t.Fatalf("round trip: got %+v, want %+v", back, want)
	}
	if b, _ := json.Marshal(s.Entry); strings.Contains(string(b), `"id"`) || !strings.Contains(string(b), `"duration_us":1500`) {
		t.Fatalf("entry: got %s, want duration_us 1500 and no id", b)
	}
}
