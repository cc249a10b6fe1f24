package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigil-pam/vigil/internal/pgtest"
)

// pgFixture is a vigil serve and a real PostgreSQL server with target
// db1 (login app, TLS verified against the test CA).
type pgFixture struct {
	s  *server
	pg *pgtest.Server
}

func newPGFixture(t testing.TB, config string) *pgFixture {
	t.Helper()
	pg := pgtest.Start(t)
	var args []string
	if config != "" {
		p := filepath.Join(t.TempDir(), "vigil.yaml")
		os.WriteFile(p, []byte(config), 0o600)
		args = []string{"--config", p}
	}
	s, err := startServer(t, filepath.Join(t.TempDir(), "data"), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vigilBin, "target", "add", "db1", "--pg", pg.Addr, "--database", pg.Database, "--login", pg.User,
		"--password-env", "DB1_PW", "--tls-ca", pg.CACertFile)
	cmd.Env = append(os.Environ(), "VIGIL_ADDR=http://"+s.addr, "VIGIL_DATA="+s.data, "DB1_PW="+pg.Password)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("target add db1: %v %s", err, b)
	}
	return &pgFixture{s: s, pg: pg}
}

func (f *pgFixture) token(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(f.s.must("", append([]string{"token", "issue", "--user", "alice"}, args...)...))
}

// dsn is a libpq connection string to the gateway for target db1.
func (f *pgFixture) dsn(tok string, extra ...string) string {
	host, port, _ := net.SplitHostPort(f.s.pgAddr)
	parts := []string{"host=" + host, "port=" + port, "dbname=db1", "user=" + f.pg.User, "sslmode=require", "connect_timeout=10"}
	if tok != "" {
		parts = append(parts, "password="+tok)
	}
	return strings.Join(append(parts, extra...), " ")
}

