package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/querylog"
)

func TestSearchQueries(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFixture(t, fixtureOptions{})
	s := f.server(func() time.Time { return now })
	ctx := context.Background()
	s.Queries = querylog.NewWriter(f.db, querylog.WriterOptions{Log: f.logger})
	t.Cleanup(func() { s.Queries.Close(context.Background()) })
	srv := serve(t, s)

	seed := []querylog.Entry{
		{Session: "s_1", Seq: 1, User: "alice", Target: "prod-db", Source: "10.0.0.5:50001", Protocol: "simple",
			Statement: "SELECT * FROM customers", Rows: 3, Tag: "SELECT 3", Outcome: querylog.OutcomeOK}, // 1
		{Session: "s_1", Seq: 2, User: "alice", Target: "prod-db", Source: "10.0.0.5:50001", Protocol: "simple",
			Statement: "DROP TABLE customers", Outcome: querylog.OutcomeBlocked, Rule: "no-drop"}, // 2
		{Session: "s_2", Seq: 1, User: "bob", Target: "stage-db", Source: "10.0.0.6:50002", Protocol: "extended",
			Statement: "UPDATE accounts SET balance = $1", Params: 1, Outcome: querylog.OutcomeError, SQLState: "40001"}, // 3
		{Session: "s_2", Seq: 2, User: "bob", Target: "stage-db", Source: "10.0.0.6:50002", Protocol: "simple",
			Statement: "SELECT 1", Rows: 1, Outcome: querylog.OutcomeOK}, // 4
	}
	for i, e := range seed {
		e.Time = now.Add(time.Duration(i-len(seed)) * time.Minute)
		e.Duration = time.Duration(i+1) * time.Millisecond
		if err := s.Queries.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Queries.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		query  url.Values
		user   bool
		status int
		code   string
		want   []int64
		next   int64
	}{
		{name: "all", query: url.Values{}, status: 200, want: []int64{1, 2, 3, 4}},
		{name: "session", query: url.Values{"session": {"s_2"}}, status: 200, want: []int64{3, 4}},
		{name: "user and target", query: url.Values{"user": {"alice"}, "target": {"prod-db"}}, status: 200, want: []int64{1, 2}},
		{name: "source host", query: url.Values{"source": {"10.0.0.6"}}, status: 200, want: []int64{3, 4}},
		{name: "text", query: url.Values{"q": {"customers"}}, status: 200, want: []int64{1, 2}},
		{name: "phrase", query: url.Values{"q": {`"drop table"`}}, status: 200, want: []int64{2}},
		{name: "outcome", query: url.Values{"outcome": {"blocked"}}, status: 200, want: []int64{2}},
		{name: "since", query: url.Values{"since": {"150s"}}, status: 200, want: []int64{3, 4}},
		{name: "until", query: url.Values{"until": {now.Add(-3 * time.Minute).Format(time.RFC3339)}}, status: 200, want: []int64{1}},
		{name: "no match", query: url.Values{"q": {"nothing"}}, status: 200, want: []int64{}},
		{name: "first page", query: url.Values{"limit": {"3"}}, status: 200, want: []int64{1, 2, 3}, next: 3},
		{name: "next page", query: url.Values{"limit": {"3"}, "after": {"3"}}, status: 200, want: []int64{4}},
		{name: "desc pages", query: url.Values{"limit": {"2"}, "desc": {"true"}}, status: 200, want: []int64{4, 3}, next: 3},
		{name: "desc next page", query: url.Values{"limit": {"2"}, "desc": {"true"}, "after": {"3"}}, status: 200, want: []int64{2, 1}},
		{name: "unbalanced quote", query: url.Values{"q": {`"drop table`}}, status: 400, code: "bad_request"},
		{name: "no words", query: url.Values{"q": {"*"}}, status: 400, code: "bad_request"},
		{name: "unknown outcome", query: url.Values{"outcome": {"denied"}}, status: 400, code: "bad_request"},
		{name: "bad since", query: url.Values{"since": {"yesterday"}}, status: 400, code: "bad_request"},
		{name: "until before since", query: url.Values{"since": {"1h"}, "until": {"2h"}}, status: 400, code: "bad_request"},
		{name: "bad limit", query: url.Values{"limit": {"0"}}, status: 400, code: "bad_request"},
		{name: "limit too large", query: url.Values{"limit": {fmt.Sprint(querylog.MaxLimit + 1)}}, status: 400, code: "bad_request"},
		{name: "bad after", query: url.Values{"after": {"-1"}}, status: 400, code: "bad_request"},
		{name: "bad desc", query: url.Values{"desc": {"newest"}}, status: 400, code: "bad_request"},
		{name: "not an admin", query: url.Values{}, user: true, status: 403, code: "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := f.admin
			if tc.user {
				tok = f.user
			}
			var page QueryPage
			status, apiErr := call(t, srv.URL, "GET", "/api/v1/queries?"+tc.query.Encode(), tok, "", &page)
			if status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("got %d %+v, want %d %s", status, apiErr, tc.status, tc.code)
			}
			if tc.status != 200 {
				return
			}
			got := []int64{}
			for _, q := range page.Queries {
				got = append(got, q.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if page.Next != tc.next {
				t.Fatalf("next: got %d, want %d", page.Next, tc.next)
			}
		})
	}

	// Entries come back whole, with the duration in microseconds.
	req, err := http.NewRequest("GET", srv.URL+"/api/v1/queries?session=s_2&limit=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		Queries []map[string]any `json:"queries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || len(raw.Queries) != 1 {
		t.Fatalf("got %+v (%v), want one entry", raw, err)
	}
	if q := raw.Queries[0]; q["id"] != float64(3) || q["duration_us"] != float64(3000) || q["sqlstate"] != "40001" ||
		q["user"] != "bob" || q["params"] != float64(1) || q["protocol"] != "extended" {
		t.Fatalf("got %v, want entry 3 in full", q)
	}

	// Every search is audited before it runs (including those the search
	// then refuses); requests refused before that, and non-admins, are
	// not searches.
	rows, err := f.db.Query(`SELECT actor, target, session, data FROM audit_events WHERE type = 'queries.search' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	searches := map[string]string{} // query → "actor target session"
	n := 0
	for rows.Next() {
		var actor, target, session, data string
		if err := rows.Scan(&actor, &target, &session, &data); err != nil {
			t.Fatal(err)
		}
		var d struct{ Query string }
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			t.Fatal(err)
		}
		searches[d.Query] = fmt.Sprint(actor, " ", target, " ", session)
		n++
	}
	if n != 19 {
		t.Fatalf("got %d queries.search events, want 19 (18 searches in the table and one more)", n)
	}
	for query, want := range map[string]string{
		"session=s_2&limit=1":                      "root  s_2",
		"target=prod-db&user=alice":                "root prod-db ",
		"q=%22drop+table":                          "root  ",
		"outcome=blocked":                          "root  ",
		"desc=newest":                              "",
		"since=yesterday":                          "",
		"after=-1":                                 "",
		"after=3&desc=true&limit=2":                "root  ",
		"limit=" + fmt.Sprint(querylog.MaxLimit+1): "",
	} {
		if got := searches[query]; got != want {
			t.Errorf("search %q: got recorded as %q, want %q", query, got, want)
		}
	}
}

// TestSearchQueriesNotConfigured: a server without a statement log says
// so.
func TestSearchQueriesNotConfigured(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := serve(t, f.server(nil))
	status, apiErr := call(t, srv.URL, "GET", "/api/v1/queries", f.admin, "", nil)
	if status != http.StatusNotFound || apiErr.Code != "not_configured" {
		t.Fatalf("got %d %+v, want 404 not_configured", status, apiErr)
	}
}

// TestSearchQueriesFailsClosedWhenAuditIsDown: a search that cannot be
// audited is not answered.
func TestSearchQueriesFailsClosedWhenAuditIsDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{separateVerify: true})
	s := f.server(nil)
	s.Queries = querylog.NewWriter(f.db, querylog.WriterOptions{Log: f.logger})
	t.Cleanup(func() { s.Queries.Close(context.Background()) })
	srv := serve(t, s)
	if status, apiErr := call(t, srv.URL, "GET", "/api/v1/queries", f.admin, "", nil); status != 200 {
		t.Fatalf("before: got %d %+v, want 200", status, apiErr)
	}
	f.log.Close()
	status, apiErr := call(t, srv.URL, "GET", "/api/v1/queries", f.admin, "", nil)
	if status != http.StatusServiceUnavailable || apiErr.Code != "unavailable" {
		t.Fatalf("got %d %+v, want 503 unavailable", status, apiErr)
	}
}
