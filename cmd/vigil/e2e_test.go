package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// vigilBin is the binary under test, built once by TestMain.
var vigilBin string

// buildFlags are passed to go build; under `go test -race` the binary is
// built with the race detector too, so the real gateway is checked under
// real traffic.
var buildFlags []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		panic(err)
	}
	// Traversable by others, so a test can run the binary unprivileged.
	os.Chmod(dir, 0o755)
	vigilBin = filepath.Join(dir, "vigil")
	if out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", vigilBin, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build vigil: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `vigil serve`.
type server struct {
	t    testing.TB
	data string
	addr string
	// sshAddr is the SSH gateway's address; pgAddr the PostgreSQL
	// gateway's.
	sshAddr string
	pgAddr  string
	cmd     *exec.Cmd
	// stdoutPath receives the server's stdout directly (no copying
	// goroutine): what it printed before logging "serving" is there.
	stdoutPath string
	// mu guards stderr, written by the log reader.
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

var servingRE = regexp.MustCompile(`msg="vigil serving" http=(\S+) ssh=(\S+) pg=(\S+)`)

// startServer runs vigil serve on a free loopback port and waits until it
// serves (or fails, returning its error output).
func startServer(t testing.TB, data string, env []string, args ...string) (*server, error) {
	return startServerAs(t, nil, data, env, args...)
}

// startServerAs is startServer under other credentials (nil: ours).
func startServerAs(t testing.TB, cred *syscall.Credential, data string, env []string, args ...string) (*server, error) {
	t.Helper()
	s := &server{t: t, data: data, done: make(chan error, 1)}
	s.cmd = exec.Command(vigilBin, append([]string{"serve", "--http-addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0", "--data", data}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.stdoutPath = out.Name()
	s.cmd.Stdout = out
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				ready <- m[1:]
			}
		}
	}()
	go func() { err := s.cmd.Wait(); pw.Close(); s.done <- err }()
	select {
	case addrs := <-ready:
		s.addr, s.sshAddr, s.pgAddr = addrs[0], addrs[1], addrs[2]
		t.Cleanup(func() { s.stop() })
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("vigil serve exited (%v): %s", err, s.logs())
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		return nil, fmt.Errorf("vigil serve did not start: %s", s.logs())
	}
}

func (s *server) stdout() string {
	b, err := os.ReadFile(s.stdoutPath)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("vigil serve exited with %v after SIGTERM: %s", err, s.logs())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("vigil serve did not stop on SIGTERM")
	}
}

