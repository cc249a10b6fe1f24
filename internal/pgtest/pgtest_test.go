package pgtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// psqlAs runs query with BinDir's psql against dsn with password in
// PGPASSWORD and the server's Env, returning trimmed stdout or an error
// holding stderr.
func psqlAs(s *Server, dsn, password, query string) (string, error) {
	cmd := exec.Command(filepath.Join(s.BinDir, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", query)
	cmd.Env = append(s.Env(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// whoAmI reports the session's user and whether it runs over TLS.
const whoAmI = `select current_user || ' ' || coalesce((select ssl::text from pg_stat_ssl where pid = pg_backend_pid()), 'none')`

func TestConnectAsUser(t *testing.T) {
	s := Start(t)
	otherCA, err := newCerts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCAFile, otherCA.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		password string
		extra    []string
		want     string // output of whoAmI, or "" when the connection must fail
		wantErr  string
	}{
		{name: "plaintext", password: s.Password, want: "app false"},
		{name: "sslmode=require", password: s.Password, extra: []string{"sslmode=require"}, want: "app true"},
		{
			name: "verify-full 127.0.0.1", password: s.Password,
			extra: []string{"sslmode=verify-full", "sslrootcert=" + s.CACertFile}, want: "app true",
		},
		{
			name: "verify-full localhost", password: s.Password,
			extra: []string{"host=localhost", "sslmode=verify-full", "sslrootcert=" + s.CACertFile}, want: "app true",
		},
		{
			name: "wrong password", password: "not-" + s.Password,
			extra: []string{"sslmode=require"}, wantErr: "password authentication failed",
		},
		{
			name: "verify-full other CA", password: s.Password,
			extra: []string{"sslmode=verify-full", "sslrootcert=" + otherCAFile}, wantErr: "certificate verify failed",
		},
		{
			name: "verify-full wrong host name", password: s.Password,
			extra:   []string{"host=db.example.com", "hostaddr=127.0.0.1", "sslmode=verify-full", "sslrootcert=" + s.CACertFile},
			wantErr: "does not match host name",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := psqlAs(s, s.DSN(s.User, "", s.Database, tc.extra...), tc.password, whoAmI)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v, want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConnectWithPgconn(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.DSN(s.User, s.Password, s.Database, "sslmode=verify-full", "sslrootcert="+s.CACertFile))
	if err != nil {
		t.Fatalf("pgconn: %v", err)
	}
	defer conn.Close(ctx)
	tc, ok := conn.Conn().(*tls.Conn)
	if !ok {
		t.Fatalf("got connection %T, want *tls.Conn", conn.Conn())
	}
	if v := tc.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("got TLS version %#x, want 1.2 or later", v)
	}
	res := conn.ExecParams(ctx, "select current_user, current_database()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := string(res.Rows[0][0]) + "/" + string(res.Rows[0][1]); got != "app/app" {
		t.Errorf("got %q, want %q", got, "app/app")
	}
}

func TestSuperUser(t *testing.T) {
	s := Start(t)
	got, err := psqlAs(s, s.DSN(s.SuperUser, "", "postgres", "sslmode=require"), s.SuperPassword,
		"select rolsuper from pg_roles where rolname = current_user")
	if err != nil {
		t.Fatal(err)
	}
	if got != "t" {
		t.Errorf("got rolsuper %q, want %q", got, "t")
	}
	if got := s.Psql(t, "select datdba::regrole from pg_database where datname = 'app'"); got != s.User {
		t.Errorf("got owner of app %q, want %q", got, s.User)
	}
}

func TestPsql(t *testing.T) {
	s := Start(t)
	got := s.Psql(t, "create table t (n int, s text);\ninsert into t values (1, 'a'), (2, 'b');\nselect * from t order by n;")
	if want := "1|a\n2|b"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// CREATE DATABASE must not run inside a transaction with the statement
	// before it.
	if got := s.Psql(t, "create role r2; create database db2 owner r2; select 'ok';"); got != "ok" {
		t.Errorf("got %q, want %q", got, "ok")
	}
	msg := fatalMessage(t, func(tb testing.TB) { s.Psql(tb, "select 1; select * from nope; select 2;") })
	if !strings.Contains(msg, `relation "nope" does not exist`) {
		t.Errorf("got Fatal %q, want psql's error", msg)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []Options
		want string
	}{
		{name: "defaults", want: "off|off|off|100|4MB"},
		{
			name: "durable",
			opts: []Options{{Fsync: true, MaxConnections: 20, Settings: map[string]string{"work_mem": "8MB"}}},
			want: "on|on|on|20|8MB",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tc.opts...)
			got := s.Psql(t, "select current_setting('fsync'), current_setting('synchronous_commit'), "+
				"current_setting('full_page_writes'), current_setting('max_connections'), current_setting('work_mem')")
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	msg := fatalMessage(t, func(tb testing.TB) {
		Start(tb, Options{Settings: map[string]string{"max_connections": "lots"}})
	})
	if !strings.Contains(msg, "did not accept connections") || !strings.Contains(msg, `invalid value for parameter "max_connections"`) {
		t.Errorf("got Fatal %q, want the failure and server.log's reason", msg)
	}
}

func TestStop(t *testing.T) {
	var dir string
	t.Run("server", func(t *testing.T) {
		s := Start(t)
		dir = s.Dir
		pid := s.cmd.Process.Pid
		pids := append([]int{pid}, children(t, pid)...)
		if len(pids) < 2 {
			t.Errorf("got postmaster children %v, want background workers", pids[1:])
		}
		s.Stop()
		s.Stop() // idempotent
		for _, p := range pids {
			if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d after Stop: got kill(0) %v, want ESRCH", p, err)
			}
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			t.Errorf("got a connection to %s after Stop, want refused", s.Addr)
		}
		if b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log")); !bytes.Contains(b, []byte("database system is shut down")) {
			t.Errorf("got server.log without a clean shutdown:\n%s", b)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got Stat(%s) %v after the test, want not exist", dir, err)
	}
}

func TestLaunchPortTaken(t *testing.T) {
	s := Start(t)
	s.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port

	// Launch the stopped cluster again, first on a port someone else has.
	s.stopOnce = sync.Once{}
	if err := s.launch(Options{}, taken); !errors.Is(err, errPortTaken) {
		t.Fatalf("launch on taken port %d: got %v, want errPortTaken", taken, err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.launch(Options{}, port); err != nil {
		t.Fatalf("launch on free port %d: %v", port, err)
	}
	defer s.Stop()
	if got := s.Psql(t, "select current_setting('port')"); got != strconv.Itoa(port) {
		t.Errorf("got port %q, want %d", got, port)
	}
}

// children returns the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := b[bytes.LastIndexByte(b, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out = append(out, child)
	}
	return out
}

func TestEnv(t *testing.T) {
	s := &Server{BinDir: "/opt/pg/bin"}
	t.Setenv("PATH", "/usr/bin:/bin")
	var paths []string
	for _, kv := range s.Env() {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			paths = append(paths, v)
		}
	}
	if want := "/opt/pg/bin:/usr/bin:/bin"; len(paths) != 1 || paths[0] != want {
		t.Errorf("got PATH %q, want [%q]", paths, want)
	}
}

func TestDSN(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: 5433}
	tests := []struct {
		name                     string
		user, password, database string
		extra                    []string
		want                     string
	}{
		{
			name: "plain", user: "app", password: "pw", database: "app",
			want: "host=127.0.0.1 port=5433 user=app password=pw dbname=app sslmode=disable",
		},
		{
			name: "no password", user: "app", database: "app",
			want: "host=127.0.0.1 port=5433 user=app dbname=app sslmode=disable",
		},
		{
			name: "override and append", user: "app", password: "pw", database: "app",
			extra: []string{"sslmode=verify-full", "sslrootcert=/tmp/ca.crt", "host=localhost"},
			want:  "host=localhost port=5433 user=app password=pw dbname=app sslmode=verify-full sslrootcert=/tmp/ca.crt",
		},
		{
			name: "quoting", user: "o'brien", password: `a b\c`, database: "",
			want: `host=127.0.0.1 port=5433 user='o\'brien' password='a b\\c' dbname='' sslmode=disable`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.DSN(tc.user, tc.password, tc.database, tc.extra...); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFindBinDir(t *testing.T) {
	tests := []struct {
		name    string
		files   []string // under the fake /usr/lib/postgresql
		want    string   // the version directory chosen
		wantErr string
	}{
		{
			name: "newest numerically",
			files: []string{
				"9.6/bin/postgres", "9.6/bin/initdb", "9.6/bin/psql",
				"15/bin/postgres", "15/bin/initdb", "15/bin/psql",
				"13/bin/postgres", "13/bin/initdb", "13/bin/psql",
				"devel/bin/postgres",
			},
			want: "15",
		},
		{name: "none", wantErr: "scripts/test-deps.sh"},
		{name: "no psql", files: []string{"16/bin/postgres", "16/bin/initdb"}, wantErr: "incomplete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			got, err := findBinDir(filepath.Join(root, "*", "bin", "postgres"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v, want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tc.want, "bin"); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestNewCerts(t *testing.T) {
	c, err := newCerts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	block, _ := pem.Decode(c.certPEM)
	if block == nil {
		t.Fatal("server certificate PEM does not parse")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(c.certPEM, c.keyPEM); err != nil {
		t.Fatalf("server key does not match its certificate: %v", err)
	}
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"localhost", true}, {"db.example.com", false},
	} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: roots})
		if (err == nil) != tc.ok {
			t.Errorf("verify for %s: got %v, want ok=%v", tc.host, err, tc.ok)
		}
	}
}

// fatalRecorder is a testing.TB whose Fatal records the message and ends
// the calling goroutine, so a test can check a helper's failure path.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs fn with a fatalRecorder wrapping t and returns what fn
// passed to Fatal, failing t if fn did not call it.
func fatalMessage(t *testing.T, fn func(testing.TB)) string {
	t.Helper()
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	called := true
	go func() {
		defer close(done)
		fn(f)
		called = false
	}()
	<-done
	if !called {
		t.Fatal("got no Fatal, want one")
	}
	return f.msg
}
