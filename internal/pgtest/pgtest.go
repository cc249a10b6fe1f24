// Package pgtest runs a real PostgreSQL server on a free 127.0.0.1 port for
// tests: a throwaway cluster made by initdb, a superuser and an ordinary
// role ("app") that log in over TCP with SCRAM, a database "app" owned by
// that role, and TLS with a certificate signed by a per-run CA so clients can
// test sslmode=verify-full. The server is stopped, and its files removed, by
// the test that started it.
//
// It needs the Debian postgresql and postgresql-client packages, which
// scripts/test-deps.sh installs. PostgreSQL refuses to run as root, so when
// the tests run as root the server runs as the postgres system user that the
// Debian package creates. It owns the server process and its files; it does
// not own connection pools, schemas or migrations, which belong to the
// packages under test.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds how long Start waits for a launched server to
	// accept connections. A first start takes about a second; a loaded CI
	// machine running many test packages at once can take far longer.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits for a fast shutdown before it kills
	// the server.
	stopTimeout = 10 * time.Second
	// commandTimeout bounds initdb and each Psql call, so a hung server fails
	// the test with a message instead of hanging until the go test deadline.
	commandTimeout = 2 * time.Minute
	// pollInterval is how often Start checks whether the server is ready.
	pollInterval = 50 * time.Millisecond
	// startAttempts is how many free ports Start tries: another process can
	// take the port between Start picking it and postgres binding it.
	startAttempts = 3
	// logTailLines is how much of server.log a failure message includes.
	logTailLines = 40
)

const (
	// superUser is the bootstrap superuser made by initdb.
	superUser = "postgres"
	// appRole and appDatabase are the ordinary role and its database.
	appRole     = "app"
	appDatabase = "app"
	// systemUser is the account the server runs as when the tests run as
	// root; the Debian postgresql package creates it.
	systemUser = "postgres"
	// debianBinGlob matches the server binary of every installed major
	// version on Debian and Ubuntu.
	debianBinGlob = "/usr/lib/postgresql/*/bin/postgres"
)

// errPortTaken reports that postgres could not bind the port Start picked.
var errPortTaken = errors.New("pgtest: port taken")

// Server is a running PostgreSQL server on 127.0.0.1. Its fields are set by
// Start and must not be changed.
type Server struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// Host is "127.0.0.1".
	Host string
	// Port is the TCP port the server listens on.
	Port int
	// BinDir is the directory with postgres, psql, pgbench, initdb and
	// pg_ctl of the newest installed major version.
	BinDir string
	// Dir holds the server's files: the cluster in Dir/data, the unix
	// socket, the TLS certificates and keys, and server.log (what the server
	// wrote to stderr).
	Dir string
	// SuperUser and SuperPassword are a superuser that logs in over TCP
	// with SCRAM; the password is random per run.
	SuperUser, SuperPassword string
	// User and Password are an ordinary LOGIN role ("app") that logs in over
	// TCP with SCRAM; the password is random per run.
	User, Password string
	// Database is "app", owned by User.
	Database string
	// CACertFile is the PEM file of the self-signed CA that signed the
	// server's certificate, for sslmode=verify-full; the certificate names
	// 127.0.0.1, ::1 and localhost.
	CACertFile string
	// CACert is the contents of CACertFile.
	CACert []byte

	// dataDir is the cluster directory, Dir/data.
	dataDir string
	// owner is the account the server runs as, nil to run it as ourselves.
	owner *syscall.Credential
	// log is server.log, the server's stdout and stderr.
	log *os.File
	// cmd is the postmaster; exited is closed once cmd.Wait has returned.
	// Both are set before Start returns and not changed after.
	cmd    *exec.Cmd
	exited chan struct{}
	// stopOnce makes Stop idempotent.
	stopOnce sync.Once
}

// Options configures Start. The zero value gives the defaults.
type Options struct {
	// Fsync makes the server durable. False, the default, turns off fsync,
	// synchronous_commit and full_page_writes, which is much faster and
	// loses nothing a test cares about unless it tests crashes.
	Fsync bool
	// MaxConnections is max_connections; zero means 100.
	MaxConnections int
	// Settings are extra postgresql.conf settings, name to value. Values are
	// quoted for postgresql.conf, so write them as SHOW prints them
	// ("8MB", "on"). They override the settings Start makes.
	Settings map[string]string
}