// vigil runs a CLI command against s with tok (empty: the admin token
// file) and returns stdout, stderr and whether it exited 0.
func (s *server) vigil(tok string, args ...string) (string, string, bool) {
	s.t.Helper()
	cmd := exec.Command(vigilBin, args...)
	cmd.Env = append(os.Environ(), "VIGIL_ADDR=http://"+s.addr, "VIGIL_DATA="+s.data, "VIGIL_TOKEN="+tok)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

// must runs a CLI command that has to succeed.
func (s *server) must(tok string, args ...string) string {
	s.t.Helper()
	out, errs, ok := s.vigil(tok, args...)
	if !ok {
		s.t.Fatalf("vigil %s: %s", strings.Join(args, " "), errs)
	}
	return out
}

// mustFail runs a CLI command that has to fail with a one-line reason
// containing want.
func (s *server) mustFail(tok, want string, args ...string) {
	s.t.Helper()
	_, errs, ok := s.vigil(tok, args...)
	if ok {
		s.t.Fatalf("vigil %s: succeeded, want failure", strings.Join(args, " "))
	}
	if !strings.Contains(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		s.t.Fatalf("vigil %s: stderr %q, want one line containing %q", strings.Join(args, " "), errs, want)
	}
}

func (s *server) get(tok, path string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func jti(t testing.TB, s *server, tok string) string {
	t.Helper()
	var v struct{ Claims struct{ JTI string } }
	if err := json.Unmarshal([]byte(s.must("", "token", "verify", tok)), &v); err != nil || v.Claims.JTI == "" {
		t.Fatalf("verify output has no jti: %v", err)
	}
	return v.Claims.JTI
}

func TestCLIEndToEnd(t *testing.T) {
	data := filepath.Join(t.TempDir(), "vigil-data")
	s, err := startServer(t, data, nil)
	if err != nil {
		t.Fatal(err)
	}

	// First start: bootstrap token printed once and stored owner-only.
	if !strings.Contains(s.stdout(), "Bootstrap admin token") {
		t.Fatalf("first start did not print the bootstrap token: %q", s.stdout())
	}
	for _, f := range []string{"admin.token", "master.key", "vigil.db"} {
		fi, err := os.Stat(filepath.Join(data, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	adminTok, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	if !strings.Contains(s.stdout(), strings.TrimSpace(string(adminTok))) {
		t.Fatal("printed token differs from admin.token")
	}

	// Public endpoints.
	if code, _ := s.get("", "/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	code, body := s.get("", "/.well-known/jwks.json")
	if code != 200 || !bytes.Contains(body, []byte(`"alg":"EdDSA"`)) || bytes.Contains(body, []byte(`"d":`)) {
		t.Fatalf("jwks: %d %s", code, body)
	}

	// Issue, verify, use.
	userTok := strings.TrimSpace(s.must("", "token", "issue", "--user", "alice", "--grant", "web1:root:shell,exec", "--ttl", "30m"))
	if strings.Count(userTok, ".") != 2 {
		t.Fatalf("token issue printed %q", userTok)
	}
	code, body = s.get(userTok, "/api/v1/whoami")
	if code != 200 || !bytes.Contains(body, []byte(`"sub": "alice"`)) || !bytes.Contains(body, []byte(`"admin": false`)) {
		t.Fatalf("whoami: %d %s", code, body)
	}
	s.mustFail("", "exceeds the maximum", "token", "issue", "--user", "alice", "--ttl", "9h")
	s.mustFail("", "unknown action", "token", "issue", "--user", "alice", "--grant", "web1:root:sudo")

	// A user is not an admin, and may only narrow what is stored for them.
	s.mustFail(userTok, "admin role required", "keys", "ls")
	s.mustFail(userTok, "no grant allows shell on web1 as root", "token", "issue", "--grant", "web1:root:shell")
	gid := strings.TrimSpace(s.must("", "grant", "add", "--user", "alice", "--target", "web1", "--login", "root", "--actions", "shell,exec", "--max-ttl", "20m"))
	if !strings.HasPrefix(gid, "g_") {
		t.Fatalf("grant add printed %q", gid)
	}
	if out := s.must("", "grant", "ls"); !strings.Contains(out, gid) || !strings.Contains(out, "user:alice") {
		t.Fatalf("grant ls: %s", out)
	}
	narrow := strings.TrimSpace(s.must(userTok, "token", "issue", "--grant", "web1:root:exec"))
	var claims struct {
		Claims struct {
			Sub      string
			Exp, Iat int64
		}
	}
	json.Unmarshal([]byte(s.must("", "token", "verify", narrow)), &claims)
	if claims.Claims.Sub != "alice" || claims.Claims.Exp-claims.Claims.Iat != int64((15*time.Minute).Seconds()) {
		t.Fatalf("narrowed token claims %+v", claims.Claims)
	}
	s.mustFail(userTok, "max_ttl", "token", "issue", "--grant", "web1:root:exec", "--ttl", "25m")
	s.mustFail(userTok, "another user", "token", "issue", "--user", "bob", "--grant", "web1:root:exec")
	s.mustFail(userTok, "only an admin", "token", "issue", "--role", "admin", "--grant", "web1:root:exec")
	s.must("", "grant", "rm", gid)
	s.mustFail("", "no such grant", "grant", "rm", gid)

	// Revocation: refused at once, by the CLI and the API.
	userJTI := jti(t, s, userTok)
	s.must("", "token", "revoke", userJTI, "--reason", "e2e")
	s.mustFail("", "token invalid: revoked", "token", "verify", userTok)
	if code, body := s.get(userTok, "/api/v1/whoami"); code != 401 || bytes.Contains(body, []byte("revoked")) {
		t.Fatalf("revoked token: %d %s (the client must get a generic denial)", code, body)
	}

	// Rotation: the old key still verifies what it signed.
	before := strings.TrimSpace(s.must("", "token", "issue", "--user", "carol"))
	s.must("", "keys", "rotate")
	after := strings.TrimSpace(s.must("", "token", "issue", "--user", "carol"))
	var keys struct {
		Keys []struct {
			KID    string
			Active bool
		}
	}
	json.Unmarshal([]byte(s.must("", "keys", "ls", "-o", "json")), &keys)
	if len(keys.Keys) != 2 || !keys.Keys[0].Active || keys.Keys[1].Active {
		t.Fatalf("keys after rotation: %+v", keys.Keys)
	}
	for _, tok := range []string{before, after} {
		s.must("", "token", "verify", tok)
	}
	_, body = s.get("", "/.well-known/jwks.json")
	if n := bytes.Count(body, []byte(`"kid"`)); n != 2 {
		t.Fatalf("jwks publishes %d keys, want 2", n)
	}

	// Garbage never gets past a generic 401, and is recorded.
	// Change one character inside the signature: still canonical, no longer valid.
	mid, repl := len(before)-20, "A"
	if before[mid] == 'A' {
		repl = "B"
	}
	tampered := before[:mid] + repl + before[mid+1:]
	for _, junk := range []string{"x", strings.Repeat("A", 20000), "a.b.c", tampered} {
		if code, body := s.get(junk, "/api/v1/whoami"); code != 401 || !bytes.Contains(body, []byte(`"authentication required"`)) {
			t.Fatalf("junk token: %d %s", code, body)
		}
	}
	if code, _ := s.get("", "/api/v1/whoami"); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	evs := s.must("", "audit", "search", "--type", "token.verify", "-o", "json")
	for _, want := range []string{`"reason": "revoked"`, `"reason": "oversized"`, `"reason": "malformed"`, `"reason": "bad_signature"`} {
		if !strings.Contains(evs, want) {
			t.Errorf("audit has no verification with %s", want)
		}
	}
	for _, tok := range []string{userTok, before, after, strings.TrimSpace(string(adminTok))} {
		if strings.Contains(evs, tok) || strings.Contains(s.logs(), tok) {
			t.Fatal("a token appears in the audit log or the server log")
		}
	}
	_, body = s.get("", "/metrics")
	if !bytes.Contains(body, []byte(`vigil_token_verifications_total{issuer_kind="vigil",outcome="rejected",reason="revoked"}`)) {
		t.Fatalf("metrics lack the revoked counter")
	}
	if out := s.must("", "audit", "search", "--type", "token.issue"); !strings.Contains(out, "alice") {
		t.Fatalf("token.issue events: %s", out)
	}

	// Restart: graceful stop, revocation and keys persist, no new
	// bootstrap token is printed.
	s.stop()
	s2, err := startServer(t, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s2.stdout(), "Bootstrap") {
		t.Fatal("second start printed a bootstrap token")
	}
	s2.mustFail("", "revoked", "token", "verify", userTok)
	s2.must("", "token", "verify", before)
	if out := s2.must("", "audit", "search", "--type", "vigil.stop"); !strings.Contains(out, "vigil.stop") {
		t.Fatal("no vigil.stop event after a graceful shutdown")
	}
	s2.stop()

	// The same data with another master key: refused with a clear error.
	other := make([]byte, 32)
	rand.Read(other)
	_, err = startServer(t, data, []string{"VIGIL_MASTER_KEY=" + base64.StdEncoding.EncodeToString(other)})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("wrong master key: got %v", err)
	}
}

func TestServeBadSetup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o600)
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("tokn: {}\n"), 0o600)
	looseKey := filepath.Join(dir, "loose")
	os.MkdirAll(looseKey, 0o700)
	os.WriteFile(filepath.Join(looseKey, "master.key"), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o644)
	tests := []struct {
		name string
		data string
		env  []string
		args []string
		want string
	}{
		{"data dir is a file", file, nil, nil, "not a directory"},
		{"unreadable config", filepath.Join(dir, "d1"), nil, []string{"--config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{"config typo", filepath.Join(dir, "d2"), nil, []string{"--config", badYAML}, "field tokn not found"},
		{"master key world-readable", looseKey, nil, nil, "chmod 600"},
		{"master key malformed", filepath.Join(dir, "d3"), []string{"VIGIL_MASTER_KEY=short"}, nil, "VIGIL_MASTER_KEY"},
		{"postgres store not yet", filepath.Join(dir, "d4"), nil, []string{"--store", "postgres://u:secret@h/db"}, "PostgreSQL store is not available"},
		{"env flag", filepath.Join(dir, "d5"), []string{"VIGIL_LOG_LEVEL=loud"}, nil, "log_level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := startServer(t, tc.data, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret@") {
				t.Fatal("store password shown in an error")
			}
		})
	}
}

// TestServeDataDirWithoutPermission: a data directory the server may not
// create or write is one clear error at start. Root ignores permissions,
// so as root the server runs as nobody.
func TestServeDataDirWithoutPermission(t *testing.T) {
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	tmp := t.TempDir()
	// The test's own directories must not be what stops the server.
	os.Chmod(tmp, 0o755)
	os.Chmod(filepath.Dir(tmp), 0o755)
	locked := filepath.Join(tmp, "locked")
	os.Mkdir(locked, 0o755)
	readOnly := filepath.Join(locked, "data")
	os.Mkdir(readOnly, 0o555)
	os.Chmod(locked, 0o555)
	t.Cleanup(func() { os.Chmod(locked, 0o755) })
	tests := []struct{ data, want string }{
		{filepath.Join(locked, "new"), "mkdir " + filepath.Join(locked, "new") + ": permission denied"},
		{readOnly, "data directory " + readOnly + " is not writable"},
	}
	for _, tc := range tests {
		_, err := startServerAs(t, cred, tc.data, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

// TestExternalIssuerEndToEnd configures a trusted IdP served over HTTP and
// checks that its tokens are accepted, mapped to roles, and refused when
// forged.
func TestExternalIssuerEndToEnd(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := jwk.PublicKeyOf(key.Public())
	pub.Set(jwk.KeyIDKey, "idp-1")
	pub.Set(jwk.AlgorithmKey, jwa.ES256())
	set := jwk.NewSet()
	set.AddKey(pub)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(set)
	}))
	defer idp.Close()
	const iss = "https://idp.example.test/"
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
issuers:
  - issuer: %s
    jwks_url: %s/jwks.json
    audience: vigil-ext
    roles_claim: groups
    admin_roles: [vigil-admins]
`, iss, idp.URL)), 0o600)
	s, err := startServer(t, filepath.Join(t.TempDir(), "data"), nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any, signer any) string {
		b, _ := json.Marshal(claims)
		hdr := jws.NewHeaders()
		hdr.Set(jws.KeyIDKey, "idp-1")
		tok, err := jws.Sign(b, jws.WithKey(jwa.ES256(), signer, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}
	now := time.Now()
	claims := map[string]any{"iss": iss, "sub": "okta|42", "aud": "vigil-ext", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"dba"}}
	code, body := s.get(sign(claims, key), "/api/v1/whoami")
	if code != 200 || !bytes.Contains(body, []byte(`"external": true`)) || !bytes.Contains(body, []byte(`"dba"`)) || !bytes.Contains(body, []byte(`"admin": false`)) {
		t.Fatalf("IdP token: %d %s", code, body)
	}
	claims["groups"] = []string{"vigil-admins"}
	if out := s.must(sign(claims, key), "keys", "ls"); !strings.Contains(out, "active") {
		t.Fatalf("IdP admin could not list keys: %s", out)
	}
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if code, _ := s.get(sign(claims, forger), "/api/v1/whoami"); code != 401 {
		t.Fatalf("forged IdP token: %d", code)
	}
	// An IdP user with a stored role grant can exchange their IdP token
	// for a Vigil token carrying it; the token cannot outlive theirs.
	s.must("", "grant", "add", "--role", "dba", "--target", "db1", "--login", "app", "--actions", "query")
	claims["groups"] = []string{"dba"}
	claims["exp"] = now.Add(5 * time.Minute).Unix()
	vt := strings.TrimSpace(s.must(sign(claims, key), "token", "issue", "--grant", "db1:app:query"))
	var v struct {
		Claims struct {
			Sub, Iss string
			Exp      int64
		}
	}
	json.Unmarshal([]byte(s.must("", "token", "verify", vt)), &v)
	if v.Claims.Sub != "okta|42" || v.Claims.Iss != "vigil" || v.Claims.Exp > now.Add(5*time.Minute).Unix() {
		t.Fatalf("exchanged token claims %+v", v.Claims)
	}
}
