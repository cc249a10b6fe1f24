package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
	"golang.org/x/crypto/ssh"
)

func newVault(t *testing.T) (*Vault, *store.DB) {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	secret := make([]byte, 32)
	rand.Read(secret)
	mk, _ := masterkey.New(secret, "test")
	return New(db, mk, nil), db
}

func keyPair(t *testing.T) ([]byte, string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func TestVaultRoundTrip(t *testing.T) {
	v, db := newVault(t)
	ctx := context.Background()
	key, hostKey := keyPair(t)
	web := Target{Name: "web1", Kind: KindSSH, Addr: "10.0.0.5:22", Login: "root", Auth: AuthKey, HostKey: hostKey, Labels: map[string]string{"env": "prod"}}
	added, err := v.Add(ctx, web, key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(added.HostKeyFingerprint, "SHA256:") {
		t.Fatalf("fingerprint %q", added.HostKeyFingerprint)
	}
	if _, err := v.Add(ctx, web, key); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: got %v, want ErrExists", err)
	}
	db1 := Target{Name: "db1", Kind: KindPostgres, Addr: "10.0.0.6:5432", Login: "app", Auth: AuthPassword, Database: "app"}
	if _, err := v.Add(ctx, db1, []byte("s3cret-pw")); err != nil {
		t.Fatal(err)
	}
	got, err := v.Get(ctx, "web1")
	if err != nil || got.Labels["env"] != "prod" || got.HostKey != hostKey {
		t.Fatalf("get: %+v %v", got, err)
	}
	cred, err := v.Credential(ctx, got)
	if err != nil || cred.Signer == nil {
		t.Fatalf("credential: %v", err)
	}
	pwTarget, _ := v.Get(ctx, "db1")
	if cred, err := v.Credential(ctx, pwTarget); err != nil || cred.Password != "s3cret-pw" {
		t.Fatalf("password credential: %v", err)
	}
	// Secrets are sealed: neither the password nor the key is in the
	// database in the clear, and a sealed secret moved to another target's
	// row does not open.
	var raw string
	db.QueryRowContext(ctx, `SELECT secret FROM targets WHERE name = 'db1'`).Scan(&raw)
	if strings.Contains(raw, "s3cret") {
		t.Fatal("password stored in the clear")
	}
	db.ExecContext(ctx, `UPDATE targets SET secret = $1 WHERE name = 'web1'`, raw)
	if _, err := v.Credential(ctx, got); err == nil {
		t.Fatal("a secret moved between targets opened")
	}
	ts, _ := v.List(ctx)
	if len(ts) != 2 || ts[0].Name != "db1" {
		t.Fatalf("list: %+v", ts)
	}
	if err := v.Remove(ctx, "db1"); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove(ctx, "db1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := v.Get(ctx, "db1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get removed: %v", err)
	}
}

func TestVaultRefusesBadInput(t *testing.T) {
	v, _ := newVault(t)
	ctx := context.Background()
	key, hostKey := keyPair(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pass"))
	encrypted := pem.EncodeToMemory(block)
	base := Target{Name: "t", Kind: KindSSH, Addr: "h:22", Login: "root", Auth: AuthKey, HostKey: hostKey}
	tests := []struct {
		name   string
		mutate func(*Target)
		secret []byte
		want   string
	}{
		{"bad name", func(t *Target) { t.Name = "../etc" }, key, "target name"},
		{"bad kind", func(t *Target) { t.Kind = "rdp" }, key, "kind"},
		{"no port", func(t *Target) { t.Addr = "host" }, key, "HOST:PORT"},
		{"login with @", func(t *Target) { t.Login = "a@b" }, key, "login"},
		{"no host key", func(t *Target) { t.HostKey = "" }, key, "pinned host key"},
		{"garbage host key", func(t *Target) { t.HostKey = "ssh-ed25519 AAAA!!" }, key, "not an SSH public key"},
		{"key is not a key", func(*Target) {}, []byte("-----BEGIN NOTHING-----"), "not an unencrypted SSH private key"},
		{"passphrase key", func(*Target) {}, encrypted, "passphrase-protected"},
		{"empty secret", func(*Target) {}, nil, "empty"},
		{"pg without database", func(t *Target) { t.Kind, t.Auth, t.HostKey = KindPostgres, AuthPassword, "" }, []byte("pw"), "--database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := base
			tc.mutate(&target)
			_, err := v.Add(ctx, target, tc.secret)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if tc.secret != nil && len(tc.secret) > 8 && strings.Contains(err.Error(), string(tc.secret[:8])) {
				t.Fatal("the error repeats the secret")
			}
		})
	}
}
