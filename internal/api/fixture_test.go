package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

// fixture is what every API test server is built on: a state database
// with its audit log, a master key, a keyring, a verifier that records
// verifications, a signer, and tokens for an admin ("root") and a user
// ("alice").
type fixture struct {
	db  *store.DB
	mk  *masterkey.Key
	log *audit.Log
	// reg and logger are the server's registry and (silent) logger.
	reg         *prometheus.Registry
	logger      *slog.Logger
	kr          *token.Keyring
	revs        *token.Revocations
	verifier    *token.Verifier
	signer      *token.Signer
	admin, user string
}

// fixtureOptions vary a fixture; the zero value is one database and the
// real clock.
type fixtureOptions struct {
	// now is the clock of the audit log and the server; nil: time.Now.
	now func() time.Time
	// separateVerify keeps keys and token verifications in a database of
	// their own, so the action log (f.log) can be closed, to test a store
	// that is down, while tokens still verify.
	separateVerify bool
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string, now func() time.Time) (*store.DB, *audit.Log) {
		db, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		log, err := audit.Open(ctx, db, now)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		return db, log
	}
	f := &fixture{reg: prometheus.NewRegistry(), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f.db, f.log = open("v.db", o.now)
	keysDB, verifyLog := f.db, f.log
	if o.separateVerify {
		keysDB, verifyLog = open("verify.db", nil)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	f.mk, _ = masterkey.New(secret, "test")
	var err error
	if f.kr, _, err = token.OpenKeyring(ctx, keysDB, f.mk, token.KeyringConfig{MaxTTL: token.DefaultMaxTTL}); err != nil {
		t.Fatal(err)
	}
	f.revs, _ = token.OpenRevocations(ctx, keysDB, nil)
	f.verifier, err = token.NewVerifier(token.VerifierConfig{Issuer: "vigil", Audience: "vigil", MaxTTL: token.DefaultMaxTTL,
		Keyring: f.kr, Revocations: f.revs, Observe: token.NewRecorder(verifyLog, f.reg, f.logger).Verified})
	if err != nil {
		t.Fatal(err)
	}
	f.signer = token.NewSigner(f.kr, token.IssuerSettings{Issuer: "vigil", Audience: "vigil"})
	f.admin, _, _ = f.signer.Issue(token.Request{Subject: "root", Roles: []string{token.RoleAdmin}})
	f.user, _, _ = f.signer.Issue(token.Request{Subject: "alice"})
	return f
}

// server returns a Server with the fixture's parts; tests add the
// services they exercise. now nil means time.Now.
func (f *fixture) server(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{Verifier: f.verifier, Signer: f.signer, Keyring: f.kr, Revocations: f.revs, Audit: f.log,
		Issuer: "vigil", Gatherer: f.reg, Log: f.logger, Now: now}
}

// serve runs s until the test ends.
func serve(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// call sends body (JSON text, may be empty) with tok (when not empty)
// and decodes a 2xx answer into out (when not nil); it returns the status
// and, for an error, the error in the API's JSON format (a test fails if
// an error is not in that format).
func call(t *testing.T, base, method, path, tok, body string, out any) (int, APIError) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var apiErr struct{ Error APIError }
		if json.Unmarshal(b, &apiErr) != nil || apiErr.Error.Code == "" {
			t.Fatalf("%s %s: error body %q is not the JSON error format", method, path, b)
		}
		return resp.StatusCode, apiErr.Error
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, b)
		}
	}
	return resp.StatusCode, APIError{}
}
