package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

// TestSessionRecordingEncrypted: a recording downloads as plain asciicast
// where the server holds an identity for it, and is refused with 409
// cannot_decrypt (no attachment, nothing of the recording) where it does
// not.
func TestSessionRecordingEncrypted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := audit.Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	sessions := session.NewStore(db)

	auditor, _ := age.GenerateX25519Identity()
	server, _ := age.GenerateX25519Identity()
	recipients := []age.Recipient{auditor.Recipient()}
	start := time.Now()
	w, err := recording.Create(dir, "s_enc", recording.Header{Width: 80, Height: 24}, start, recording.NewKeys(recipients, nil))
	if err != nil {
		t.Fatal(err)
	}
	w.Output(start, []byte("secret output"))
	if _, err := w.Close(start); err != nil {
		t.Fatal(err)
	}
	if err := sessions.Start(ctx, &session.Session{ID: "s_enc", Kind: "ssh", User: "alice", Target: "web1", StartedAt: start, Recording: w.Path()}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		keys   *recording.Keys
		status int
		code   string
	}{
		{"auditor's identity", recording.NewKeys(recipients, []age.Identity{auditor}), http.StatusOK, ""},
		{"recipients only", recording.NewKeys(recipients, nil), http.StatusConflict, "cannot_decrypt"},
		{"another identity", recording.NewKeys(recipients, []age.Identity{server}), http.StatusConflict, "cannot_decrypt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Sessions: sessions, Live: session.NewRegistry(nil), Audit: log, RecordingKeys: tc.keys,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
			req := httptest.NewRequest("GET", "/api/v1/sessions/s_enc/recording", nil)
			req.SetPathValue("id", "s_enc")
			req = req.WithContext(context.WithValue(req.Context(), ctxKey{}, &token.Identity{Claims: token.Claims{Subject: "root"}, Admin: true}))
			rec := httptest.NewRecorder()
			s.sessionRecording(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.status {
				t.Fatalf("got status %d, want %d (body %q)", rec.Code, tc.status, body)
			}
			if tc.code == "" {
				if !strings.HasPrefix(body, `{"version":2`) || !strings.Contains(body, "secret output") {
					t.Fatalf("got body %q, want the plain asciicast", body)
				}
				return
			}
			var out struct{ Error APIError }
			if err := json.Unmarshal([]byte(body), &out); err != nil || out.Error.Code != tc.code || !strings.Contains(out.Error.Message, "vigil recording decrypt") {
				t.Fatalf("got body %q, want a %s error naming the offline decryption", body, tc.code)
			}
			if cd := rec.Header().Get("Content-Disposition"); cd != "" || strings.Contains(body, "secret") {
				t.Fatalf("got Content-Disposition %q, body %q; want neither an attachment nor the recording", cd, body)
			}
		})
	}
}
