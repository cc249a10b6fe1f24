// Package store owns Vigil's state database: opening it from a URL, its
// versioned schema migrations, and the few conventions every package that
// writes SQL follows. The embedded default is SQLite through
// modernc.org/sqlite (no cgo). SQL in Vigil is written to run unchanged on
// PostgreSQL: `$N` placeholders (which SQLite also accepts), TEXT and BIGINT
// columns, times as BIGINT Unix nanoseconds, no AUTOINCREMENT, no
// dialect-specific upserts beyond `ON CONFLICT … DO NOTHING`.
//
// The package does not own any table's meaning: token, audit and policy
// each keep their own queries.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DB is an open, migrated state database.
type DB struct {
	*sql.DB
	// URL is the store URL it was opened from, for messages.
	URL string
	// txMu queues this process's write transactions (Tx) in Go, fairly:
	// SQLite's busy handler polls with growing sleeps, and a writer that
	// commits back to back (the statement log under load) could keep
	// another (an audit checkpoint) waiting past busy_timeout.
	txMu sync.Mutex
}

// busyTimeout is how long SQLite waits for a competing writer before it
// reports SQLITE_BUSY; group commit keeps writers few, so waits are short.
const busyTimeout = 5 * time.Second

// Open opens the store at rawURL (`sqlite://PATH`; `postgres://` is
// reserved for the shared-state deployment and not available yet) and
// applies any pending migrations.
func Open(ctx context.Context, rawURL string) (*DB, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("store: %q is not a store URL (want sqlite://PATH)", rawURL)
	}
	switch scheme {
	case "sqlite":
		return openSQLite(ctx, rawURL, rest)
	case "postgres", "postgresql":
		return nil, fmt.Errorf("store: %s: the PostgreSQL store is not available in this version; use sqlite://PATH", redact(rawURL))
	default:
		return nil, fmt.Errorf("store: unknown scheme %q in %s (want sqlite://PATH)", scheme, redact(rawURL))
	}
}

func openSQLite(ctx context.Context, rawURL, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: sqlite:// needs a file path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("store: database directory: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("store: database directory %s is not a directory", dir)
		}
	}
	// The database holds sealed keys and the audit trail: owner only.
	// SQLite gives its -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", path, err)
	} else {
		f.Close()
	}
	// synchronous(FULL) makes a commit durable on return, which the audit
	// log relies on; _txlock=immediate takes the write lock at BEGIN so a
	// transaction never fails half-way with SQLITE_BUSY on upgrade.
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		"foreign_keys(1)",
		// Reads of a large audit log (verification, search) go through
		// the page cache or a memory map instead of a read syscall per
		// page.
		"cache_size(-16384)",
		"mmap_size(1073741824)",
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	// The path is a URI path: '?', '#' and '%' in a directory name must
	// not end it or be decoded (SQLite would open another file).
	sqldb, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	sqldb.SetMaxOpenConns(4)
	db := &DB{DB: sqldb, URL: rawURL}
	if err := db.PingContext(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		sqldb.Close()
		return nil, err
	}
	return db, nil
}

// Tx runs fn in a write transaction, committing if it returns nil. The
// process's transactions take turns (see DB.txMu); fn must not call Tx.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	db.txMu.Lock()
	defer db.txMu.Unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// redact removes a password from a store URL before it is shown.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable store URL)"
	}
	return u.Redacted()
}

// Nanos converts t for a BIGINT time column; the zero time is stored as 0.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time converts a BIGINT time column back; 0 is the zero time.
func Time(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