// Start initialises a cluster and runs a PostgreSQL server for t, failing
// the test with setup instructions when PostgreSQL is not installed. The
// server is stopped and its files removed in t.Cleanup. At most one Options
// may be given.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("pgtest: Start takes at most one Options, got %d", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	binDir, err := findBinDir(debianBinGlob)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parent is 0700 and owned by us, which the postgres
	// user cannot enter when we are root.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: make server directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	s := &Server{
		Host:       "127.0.0.1",
		BinDir:     binDir,
		Dir:        dir,
		SuperUser:  superUser,
		User:       appRole,
		Database:   appDatabase,
		CACertFile: filepath.Join(dir, "ca.crt"),
		dataDir:    filepath.Join(dir, "data"),
		owner:      owner,
	}
	t.Cleanup(s.Stop)
	if s.SuperPassword, err = randomPassword(); err != nil {
		t.Fatal(err)
	}
	if s.Password, err = randomPassword(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if err := s.initCluster(ctx, o); err != nil {
		t.Fatal(err)
	}
	if s.log, err = os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatalf("pgtest: open server log: %v", err)
	}
	t.Cleanup(func() { s.log.Close() })
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		err = s.launch(o, port)
		if err == nil {
			break
		}
		if errors.Is(err, errPortTaken) && attempt < startAttempts {
			continue
		}
		t.Fatal(err)
	}
	// CREATE DATABASE cannot share a transaction with CREATE ROLE; Psql
	// sends the statements one at a time.
	s.Psql(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n",
		appRole, s.Password, appDatabase, appRole))
	return s
}

// DSN returns a libpq keyword/value connection string for the server over
// TCP: "host=127.0.0.1 port=N user=... password=... dbname=...
// sslmode=disable". An empty password is left out, so that libpq falls back
// to PGPASSWORD or ~/.pgpass. Each extra is a "key=value" pair that replaces
// the value of a key already present ("sslmode=require") or is appended
// ("sslrootcert=/path"). Values are quoted as libpq requires. DSN panics if
// an extra has no "=".
func (s *Server) DSN(user, password, database string, extra ...string) string {
	type kv struct{ k, v string }
	pairs := []kv{
		{"host", s.Host},
		{"port", strconv.Itoa(s.Port)},
		{"user", user},
		{"password", password},
		{"dbname", database},
		{"sslmode", "disable"},
	}
	if password == "" {
		pairs = slices.DeleteFunc(pairs, func(p kv) bool { return p.k == "password" })
	}
	for _, e := range extra {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			panic(fmt.Sprintf("pgtest: DSN extra %q is not key=value", e))
		}
		k = strings.TrimSpace(k)
		i := slices.IndexFunc(pairs, func(p kv) bool { return p.k == k })
		if i < 0 {
			pairs = append(pairs, kv{k, v})
		} else {
			pairs[i].v = v
		}
	}
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + quoteDSNValue(p.v)
	}
	return strings.Join(parts, " ")
}

// quoteDSNValue quotes v for a libpq keyword/value string when it is empty
// or contains a space, a quote or a backslash.
func quoteDSNValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// Psql runs sql with psql as the superuser over TCP, without TLS, in the
// postgres database, and returns what it printed on stdout without the final
// newline. The statements are sent one at a time (so CREATE DATABASE may
// follow other statements), with -X -q -At and ON_ERROR_STOP: rows print as
// unaligned, "|"-separated lines without headers, and command tags are not
// printed. Psql fails the test with psql's stderr when a statement fails.
func (s *Server) Psql(t testing.TB, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := s.psql(ctx, s.DSN(s.SuperUser, "", "postgres"), s.SuperPassword, sql)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(out, "\n")
}

