package api

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/report"
	"github.com/vigil-pam/vigil/internal/store"
)

// reportEnv is an API server whose token verifications are recorded in
// one audit log and its actions (report.run) in another, so the action
// log can fail while tokens still verify.
type reportEnv struct {
	srv         *httptest.Server
	db          *store.DB
	log         *audit.Log
	admin, user string
}

func newReportEnv(t *testing.T, now time.Time) *reportEnv {
	t.Helper()
	f := newFixture(t, fixtureOptions{separateVerify: true})
	clock := func() time.Time { return now }
	s := f.server(clock)
	s.Reports = report.New(f.db, clock)
	return &reportEnv{srv: serve(t, s), db: f.db, log: f.log, admin: f.admin, user: f.user}
}

func (e *reportEnv) get(t *testing.T, path, tok string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestReports(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	e := newReportEnv(t, now)
	started := now.Add(-2 * time.Hour)
	if _, err := e.db.Exec(`INSERT INTO sessions (id, kind, subject, jti, target, login, source, started_at, ended_at, state,
		end_reason, exit_status, bytes_up, bytes_down, recording, digest, commands)
		VALUES ('s_1', 'ssh', 'alice', 'j_1', 'web1', 'root', '10.0.0.1', $1, $2, 'ended', 'client disconnected', 0, 1, 2,
		'/r/s_1.cast.gz', 'abc', '[]')`, started.UnixNano(), started.Add(time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path  string
		user        bool
		status      int
		code        string
		contentType string
		body        func(t *testing.T, b []byte)
	}{
		{name: "json by default", path: "/api/v1/reports/access", status: 200, contentType: "application/json",
			body: func(t *testing.T, b []byte) {
				var rows []report.AccessRow
				if err := json.Unmarshal(b, &rows); err != nil || len(rows) != 1 || rows[0].Session != "s_1" || rows[0].DurationS != 60 {
					t.Fatalf("got %s (%v), want the one session", b, err)
				}
			}},
		{name: "csv", path: "/api/v1/reports/access?since=1d&format=csv", status: 200, contentType: "text/csv; charset=utf-8",
			body: func(t *testing.T, b []byte) {
				recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
				if err != nil || len(recs) != 2 || recs[0][0] != "SESSION" || recs[1][0] != "s_1" || recs[1][8] != "1m0s" {
					t.Fatalf("got %q (%v), want a header and s_1", recs, err)
				}
			}},
		{name: "empty range is []", path: "/api/v1/reports/access?since=1h", status: 200, contentType: "application/json",
			body: func(t *testing.T, b []byte) {
				if strings.TrimSpace(string(b)) != "[]" {
					t.Fatalf("got %q, want []", b)
				}
			}},
		{name: "empty csv is the header", path: "/api/v1/reports/breakglass?format=csv", status: 200, contentType: "text/csv; charset=utf-8",
			body: func(t *testing.T, b []byte) {
				if !strings.HasPrefix(string(b), "TIME,USER,ACCOUNT,") || strings.Count(string(b), "\n") != 1 {
					t.Fatalf("got %q, want only the header row", b)
				}
			}},
		{name: "RFC 3339 since", path: "/api/v1/reports/violations?since=" + now.Add(-time.Hour).Format(time.RFC3339), status: 200,
			contentType: "application/json"},
		{name: "bad since", path: "/api/v1/reports/access?since=yesterday", status: 400, code: "bad_request"},
		{name: "future since", path: "/api/v1/reports/access?since=" + now.Add(time.Hour).Format(time.RFC3339), status: 400, code: "bad_request"},
		{name: "bad format", path: "/api/v1/reports/access?format=xml", status: 400, code: "bad_request"},
		{name: "unknown kind", path: "/api/v1/reports/logins", status: 404, code: "not_found"},
		{name: "not an admin", path: "/api/v1/reports/access", user: true, status: 403, code: "forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := e.admin
			if tc.user {
				tok = e.user
			}
			resp, b := e.get(t, tc.path, tok)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.code != "" {
				var out struct{ Error APIError }
				if err := json.Unmarshal(b, &out); err != nil || out.Error.Code != tc.code || out.Error.Message == "" {
					t.Fatalf("got %s, want error code %s", b, tc.code)
				}
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Fatalf("content type: got %q, want %q", got, tc.contentType)
			}
			if resp.Header.Get(ReportSinceHeader) == "" {
				t.Fatalf("no %s header", ReportSinceHeader)
			}
			if tc.body != nil {
				tc.body(t, b)
			}
		})
	}

	// Every successful run, and nothing else, is audited.
	rows, err := e.db.Query(`SELECT actor, data FROM audit_events WHERE type = 'report.run' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type run struct {
		actor string
		data  map[string]any
	}
	var runs []run
	for rows.Next() {
		var r run
		var data string
		if err := rows.Scan(&r.actor, &data); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal([]byte(data), &r.data)
		runs = append(runs, r)
	}
	if len(runs) != 5 {
		t.Fatalf("got %d report.run events, want 5", len(runs))
	}
	if r := runs[1]; r.actor != "root" || r.data["kind"] != "access" || r.data["format"] != "csv" || r.data["rows"] != float64(1) ||
		r.data["since"] != now.Add(-24*time.Hour).Format(time.RFC3339Nano) {
		t.Fatalf("got %+v, want root's csv access run of 1 row since a day ago", r)
	}
}

// TestReportFailsClosedWhenAuditIsDown: a report whose run cannot be
// audited is not given out.
func TestReportFailsClosedWhenAuditIsDown(t *testing.T) {
	e := newReportEnv(t, time.Now())
	if resp, b := e.get(t, "/api/v1/reports/access", e.admin); resp.StatusCode != 200 {
		t.Fatalf("before: got %d %s, want 200", resp.StatusCode, b)
	}
	e.log.Close()
	resp, b := e.get(t, "/api/v1/reports/access", e.admin)
	var out struct{ Error APIError }
	json.Unmarshal(b, &out)
	if resp.StatusCode != http.StatusServiceUnavailable || out.Error.Code != "unavailable" {
		t.Fatalf("got %d %s, want 503 unavailable", resp.StatusCode, b)
	}
}
