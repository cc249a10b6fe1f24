package masterkey

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	dir := t.TempDir()
	for _, env := range []string{hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
		k, err := Load(env, dir)
		if err != nil || k.Source != EnvVar {
			t.Fatalf("Load(%q): %v", env, err)
		}
	}
	for _, bad := range []string{"short", hex.EncodeToString(secret[:16]), strings.Repeat("z", 64)} {
		if _, err := Load(bad, dir); err == nil {
			t.Errorf("Load(%q): got nil error", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		t.Fatal("a key file was created although the key came from the environment")
	}

	// From the file: created 0600 on first use, the same key afterwards.
	k1, err := Load("", dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, FileName))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", fi.Mode().Perm())
	}
	k2, err := Load("", dir)
	if err != nil {
		t.Fatal(err)
	}
	sealed := k1.Seal([]byte("secret"), []byte("row-1"))
	if pt, err := k2.Open(sealed, []byte("row-1")); err != nil || string(pt) != "secret" {
		t.Fatalf("reloaded key cannot open: %v", err)
	}
	os.Chmod(filepath.Join(dir, FileName), 0o640)
	if _, err := Load("", dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: got %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	k, _ := New([]byte("0123456789abcdef0123456789abcdef"), "test")
	other, _ := New([]byte("fedcba9876543210fedcba9876543210"), "test")
	sealed := k.Seal([]byte("private key"), []byte("kid-1"))
	if string(sealed) == string(k.Seal([]byte("private key"), []byte("kid-1"))) {
		t.Fatal("two seals are identical: nonce reused")
	}
	tampered := append([]byte{}, sealed...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		key    *Key
		sealed []byte
		aad    string
	}{
		{"wrong key", other, sealed, "kid-1"},
		{"moved to another row", k, sealed, "kid-2"},
		{"altered", k, tampered, "kid-1"},
		{"truncated", k, sealed[:10], "kid-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.key.Open(tc.sealed, []byte(tc.aad)); err == nil {
				t.Fatal("opened")
			} else if tc.name != "truncated" && !errors.Is(err, ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch", err)
			}
		})
	}
}