// psql runs the real psql client against the gateway with sql on stdin.
func (f *pgFixture) psql(t testing.TB, tok, sql string, extra ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(f.pg.BinDir, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=0", f.dsn("", extra...))
	cmd.Env = append(os.Environ(), "PGPASSWORD="+tok, "PGCONNECT_TIMEOUT=10")
	return run(t, cmd, sql)
}

// connect opens a pgx connection to the gateway.
func (f *pgFixture) connect(t testing.TB, tok string, extra ...string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, f.dsn(tok, extra...))
	if err != nil {
		t.Fatalf("connect through Vigil: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPGGatewayPsql(t *testing.T) {
	f := newPGFixture(t, "")
	f.pg.Psql(t, "\\c app\n"+"CREATE TABLE public.items (id int primary key, name text, email text); ALTER TABLE public.items OWNER TO app;"+
		"INSERT INTO public.items VALUES (1, 'one', 'alice@example.com'), (2, 'two', 'bob@example.org');")
	tok := f.token(t, "--grant", "db1:app:query")
	out, errOut, code := f.psql(t, tok, "select current_user, current_database();\nselect id, name, email from items order by id;\n")
	if code != 0 {
		t.Fatalf("psql exit %d: %s %s\n%s", code, out, errOut, f.s.logs())
	}
	t.Logf("out:\n%s\nerr:\n%s", out, errOut)
	if !strings.Contains(out, "app|app") {
		t.Errorf("psql did not log in as app on app: %q", out)
	}
	if strings.Contains(out, "alice@example.com") || !strings.Contains(out, "1|one|a*******@example.com") {
		t.Errorf("e-mail not masked: %q", out)
	}
}

// activeApp counts the database sessions of login app other than the
// superuser's own: what Vigil holds open upstream.
func (f *pgFixture) activeApp(t testing.TB) string {
	t.Helper()
	return f.pg.Psql(t, "select count(*) from pg_stat_activity where usename = 'app'")
}

// waitNoUpstream waits until Vigil holds no upstream connection.
func (f *pgFixture) waitNoUpstream(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.activeApp(t) != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("upstream connections left open: %s", f.pg.Psql(t, "select pid, state, query from pg_stat_activity where usename = 'app'"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPGGatewayExtendedProtocolAndGuards(t *testing.T) {
	f := newPGFixture(t, "")
	f.pg.Psql(t, "\\c app\nCREATE TABLE public.t (id int primary key, v text, email text); ALTER TABLE public.t OWNER TO app;")
	tok := f.token(t, "--grant", "db1:app:query")
	ctx := context.Background()
	c := f.connect(t, tok)

	// Extended protocol: parameters, binary results, a prepared statement
	// run several times.
	rr := c.ExecParams(ctx, "insert into t values ($1, $2, $3)", [][]byte{[]byte("1"), []byte("one"), []byte("carol@example.com")}, nil, nil, nil).Read()
	if rr.Err != nil || rr.CommandTag.String() != "INSERT 0 1" {
		t.Fatalf("insert: %v %q", rr.Err, rr.CommandTag)
	}
	if _, err := c.Prepare(ctx, "byid", "select id, v, email from t where id = $1", nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	for range 3 {
		rr = c.ExecPrepared(ctx, "byid", [][]byte{[]byte("1")}, nil, []int16{0, 0, 1}).Read()
		if rr.Err != nil || len(rr.Rows) != 1 || string(rr.Rows[0][1]) != "one" {
			t.Fatalf("prepared select: %v %q", rr.Err, rr.Rows)
		}
		// Masked also in binary format (text's binary form is the text).
		if got := string(rr.Rows[0][2]); got != "c*******@example.com" {
			t.Fatalf("binary e-mail not masked: %q", got)
		}
	}

	// A blocked DROP TABLE never reaches the database; the session goes
	// on; inside a transaction the transaction is aborted as if the
	// database had refused it.
	rr = c.ExecParams(ctx, "drop table t", nil, nil, nil, nil).Read()
	var pe *pgconn.PgError
	if !errors.As(rr.Err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "db.drop") || pe.Where != "" {
		t.Fatalf("drop not blocked as expected: %#v", rr.Err)
	}
	mr := c.Exec(ctx, "begin; insert into t values (2, 'two', ''); truncate t; ")
	_, err := mr.ReadAll()
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "db.truncate") {
		t.Fatalf("truncate not blocked: %v", err)
	}
	if _, err := c.Exec(ctx, "commit").ReadAll(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got := f.pg.Psql(t, "\\c app\nselect count(*) from t"); got != "1" {
		t.Fatalf("rows after blocked statements = %s, want 1 (the table kept, the aborted insert rolled back)", got)
	}
	if c.TxStatus() != 'I' {
		t.Fatalf("tx status %c", c.TxStatus())
	}
	// Extended protocol: a blocked Parse fails like a server-side parse
	// error, and the next statement works.
	if _, err := c.Prepare(ctx, "bad", "delete from t", nil); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("prepare of delete without where: %v", err)
	}
	if rr = c.ExecParams(ctx, "select count(*) from t", nil, nil, nil, nil).Read(); rr.Err != nil || string(rr.Rows[0][0]) != "1" {
		t.Fatalf("session did not continue: %v %q", rr.Err, rr.Rows)
	}

	// Cancel: the client's CancelRequest (Vigil's key) cancels the
	// statement upstream.
	go func() {
		time.Sleep(500 * time.Millisecond)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.CancelRequest(cctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
	_, err = c.Exec(ctx, "select pg_sleep(30)").ReadAll()
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("pg_sleep not cancelled: %v", err)
	}

	// COPY both ways.
	res, err := c.CopyFrom(ctx, strings.NewReader("10\tten\tx@y.example\n11\televen\t\n"), "copy t from stdin")
	if err != nil || res.RowsAffected() != 2 {
		t.Fatalf("copy in: %v %v", err, res)
	}
	var buf strings.Builder
	res, err = c.CopyTo(ctx, &buf, "copy (select id, v from t order by id) to stdout")
	if err != nil || res.RowsAffected() != 3 || !strings.Contains(buf.String(), "11\televen") {
		t.Fatalf("copy out: %v %v %q", err, res, buf.String())
	}
	c.Close(ctx)
	f.waitNoUpstream(t)
}

func TestPGGatewayReadOnly(t *testing.T) {
	f := newPGFixture(t, "")
	f.pg.Psql(t, "\\c app\nCREATE TABLE public.t (id int); ALTER TABLE public.t OWNER TO app; INSERT INTO public.t VALUES (1);")
	tok := f.token(t, "--grant", "db1:app:query,read-only")
	out, errOut, _ := f.psql(t, tok, "select count(*) from t;\ninsert into t values (2);\nset default_transaction_read_only = off;\nselect 'still here';\n")
	if !strings.Contains(out, "1\n") || !strings.Contains(out, "still here") {
		t.Fatalf("read-only session: %q %q", out, errOut)
	}
	if !strings.Contains(errOut, "read-only") || strings.Count(errOut, "ERROR") != 2 {
		t.Fatalf("writes not refused: %q", errOut)
	}
	if got := f.pg.Psql(t, "\\c app\nselect count(*) from t"); got != "1" {
		t.Fatalf("rows = %s, want 1", got)
	}
}