// psql runs sql read from stdin with BinDir's psql against dsn, giving it
// password in PGPASSWORD so that the password stays off the command line.
func (s *Server) psql(ctx context.Context, dsn, password, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "psql"),
		"-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", dsn, "-f", "-")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("pgtest: psql: %w\n%s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Env returns os.Environ() with PATH starting with BinDir, for running the
// PostgreSQL tools (psql, pgbench) of the server's version by name. It sets
// no PG* variables: pass a DSN instead.
func (s *Server) Env() []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+1)
	path := s.BinDir
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if v != "" {
				path = s.BinDir + string(os.PathListSeparator) + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+path)
}

// Stop shuts the server down (a target going away mid-test). It sends
// SIGINT, PostgreSQL's fast shutdown and what `pg_ctl stop -m fast` sends,
// which disconnects clients and rolls back their transactions; if the server
// has not exited after stopTimeout it is killed. Stop is idempotent and
// returns once the server process has exited. It leaves Dir in place.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// findBinDir returns the bin directory of the newest major version whose
// server binary matches glob, checking that the tools Start uses are there.
func findBinDir(glob string) (string, error) {
	matches, _ := filepath.Glob(glob)
	var best string
	var bestVersion []int
	for _, m := range matches {
		bin := filepath.Dir(m)
		v, ok := parseVersion(filepath.Base(filepath.Dir(bin)))
		if !ok {
			continue
		}
		if best == "" || slices.Compare(v, bestVersion) > 0 {
			best, bestVersion = bin, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("pgtest: PostgreSQL server not installed (nothing matches %s); run scripts/test-deps.sh", glob)
	}
	for _, tool := range []string{"initdb", "psql"} {
		if _, err := os.Stat(filepath.Join(best, tool)); err != nil {
			return "", fmt.Errorf("pgtest: PostgreSQL in %s is incomplete; run scripts/test-deps.sh: %w", best, err)
		}
	}
	return best, nil
}

// parseVersion parses a major version directory name, "15" or "9.6".
func parseVersion(name string) ([]int, bool) {
	var v []int
	for f := range strings.SplitSeq(name, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

// serverCredential returns the account the server must run as: nil (run as
// ourselves) unless we are root, which PostgreSQL refuses to run as, and
// then the postgres system user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(systemUser)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the %s system user, made by the Debian postgresql package; run scripts/test-deps.sh: %w", systemUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: uid of %s: %w", systemUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: gid of %s: %w", systemUser, err)
	}
	// Groups is empty, so the server gets no supplementary groups of ours.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// randomPassword returns 16 random bytes in hex.
func randomPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pgtest: random password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeFile writes a file in Dir and gives it to the server's account.
func (s *Server) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pgtest: write %s: %w", path, err)
	}
	return s.chown(path)
}

// chown gives path to the server's account when that is not us.
func (s *Server) chown(path string) error {
	if s.owner == nil {
		return nil
	}
	if err := os.Chown(path, int(s.owner.Uid), int(s.owner.Gid)); err != nil {
		return fmt.Errorf("pgtest: chown %s to %s: %w", path, systemUser, err)
	}
	return nil
}

// asOwner makes cmd run as the server's account, in Dir (which that account
// can enter, unlike perhaps our working directory).
func (s *Server) asOwner(cmd *exec.Cmd) {
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.owner}
}

// initCluster runs initdb into Dir/data and writes the TLS files,
// pg_hba.conf and an include for the settings launch writes.
func (s *Server) initCluster(ctx context.Context, o Options) error {
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return fmt.Errorf("pgtest: chmod %s: %w", s.Dir, err)
	}
	if err := s.chown(s.Dir); err != nil {
		return err
	}
	ca, err := newCerts(time.Now())
	if err != nil {
		return err
	}
	s.CACert = ca.caPEM
	if err := s.writeFile(s.CACertFile, ca.caPEM, 0o644); err != nil {
		return err
	}
	if err := s.writeFile(filepath.Join(s.Dir, "server.crt"), ca.certPEM, 0o644); err != nil {
		return err
	}
	// The server refuses a key that others can read.
	if err := s.writeFile(filepath.Join(s.Dir, "server.key"), ca.keyPEM, 0o600); err != nil {
		return err
	}

	pwfile := filepath.Join(s.Dir, "superuser.pw")
	if err := s.writeFile(pwfile, []byte(s.SuperPassword+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{
		"-D", s.dataDir, "-U", s.SuperUser, "--pwfile=" + pwfile,
		"-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=scram-sha-256",
	}
	if !o.Fsync {
		args = append(args, "--no-sync")
	}
	initdb := exec.CommandContext(ctx, filepath.Join(s.BinDir, "initdb"), args...)
	s.asOwner(initdb)
	out, err := initdb.CombinedOutput()
	os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("pgtest: initdb %s: %w\n%s", s.dataDir, err, out)
	}

	if err := s.writeFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hbaConf), 0o600); err != nil {
		return err
	}
	conf, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgtest: open postgresql.conf: %w", err)
	}
	_, err = conf.WriteString("\n# Written by pgtest on each start.\ninclude 'pgtest.conf'\n")
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: append to postgresql.conf: %w", err)
	}
	return nil
}

