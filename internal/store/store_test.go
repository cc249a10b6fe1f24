package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenAndMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v.db")
	db, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetMetaOnce(ctx, "k", "first"); err != nil {
		t.Fatal(err)
	}
	db.SetMetaOnce(ctx, "k", "second")
	if v, ok, _ := db.Meta(ctx, "k"); !ok || v != "first" {
		t.Fatalf("meta: got %q %v, want first", v, ok)
	}
	db.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode %o, want 600", fi.Mode().Perm())
	}

	// Reopening applies nothing twice; a schema from a newer binary is
	// refused rather than used.
	db, err = Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n)
	if n != SchemaVersion {
		t.Fatalf("got %d migrations recorded, want %d", n, SchemaVersion)
	}
	db.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, SchemaVersion+1)
	db.Close()
	if _, err := Open(ctx, "sqlite://"+path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: got %v", err)
	}
}

func TestOpenBadURLs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	os.WriteFile(filepath.Join(dir, "garbage.db"), []byte(strings.Repeat("not a database ", 500)), 0o600)
	tests := []struct{ url, want string }{
		{"vigil.db", "not a store URL"},
		{"mysql://x", "unknown scheme"},
		{"sqlite://", "needs a file path"},
		{"sqlite://" + filepath.Join(file, "v.db"), "not a directory"},
		{"sqlite://" + filepath.Join(dir, "missing", "v.db"), "database directory"},
		{"sqlite://" + filepath.Join(dir, "garbage.db"), "not a database"},
		{"postgres://u:hunter2@db/vigil", "not available"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Open(context.Background(), tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("password in error")
			}
		})
	}
}

// TestOpenOddPaths: characters that mean something in a URI open the file
// named, not another one.
func TestOpenOddPaths(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"a#b", "a?b", "a%20b", "a b"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			os.Mkdir(dir, 0o700)
			path := filepath.Join(dir, "v.db")
			db, err := Open(ctx, "sqlite://"+path)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("got %v, want the database at %s with mode 600", err, path)
			}
		})
	}
}
