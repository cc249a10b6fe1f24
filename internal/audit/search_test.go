package audit

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSearch(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	l, err := Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	seed := []Event{
		{Type: "session.start", Actor: "alice", Target: "prod-db", Session: "s_1", Source: "10.0.0.5:50001"},                                                              // 1
		{Type: "session.command", Actor: "alice", Target: "prod-db", Session: "s_1", Source: "10.0.0.5:50001", Data: map[string]any{"command": "DROP TABLE customers;"}},  // 2
		{Type: "session.command", Actor: "alice", Target: "prod-db", Session: "s_1", Source: "10.0.0.5:50001", Data: map[string]any{"command": "select * from drop_log"}}, // 3
		{Type: "session.end", Actor: "alice", Target: "prod-db", Session: "s_1", Source: "10.0.0.5:50001"},                                                                // 4
		{Type: "session.command", Actor: "bob", Target: "web1", Session: "s_2", Source: "[::1]:40000", Data: map[string]any{"command": "systemctl restart nginx"}},        // 5
		{Type: "token.verify", Actor: "bob", Source: "10.0.0.50", Data: map[string]any{"outcome": "denied", "reason": "expired"}},                                         // 6
		{Type: "sessions", Actor: "carol", Data: map[string]any{"nested": map[string]any{"path": "/etc/shadow"}}},                                                         // 7
	}
	for i, ev := range seed {
		ev.Time = base.Add(time.Duration(i) * time.Hour)
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	cases := []struct {
		name string
		q    Query
		want []int64
		bad  bool
	}{
		{name: "all", q: Query{}, want: []int64{1, 2, 3, 4, 5, 6, 7}},
		{name: "type exact", q: Query{Type: "session.command"}, want: []int64{2, 3, 5}},
		{name: "type family excludes look-alike", q: Query{Type: "session.*"}, want: []int64{1, 2, 3, 4, 5}},
		{name: "actor", q: Query{Actor: "bob"}, want: []int64{5, 6}},
		{name: "target", q: Query{Target: "prod-db"}, want: []int64{1, 2, 3, 4}},
		{name: "session", q: Query{Session: "s_2"}, want: []int64{5}},
		{name: "source host matches any port", q: Query{Source: "10.0.0.5"}, want: []int64{1, 2, 3, 4}},
		{name: "source exact", q: Query{Source: "10.0.0.50"}, want: []int64{6}},
		{name: "source ipv6 host", q: Query{Source: "::1"}, want: []int64{5}},
		{name: "since until", q: Query{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, want: []int64{2, 3}},
		{name: "phrase", q: Query{Text: `"drop table"`}, want: []int64{2}},
		{name: "words any order", q: Query{Text: "customers drop"}, want: []int64{2}},
		{name: "case ignored", q: Query{Text: "CUSTOMERS"}, want: []int64{2}},
		{name: "punctuation splits words", q: Query{Text: "log"}, want: []int64{3}},
		{name: "prefix", q: Query{Text: "drop*"}, want: []int64{2, 3}},
		{name: "nested data indexed", q: Query{Text: "shadow"}, want: []int64{7}},
		{name: "reason indexed", q: Query{Text: "expired"}, want: []int64{6}},
		{name: "fts operators are words", q: Query{Text: "nginx OR customers"}, want: nil},
		{name: "text and filters", q: Query{Text: "restart", Actor: "alice"}, want: nil},
		{name: "desc with limit", q: Query{Desc: true, Limit: 2}, want: []int64{7, 6}},
		{name: "page after", q: Query{After: 5}, want: []int64{6, 7}},
		{name: "page before desc", q: Query{Before: 3, Desc: true}, want: []int64{2, 1}},
		{name: "unbalanced quote", q: Query{Text: `"drop table`}, bad: true},
		{name: "punctuation only", q: Query{Text: `;;; --`}, bad: true},
		{name: "until before since", q: Query{Since: base.Add(2 * time.Hour), Until: base}, bad: true},
		{name: "negative limit", q: Query{Limit: -1}, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := Search(ctx, db, tc.q)
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
			for _, ev := range evs {
				got = append(got, ev.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