// hbaConf lets local socket connections in without a password (Start's
// readiness check) and TCP connections from loopback, with or without TLS,
// with a SCRAM password.
const hbaConf = `# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
hostssl all       all   127.0.0.1/32  scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
hostssl all       all   ::1/128       scram-sha-256
host    all       all   ::1/128       scram-sha-256
`

// serverConf returns the settings for a server in dir listening on port.
func serverConf(o Options, dir string, port int) string {
	maxConns := o.MaxConnections
	if maxConns == 0 {
		maxConns = 100
	}
	set := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": dir,
		"ssl":                     "on",
		"ssl_cert_file":           filepath.Join(dir, "server.crt"),
		"ssl_key_file":            filepath.Join(dir, "server.key"),
		"password_encryption":     "scram-sha-256",
		"max_connections":         strconv.Itoa(maxConns),
		"logging_collector":       "off",
		"log_destination":         "stderr",
		"log_line_prefix":         "%m [%p] %q%u@%d ",
		"lc_messages":             "C",
	}
	if !o.Fsync {
		set["fsync"] = "off"
		set["synchronous_commit"] = "off"
		set["full_page_writes"] = "off"
	}
	for k, v := range o.Settings {
		set[k] = v
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(set)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(set[k], "'", "''"))
	}
	return b.String()
}

// launch starts postgres on port and waits until it accepts connections.
// It returns an error wrapping errPortTaken when another process has the
// port.
func (s *Server) launch(o Options, port int) error {
	s.Port = port
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
	if err := s.writeFile(filepath.Join(s.dataDir, "pgtest.conf"), []byte(serverConf(o, s.Dir, port)), 0o600); err != nil {
		return err
	}
	logStart, err := s.log.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}

	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), "-D", s.dataDir)
	s.asOwner(cmd)
	// If the test binary dies without running its cleanups, SIGQUIT
	// (immediate shutdown) keeps the server from outliving it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err = s.waitReady(ctx, exited)
	if err == nil {
		s.cmd, s.exited = cmd, exited
		return nil
	}
	select {
	case <-exited:
		err = fmt.Errorf("%w (%v)", err, waitErr)
	default:
		cmd.Process.Kill()
		<-exited
	}
	log := s.logSince(logStart)
	if strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") {
		return fmt.Errorf("%w: %d: %v", errPortTaken, port, err)
	}
	return fmt.Errorf("pgtest: postgres did not accept connections on %s: %w\nserver.log:\n%s", s.Addr, err, tail(log, logTailLines))
}

// waitReady waits until the server accepts TCP connections and answers a
// query on its unix socket, or exited is closed, or ctx is done.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	socketDSN := s.DSN(s.SuperUser, "", "postgres", "host="+s.Dir)
	var last error
	for {
		select {
		case <-exited:
			return errors.New("postgres exited")
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v: %w", startTimeout, last)
		case <-time.After(pollInterval):
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			last = err
			continue
		}
		c.Close()
		if _, err := s.psql(ctx, socketDSN, "", "select 1"); err != nil {
			// "the database system is starting up" until recovery ends.
			last = err
			continue
		}
		return nil
	}
}

// logSince returns what the server logged from offset on.
func (s *Server) logSince(offset int64) string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
