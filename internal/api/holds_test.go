package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/retention"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/vault"
)

// holdsEnv is an API server with sessions, holds and a retention
// sweeper. Token verifications are recorded in their own audit log, so
// the action log (holds, sweeps, disposals) can fail while tokens still
// verify.
type holdsEnv struct {
	srv         *httptest.Server
	db          *store.DB
	log         *audit.Log
	sessions    *session.Store
	recordings  string
	admin, user string
}

// holdsNow is the fake clock of holdsEnv.
var holdsNow = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

func newHoldsEnv(t *testing.T) *holdsEnv {
	t.Helper()
	now := func() time.Time { return holdsNow }
	f := newFixture(t, fixtureOptions{now: now, separateVerify: true})
	vlt := vault.New(f.db, f.mk, now)
	recordings := t.TempDir()
	sweeper, err := retention.New(retention.Config{Policy: config.Retention{}, DB: f.db, Targets: vlt, Audit: f.log,
		RecordingsDir: recordings, Now: now, Log: f.logger, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewStore(f.db)
	s := f.server(now)
	s.Vault, s.Sessions, s.Live, s.Retention = vlt, sessions, session.NewRegistry(nil), sweeper
	return &holdsEnv{srv: serve(t, s), db: f.db, log: f.log, sessions: sessions, recordings: recordings, admin: f.admin, user: f.user}
}

// addSession stores an ended session on target "web" whose recording,
// on disk, ended age ago.
func (e *holdsEnv) addSession(t *testing.T, user string, age time.Duration) (id, path string) {
	t.Helper()
	ctx := context.Background()
	id = session.NewID()
	path = filepath.Join(e.recordings, id+".cast.gz")
	if err := os.WriteFile(path, []byte("recording"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &session.Session{ID: id, Kind: "ssh", User: user, Target: "web", Login: "root",
		StartedAt: holdsNow.Add(-age - time.Hour), Recording: path}
	if err := e.sessions.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.EndedAt = holdsNow.Add(-age)
	if err := e.sessions.End(ctx, s); err != nil {
		t.Fatal(err)
	}
	return id, path
}

// do is call on this server, returning the error code only.
func (e *holdsEnv) do(t *testing.T, method, path, tok, body string, out any) (int, string) {
	t.Helper()
	status, apiErr := call(t, e.srv.URL, method, path, tok, body, out)
	return status, apiErr.Code
}

// types returns the types of the action log's events, in order.
func (e *holdsEnv) types(t *testing.T) []string {
	t.Helper()
	rows, err := e.db.Query(`SELECT type FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ string
		rows.Scan(&typ)
		out = append(out, typ)
	}
	return out
}

func TestHoldsAPIErrors(t *testing.T) {
	e := newHoldsEnv(t)
	id, _ := e.addSession(t, "alice", time.Hour)
	tests := []struct {
		name, method, path, tok, body string
		status                        int
		code                          string
	}{
		{"list as a user", "GET", "/api/v1/holds", e.user, "", 403, "forbidden"},
		{"add as a user", "POST", "/api/v1/holds", e.user, `{"user":"bob","reason":"r"}`, 403, "forbidden"},
		{"sweep as a user", "POST", "/api/v1/retention/sweep", e.user, "", 403, "forbidden"},
		{"nothing held", "POST", "/api/v1/holds", e.admin, `{"reason":"r"}`, 400, "bad_request"},
		{"two selectors", "POST", "/api/v1/holds", e.admin, `{"user":"bob","target":"web","reason":"r"}`, 400, "bad_request"},
		{"no reason", "POST", "/api/v1/holds", e.admin, `{"session":"` + id + `"}`, 400, "bad_request"},
		{"unknown session", "POST", "/api/v1/holds", e.admin, `{"session":"s_nope","reason":"r"}`, 400, "bad_request"},
		{"unknown field", "POST", "/api/v1/holds", e.admin, `{"subject":"bob","reason":"r"}`, 400, "bad_request"},
		{"bad all", "GET", "/api/v1/holds?all=maybe", e.admin, "", 400, "bad_request"},
		{"release unknown", "DELETE", "/api/v1/holds/h_nope", e.admin, "", 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, code := e.do(t, tc.method, tc.path, tc.tok, tc.body, nil)
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}
}

// TestHoldsAPI: place, list, sweep, release, sweep again; a disposed
// recording's download answers 410 Gone; every action is audited.
func TestHoldsAPI(t *testing.T) {
	e := newHoldsEnv(t)
	held, heldPath := e.addSession(t, "mallory", 100*24*time.Hour)
	free, freePath := e.addSession(t, "alice", 100*24*time.Hour)

	var h retention.Hold
	if status, code := e.do(t, "POST", "/api/v1/holds", e.admin, `{"user":"mallory","reason":"case 7"}`, &h); status != 201 {
		t.Fatalf("add: got %d %s, want 201", status, code)
	}
	if h.Subject != "mallory" || h.CreatedBy != "root" || !h.Active() {
		t.Fatalf("add: got %+v", h)
	}
	var list struct{ Holds []retention.Hold }
	if e.do(t, "GET", "/api/v1/holds", e.admin, "", &list); len(list.Holds) != 1 || list.Holds[0].ID != h.ID {
		t.Fatalf("list: got %+v, want [%s]", list.Holds, h.ID)
	}

	var res retention.Result
	if status, code := e.do(t, "POST", "/api/v1/retention/sweep", e.admin, "", &res); status != 200 {
		t.Fatalf("sweep: got %d %s", status, code)
	}
	if len(res.Disposed) != 1 || res.Disposed[0].Session != free || res.Held != 1 {
		t.Fatalf("sweep: got %+v, want %s disposed and one held", res, free)
	}
	if _, err := os.Stat(freePath); !os.IsNotExist(err) {
		t.Fatalf("disposed recording still on disk: %v", err)
	}
	if _, err := os.Stat(heldPath); err != nil {
		t.Fatalf("held recording: %v", err)
	}
	if status, code := e.do(t, "GET", "/api/v1/sessions/"+free+"/recording", e.admin, "", nil); status != http.StatusGone || code != "disposed" {
		t.Fatalf("download of a disposed recording: got %d %s, want 410 disposed", status, code)
	}
	var sess session.Session
	if e.do(t, "GET", "/api/v1/sessions/"+free, e.admin, "", &sess); !sess.DisposedAt.Equal(holdsNow) {
		t.Fatalf("session disposed_at: got %v, want %v", sess.DisposedAt, holdsNow)
	}

	var rel retention.Hold
	if status, code := e.do(t, "DELETE", "/api/v1/holds/"+h.ID, e.admin, "", &rel); status != 200 || rel.Active() || rel.ReleasedBy != "root" {
		t.Fatalf("release: got %d %s %+v", status, code, rel)
	}
	if status, code := e.do(t, "DELETE", "/api/v1/holds/"+h.ID, e.admin, "", nil); status != http.StatusConflict || code != "released" {
		t.Fatalf("second release: got %d %s, want 409 released", status, code)
	}
	if e.do(t, "GET", "/api/v1/holds", e.admin, "", &list); len(list.Holds) != 0 {
		t.Fatalf("list after release: got %+v, want none", list.Holds)
	}
	if e.do(t, "GET", "/api/v1/holds?all=true", e.admin, "", &list); len(list.Holds) != 1 {
		t.Fatalf("list all after release: got %+v, want the released hold", list.Holds)
	}
	if e.do(t, "POST", "/api/v1/retention/sweep", e.admin, "", &res); len(res.Disposed) != 1 || res.Disposed[0].Session != held {
		t.Fatalf("sweep after release: got %+v, want %s disposed", res, held)
	}

	want := []string{"hold.add", "retention.sweep", retention.EventDispose, retention.EventDisposed,
		"hold.release", "retention.sweep", retention.EventDispose, retention.EventDisposed}
	if got := e.types(t); !slices.Equal(got, want) {
		t.Fatalf("audit events: got %v, want %v", got, want)
	}
}

// TestHoldsAPIFailsClosedWhenAuditIsDown: with the action log down, a
// hold placed is not confirmed (but keeps), a release is refused before
// it takes effect, and a sweep deletes nothing.
func TestHoldsAPIFailsClosedWhenAuditIsDown(t *testing.T) {
	e := newHoldsEnv(t)
	_, path := e.addSession(t, "alice", 100*24*time.Hour)
	var h retention.Hold
	if status, _ := e.do(t, "POST", "/api/v1/holds", e.admin, `{"target":"db1","reason":"case 9"}`, &h); status != 201 {
		t.Fatalf("add: %d", status)
	}
	e.log.Close()
	tests := []struct{ name, method, path, body string }{
		{"add", "POST", "/api/v1/holds", `{"user":"bob","reason":"case 10"}`},
		{"release", "DELETE", "/api/v1/holds/" + h.ID, ""},
		{"sweep", "POST", "/api/v1/retention/sweep", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, code := e.do(t, tc.method, tc.path, e.admin, tc.body, nil)
			if status != http.StatusServiceUnavailable || code != "unavailable" {
				t.Fatalf("got %d %s, want 503 unavailable", status, code)
			}
		})
	}
	var list struct{ Holds []retention.Hold }
	if e.do(t, "GET", "/api/v1/holds", e.admin, "", &list); len(list.Holds) != 2 {
		t.Fatalf("holds in force: got %+v, want the first still in force and the unconfirmed one kept", list.Holds)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("recording deleted while the audit log was down: %v", err)
	}
}
