package recording

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/vigil-pam/vigil/internal/config"
)

// TestLoadKeysDefault: with no recipients the data directory's identity
// is created (0600) on first use, reused after, and refused once others
// may read it.
func TestLoadKeysDefault(t *testing.T) {
	data := t.TempDir()
	k1, created, err := LoadKeys(config.Encryption{}, data)
	if err != nil || !created {
		t.Fatalf("first load: got created %v, %v; want true, nil", created, err)
	}
	path := filepath.Join(data, IdentityFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("got key file mode %o, want 600", fi.Mode().Perm())
	}
	if !k1.CanDecrypt() || !k1.CanEncrypt() || len(k1.Recipients()) != 1 || !strings.HasPrefix(k1.Recipients()[0], "age1") {
		t.Fatalf("got keys decrypt %v encrypt %v recipients %v, want both and one age1 recipient", k1.CanDecrypt(), k1.CanEncrypt(), k1.Recipients())
	}
	k2, created, err := LoadKeys(config.Encryption{}, data)
	if err != nil || created {
		t.Fatalf("second load: got created %v, %v; want false, nil", created, err)
	}
	if k2.Recipients()[0] != k1.Recipients()[0] {
		t.Fatalf("got recipient %s after a restart, want %s", k2.Recipients()[0], k1.Recipients()[0])
	}
	// A recording written before the restart plays after it.
	if evs, err := readEvents(writeFrames(t, k1, 1), k2); err != nil || len(evs) != 1 {
		t.Fatalf("got %d events, %v; want 1, nil", len(evs), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadKeys(config.Encryption{}, data); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key: got %v, want a refusal", err)
	}
	if _, _, err := LoadKeys(config.Encryption{}, ""); err == nil {
		t.Fatal("no recipients and no data directory: got nil error")
	}
}

// TestLoadKeysRecipients: configured recipients (keys or files) are
// encrypted to; the server decrypts only with identity_file.
func TestLoadKeysRecipients(t *testing.T) {
	dir := t.TempDir()
	a1, _ := age.GenerateX25519Identity()
	a2, _ := age.GenerateX25519Identity()
	a3, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	write := func(name, content string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	recipientsFile := write("auditors.txt", "# auditors\n"+a2.Recipient().String()+"\n\n"+a3.Recipient().String()+"\n", 0o644)
	twoIDs := write("ids.key", "# two\n"+a1.String()+"\n"+a3.String()+"\n", 0o600)
	loose := write("loose.key", a1.String()+"\n", 0o640)
	tests := []struct {
		name       string
		cfg        config.Encryption
		recipients int
		decrypt    bool   // the keys read a recording written to them
		wantErr    string // a substring of the error; empty: no error
	}{
		{name: "one key", cfg: config.Encryption{Recipients: []string{a1.Recipient().String()}}, recipients: 1},
		{name: "key and file", cfg: config.Encryption{Recipients: []string{a1.Recipient().String(), recipientsFile}}, recipients: 3},
		{name: "with identities", cfg: config.Encryption{Recipients: []string{recipientsFile}, IdentityFile: twoIDs}, recipients: 2, decrypt: true},
		{name: "bad key", cfg: config.Encryption{Recipients: []string{"age1notakey"}}, wantErr: "recipients[0]"},
		{name: "missing file", cfg: config.Encryption{Recipients: []string{filepath.Join(dir, "nope")}}, wantErr: "recipients[0]"},
		{name: "secret key as recipient", cfg: config.Encryption{Recipients: []string{twoIDs}}, wantErr: "recipients[0]"},
		{name: "classic and post-quantum", cfg: config.Encryption{Recipients: []string{a1.Recipient().String(), pq.Recipient().String()}}, wantErr: "incompatible"},
		{name: "readable identity file", cfg: config.Encryption{Recipients: []string{recipientsFile}, IdentityFile: loose}, wantErr: "chmod 600"},
		{name: "missing identity file", cfg: config.Encryption{Recipients: []string{recipientsFile}, IdentityFile: filepath.Join(dir, "nope")}, wantErr: "identity file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, created, err := LoadKeys(tc.cfg, t.TempDir())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if created {
				t.Error("an identity was created although recipients are configured")
			}
			if got := len(k.Recipients()); got != tc.recipients {
				t.Errorf("got %d recipients, want %d", got, tc.recipients)
			}
			if k.CanDecrypt() != tc.decrypt {
				t.Errorf("got CanDecrypt %v, want %v", k.CanDecrypt(), tc.decrypt)
			}
			_, err = readEvents(writeFrames(t, k, 1), k)
			if tc.decrypt && err != nil {
				t.Fatalf("read back: got %v, want nil", err)
			}
			if !tc.decrypt && !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("read back: got %v, want ErrNoIdentity", err)
			}
		})
	}
	if _, err := ReadIdentityFile(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing identity file: got %v, want fs.ErrNotExist", err)
	}
}
