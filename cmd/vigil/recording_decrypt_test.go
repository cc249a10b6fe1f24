package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/recording"
)

// TestRecordingDecrypt: an auditor decrypts a recording offline with
// their identity file; other identities and loose key files are refused,
// and a failed decryption leaves no output file behind.
func TestRecordingDecrypt(t *testing.T) {
	dir := t.TempDir()
	auditor, _ := age.GenerateX25519Identity()
	stranger, _ := age.GenerateX25519Identity()
	keyFile := func(name string, id *age.X25519Identity, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("# test\n"+id.String()+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	auditorKey := keyFile("auditor.key", auditor, 0o600)
	strangerKey := keyFile("stranger.key", stranger, 0o600)
	looseKey := keyFile("loose.key", auditor, 0o644)

	// The gateway has the auditor's public key only.
	keys, _, err := recording.LoadKeys(config.Encryption{Recipients: []string{auditor.Recipient().String()}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w, err := recording.Create(dir, "s_dec", recording.Header{Width: 80, Height: 24}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	w.Output(start, []byte("top secret output"))
	sum, err := w.Close(start)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string // empty: success
	}{
		{name: "auditor to stdout", args: []string{"--identity", auditorKey}},
		{name: "auditor to a file", args: []string{"-i", strangerKey, "-i", auditorKey, "-o", filepath.Join(dir, "out.cast")}},
		{name: "stranger", args: []string{"--identity", strangerKey, "-o", filepath.Join(dir, "no.cast")}, wantErr: "not encrypted to any identity"},
		{name: "loose key file", args: []string{"--identity", looseKey}, wantErr: "chmod 600"},
		{name: "no identity", args: nil, wantErr: "identity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRecordingDecryptCmd()
			var stdout bytes.Buffer
			cmd.SetOut(&stdout)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(append([]string{sum.Path}, tc.args...))
			err := cmd.Execute()
			out := ""
			if i := slices.Index(tc.args, "-o"); i >= 0 {
				b, rerr := os.ReadFile(tc.args[i+1])
				if tc.wantErr != "" {
					if rerr == nil {
						t.Errorf("a failed decryption left %s", tc.args[i+1])
					}
				} else if rerr != nil {
					t.Fatal(rerr)
				} else if fi, _ := os.Stat(tc.args[i+1]); fi.Mode().Perm() != 0o600 {
					t.Errorf("got output mode %o, want 600", fi.Mode().Perm())
				}
				out = string(b)
			} else {
				out = stdout.String()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out, `{"version":2`) || !strings.Contains(out, "top secret output") {
				t.Fatalf("got %q, want the plain asciicast", out)
			}
		})
	}
}
