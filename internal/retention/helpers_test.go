package retention

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/vault"
)

const day = 24 * time.Hour

// t0 is the fake clock's now.
var t0 = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

// errAuditDown is what the sink returns while it is made to fail.
var errAuditDown = errors.New("audit: store unavailable (test)")

// sink is the real audit log with a switch to make appends fail and a
// copy of every event it made durable, in order.
type sink struct {
	log *audit.Log
	// mu guards fail, hook and events.
	mu sync.Mutex
	// fail makes appends of these event types fail ("*": all).
	fail   map[string]bool
	hook   func(audit.Event)
	events []audit.Event
}

func (s *sink) Append(ctx context.Context, ev audit.Event) error {
	s.mu.Lock()
	fail, hook := s.fail["*"] || s.fail[ev.Type], s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(ev)
	}
	if fail {
		return errAuditDown
	}
	if err := s.log.Append(ctx, ev); err != nil {
		return err
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	return nil
}

func (s *sink) setFail(types ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = map[string]bool{}
	for _, t := range types {
		s.fail[t] = true
	}
}

// ofSession returns the types of the events about session id, in order.
func (s *sink) ofSession(id string) []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	for _, ev := range s.events {
		if ev.Session == id {
			out = append(out, ev)
		}
	}
	return out
}

// env is a real store, vault, audit log and recordings directory, with a
// fake clock.
type env struct {
	db       *store.DB
	vault    *vault.Vault
	sessions *session.Store
	sink     *sink
	dir      string
	// now is the fake clock; tests move it only between sweeps.
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	tmp := t.TempDir()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(tmp, "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	secret := make([]byte, masterkey.Size)
	rand.Read(secret)
	mk, err := masterkey.New(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, sessions: session.NewStore(db), dir: filepath.Join(tmp, "recordings"), now: t0}
	e.vault = vault.New(db, mk, e.clock)
	log, err := audit.Open(ctx, db, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e.sink = &sink{log: log}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time { return e.now }

// sweeper returns a sweeper over e with policy p.
func (e *env) sweeper(t *testing.T, p config.Retention) *Sweeper {
	t.Helper()
	s, err := New(Config{Policy: p, DB: e.db, Targets: e.vault, Audit: e.sink, RecordingsDir: e.dir, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// addTarget adds a PostgreSQL target (no host key needed) with labels.
func (e *env) addTarget(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	_, err := e.vault.Add(context.Background(), vault.Target{Name: name, Kind: vault.KindPostgres, Addr: "db.example:5432",
		Login: "app", Auth: vault.AuthPassword, Database: "app", Labels: labels, CreatedBy: "test"}, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
}

// sessionSpec describes a session to create.
type sessionSpec struct {
	name, target, user string
	// age is how long ago the session ended (or started, with noEnd or
	// when active).
	age time.Duration
	// state is session.StateEnded when empty.
	state string
	// noEnd leaves ended_at 0 (age counts from the start).
	noEnd bool
	// missing leaves no recording file on disk.
	missing bool
}

// addSession creates the session and its recording file; it returns the
// session's ID and recording path.
func (e *env) addSession(t *testing.T, sp sessionSpec) (id, path string) {
	t.Helper()
	ctx := context.Background()
	id = session.NewID()
	path = filepath.Join(e.dir, id+".cast.age")
	user := sp.user
	if user == "" {
		user = "alice"
	}
	start := e.now.Add(-sp.age - time.Hour)
	if sp.noEnd || sp.state == session.StateActive {
		start = e.now.Add(-sp.age)
	}
	s := &session.Session{ID: id, Kind: "ssh", User: user, Target: sp.target, Login: "root", StartedAt: start, Recording: path}
	if err := e.sessions.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	if !sp.missing {
		if err := os.WriteFile(path, []byte("recording of "+sp.name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch sp.state {
	case session.StateActive:
		return id, path
	case session.StateInterrupted:
		if _, err := e.db.ExecContext(ctx, `UPDATE sessions SET state = $2, ended_at = $3 WHERE id = $1`,
			id, session.StateInterrupted, store.Nanos(e.now.Add(-sp.age))); err != nil {
			t.Fatal(err)
		}
		return id, path
	}
	if !sp.noEnd {
		s.EndedAt = e.now.Add(-sp.age)
	}
	s.Digest = "sha256-of-" + sp.name
	if err := e.sessions.End(ctx, s); err != nil {
		t.Fatal(err)
	}
	return id, path
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// disposedAt reads the session's disposed_at through package session.
func (e *env) disposedAt(t *testing.T, id string) time.Time {
	t.Helper()
	s, err := e.sessions.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s.DisposedAt
}
