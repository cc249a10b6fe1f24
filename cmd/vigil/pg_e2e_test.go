package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgproto3"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	s := startConfigured(t, config)
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

	// A column masked by name (the default "*token*") stays masked under
	// another name: an alias, a subquery's, a CTE's, a join's.
	f.pg.Psql(t, "\\c app\n"+"CREATE TABLE public.keys (id int primary key, api_token text, note text); ALTER TABLE public.keys OWNER TO app;"+
		"INSERT INTO public.keys VALUES (1, 'tok-plain-1', 'first');")
	aliases := []string{
		"select id, api_token from keys",
		"select id, api_token as t from keys",
		`select id, "t" from (select id, api_token as "t" from keys) s`,
		"with x as (select id, api_token as k from keys) select id, k as u from x",
		"select k.id, k.api_token as v from keys k join items i on i.id = k.id",
	}
	out, errOut, code = f.psql(t, tok, strings.Join(aliases, ";\n")+";\nselect note as api_token_note from keys;\n")
	if code != 0 {
		t.Fatalf("psql exit %d: %s %s", code, out, errOut)
	}
	if strings.Contains(out, "tok-plain-1") || strings.Count(out, "1|********") != len(aliases) || !strings.Contains(out, "\n********") {
		t.Errorf("aliased token column not masked:\n%s", out)
	}

	// A login that cannot read the catalog cannot be told which columns
	// to mask: no session.
	f.pg.Psql(t, "\\c app\nREVOKE SELECT ON pg_catalog.pg_attribute FROM PUBLIC;")
	out, errOut, code = f.psql(t, tok, "select api_token as t from keys;\n")
	f.pg.Psql(t, "\\c app\nGRANT SELECT ON pg_catalog.pg_attribute TO PUBLIC;")
	if code == 0 || strings.Contains(out, "tok-plain-1") || !strings.Contains(errOut, "Vigil cannot read which columns of db1 to mask: permission denied") {
		t.Errorf("login without the catalog: exit %d, out %q, err %q", code, out, errOut)
	}
	if a := f.s.must("", "audit", "search", "--type", "session.upstream_failed", "-o", "json"); !strings.Contains(a, `"catalog"`) {
		t.Errorf("no session.upstream_failed for the catalog: %s", a)
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
	f.pg.Psql(t, "\\c app\nCREATE TABLE public.t (id int primary key, v text, email text); ALTER TABLE public.t OWNER TO app;"+
		"CREATE TABLE public.k (api_token text); INSERT INTO public.k VALUES ('tok-plain-2'); ALTER TABLE public.k OWNER TO app;")
	tok := f.token(t, "--grant", "db1:app:query")
	ctx := context.Background()
	c := f.connect(t, tok)

	// A column masked by name, under an alias: "********" in text, NULL
	// in binary (a fixed string would not be valid binary data).
	rr := c.ExecParams(ctx, "select api_token as a, api_token as b from k where $1", [][]byte{[]byte("t")}, nil, nil, []int16{0, 1}).Read()
	if rr.Err != nil || len(rr.Rows) != 1 || string(rr.Rows[0][0]) != "********" || rr.Rows[0][1] != nil {
		t.Fatalf("aliased token column through the extended protocol: %v %q", rr.Err, rr.Rows)
	}

	// Extended protocol: parameters, binary results, a prepared statement
	// run several times.
	rr = c.ExecParams(ctx, "insert into t values ($1, $2, $3)", [][]byte{[]byte("1"), []byte("one"), []byte("carol@example.com")}, nil, nil, nil).Read()
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

	// COPY in; COPY out is refused while masking is on (it could not be
	// masked) and the session goes on.
	res, err := c.CopyFrom(ctx, strings.NewReader("10\tten\tx@y.example\n11\televen\t\n"), "copy t from stdin")
	if err != nil || res.RowsAffected() != 2 {
		t.Fatalf("copy in: %v %v", err, res)
	}
	var buf strings.Builder
	_, err = c.CopyTo(ctx, &buf, "copy (select id, v from t order by id) to stdout")
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "masking") || buf.Len() != 0 {
		t.Fatalf("copy out with masking on: %v %q", err, buf.String())
	}
	if rr = c.ExecParams(ctx, "select count(*) from t", nil, nil, nil, nil).Read(); rr.Err != nil || string(rr.Rows[0][0]) != "3" {
		t.Fatalf("after copy: %v %q", rr.Err, rr.Rows)
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

func TestPGGatewayLoginFaults(t *testing.T) {
	f := newPGFixture(t, "token:\n  clock_skew: 0s\n")
	good := f.token(t, "--grant", "db1:app:query", "--grant", "ghost:app:query")
	ctx := context.Background()
	expired := f.token(t, "--grant", "db1:app:query", "--ttl", "1s")
	noQuery := f.token(t, "--grant", "db1:app:shell")
	otherLogin := f.token(t, "--grant", "db1:other:query")
	revoked := f.token(t, "--grant", "db1:app:query")
	f.s.must("", "token", "revoke", jti(t, f.s, revoked))
	elsewhere := f.token(t, "--grant", "db1:app:query", "--src", "10.0.0.0/8")
	time.Sleep(1500 * time.Millisecond) // let the 1 s token expire (no skew allowed)
	cases := []struct {
		name, tok string
		extra     []string
	}{
		{"garbage", "not-a-token", nil},
		{"empty", "", []string{"password=''"}},
		{"truncated", good[:len(good)-10], nil},
		{"tampered", good[:len(good)-4] + "AAAA", nil},
		{"no query action", noQuery, nil},
		{"other login", otherLogin, nil},
		{"revoked", revoked, nil},
		{"expired", expired, nil},
		{"from elsewhere", elsewhere, nil},
		{"no grant for the target", good, []string{"dbname=nosuch"}},
		{"unknown target", good, []string{"dbname=ghost"}},
		{"wrong user", good, []string{"user=postgres"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			c, err := pgconn.Connect(cctx, f.dsn(tc.tok, tc.extra...))
			if err == nil {
				c.Close(ctx)
				t.Fatal("login succeeded")
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "28P01" || pe.Detail != "" || pe.Hint != "" {
				t.Fatalf("want a bare 28P01, got %#v", err)
			}
		})
	}
	// Plaintext is refused unless allowed for loopback; GSSAPI encryption
	// is declined and libpq goes on with TLS.
	if _, err := pgconn.Connect(ctx, f.dsn(good, "sslmode=disable")); err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Fatalf("plaintext login: %v", err)
	}
	out, errOut, code := f.psql(t, good, "select 42;\n", "gssencmode=prefer")
	if code != 0 || out != "42\n" {
		t.Fatalf("psql with gssencmode=prefer: %d %q %q", code, out, errOut)
	}
	// PostgreSQL 17 direct TLS (ALPN "postgresql") and protocol 3.2.
	c := f.connect(t, good, "sslnegotiation=direct", "max_protocol_version=3.2", "min_protocol_version=3.2")
	if rr := c.ExecParams(ctx, "select 7", nil, nil, nil, nil).Read(); rr.Err != nil || string(rr.Rows[0][0]) != "7" {
		t.Fatalf("direct TLS, 3.2: %v", rr.Err)
	}
	if len(c.SecretKey()) != 32 {
		t.Errorf("3.2 cancel key of %d bytes, want 32", len(c.SecretKey()))
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.CancelRequest(ctx)
	}()
	if _, err := c.Exec(ctx, "select pg_sleep(30)").ReadAll(); err == nil || !strings.Contains(err.Error(), "57014") {
		t.Fatalf("cancel with a 3.2 key: %v", err)
	}
	c.Close(ctx)
	// TLS without SSLRequest and without ALPN (not a PostgreSQL client).
	conn, err := tls.Dial("tcp", f.s.pgAddr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, rerr := conn.Read(make([]byte, 1))
		conn.Close()
		if rerr == nil {
			t.Fatal("a TLS client without ALPN got data")
		}
	}
	// Garbage and an oversized startup packet.
	for _, junk := range [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0}} {
		nc, err := net.Dial("tcp", f.s.pgAddr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(junk)
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(nc)
		nc.Close()
		if len(b) > 0 && b[0] != 'E' {
			t.Errorf("junk %q answered with %q", junk, b)
		}
	}
	// Every refusal is in the audit log.
	out = f.s.must("", "audit", "search", "--type", "db.*", "-o", "json")
	for _, want := range []string{"token_malformed", "no_grant", "unknown_target", "token_revoked", "token_expired", "token_source_not_allowed", "tls_required", "tls_without_sslrequest", "malformed_startup"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	f.waitNoUpstream(t)
}

// pgSession returns the ID of the only active database session.
func (f *pgFixture) pgSession(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := f.s.must("", "sessions", "ls", "--active", "-o", "json")
		var resp struct {
			Sessions []struct{ ID, Kind, State string }
		}
		json.Unmarshal([]byte(out), &resp)
		for _, s := range resp.Sessions {
			if s.Kind == "pg" && s.State == "active" {
				return s.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no active pg session: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPGGatewayStatementLogTranscriptAndLiveControls(t *testing.T) {
	f := newPGFixture(t, "")
	f.pg.Psql(t, "\\c app\nCREATE TABLE public.items (id int primary key, name text, email text); ALTER TABLE public.items OWNER TO app;"+
		"INSERT INTO public.items VALUES (1, 'one', 'alice@example.com'), (2, 'two', 'bob@example.org');")
	tok := f.token(t, "--grant", "db1:app:query")
	script := "select id, name, email from items order by id;\ninsert into items values (3, 'three', null);\n" +
		"drop table items;\nselec 1;\nselect count(*) from items;\n"
	out, errOut, _ := f.psql(t, tok, script)
	if !strings.Contains(out, "3\n") || !strings.Contains(errOut, "db.drop") || !strings.Contains(errOut, "syntax error") {
		t.Fatalf("psql: %q %q", out, errOut)
	}
	id := f.s.must("", "sessions", "ls", "-o", "json")
	var sessions struct {
		Sessions []struct {
			ID, Kind string
		}
	}
	if err := json.Unmarshal([]byte(id), &sessions); err != nil || len(sessions.Sessions) == 0 {
		t.Fatalf("sessions: %v %s", err, id)
	}
	sid := sessions.Sessions[0].ID
	if sessions.Sessions[0].Kind != "pg" {
		t.Fatalf("session kind %q", sessions.Sessions[0].Kind)
	}
	// The statement log: one entry per statement with its outcome.
	logJSON := f.s.must("", "queries", "--session", sid, "-o", "json")
	var res struct {
		Entries []struct {
			Seq       int64  `json:"seq"`
			Statement string `json:"statement"`
			Outcome   string `json:"outcome"`
			Rows      int64  `json:"rows"`
			SQLState  string `json:"sqlstate"`
			Rule      string `json:"rule"`
			Masked    int    `json:"masked"`
			Protocol  string `json:"protocol"`
		} `json:"queries"`
	}
	if err := json.Unmarshal([]byte(logJSON), &res); err != nil {
		t.Fatalf("queries json: %v\n%s", err, logJSON)
	}
	want := []struct {
		stmt, outcome string
		rows          int64
		state, rule   string
		masked        int
	}{
		{"select id, name, email from items order by id", "ok", 2, "", "", 2},
		{"insert into items values (3, 'three', null)", "ok", 1, "", "", 0},
		{"drop table items", "blocked", 0, "42501", "db.drop", 0},
		{"selec 1", "error", 0, "42601", "", 0},
		{"select count(*) from items", "ok", 1, "", "", 0},
	}
	if len(res.Entries) != len(want) {
		t.Fatalf("statement log has %d entries, want %d:\n%s", len(res.Entries), len(want), logJSON)
	}
	for i, w := range want {
		e := res.Entries[i]
		if !strings.HasPrefix(e.Statement, w.stmt) || e.Outcome != w.outcome || e.Rows != w.rows || e.SQLState != w.state ||
			e.Rule != w.rule || e.Masked != w.masked || e.Protocol != "simple" || e.Seq != int64(i+1) {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if out := f.s.must("", "queries", "-q", "drop", "--outcome", "blocked"); !strings.Contains(out, "drop table items") {
		t.Errorf("full-text search of the statement log: %s", out)
	}
	// The transcript plays like a psql session, masked, and says so.
	cast := f.s.recording(t, sid)
	for _, w := range []string{"db1=> select id, name, email from items order by id", "a*******@example.com", "(2 rows)",
		"values masked", "INSERT 0 1", "statement blocked (db.drop)", "ERROR:  syntax error", "Time: "} {
		if !strings.Contains(cast, w) {
			t.Errorf("transcript lacks %q:\n%s", w, cast)
		}
	}
	if strings.Contains(cast, "alice@example.com") {
		t.Errorf("transcript has the unmasked e-mail")
	}
	audit := f.s.must("", "audit", "search", "--session", sid, "-o", "json")
	for _, w := range []string{"session.start", "rule.hit", "db.drop", "session.end", `"statements": 5`} {
		if !strings.Contains(audit, w) {
			t.Errorf("audit lacks %s", w)
		}
	}

	// Live: pause holds the next statement until resumed; terminate ends
	// the session with a message; a lock refuses new sessions.
	ctx := context.Background()
	c := f.connect(t, tok)
	live := f.pgSession(t)
	f.s.must("", "sessions", "pause", live, "--reason", "check")
	done := make(chan error, 1)
	go func() { _, err := c.Exec(ctx, "select 'after resume'").ReadAll(); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("statement ran while paused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	f.s.must("", "sessions", "resume", live)
	if err := <-done; err != nil {
		t.Fatalf("after resume: %v", err)
	}
	f.s.must("", "sessions", "terminate", live, "--reason", "enough")
	if _, err := c.Exec(ctx, "select 1").ReadAll(); err == nil {
		t.Fatal("terminated session still answers")
	}
	c2 := f.connect(t, tok)
	if out := f.s.must("", "lock", "add", "--user", "alice", "--reason", "incident 7"); !strings.Contains(out, "ended 1 live sessions") {
		t.Fatalf("lock: %s", out)
	}
	if _, err := c2.Exec(ctx, "select 1").ReadAll(); err == nil {
		t.Fatal("locked user's session still answers")
	}
	if _, err := pgconn.Connect(ctx, f.dsn(tok)); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("locked user logged in: %v", err)
	}
	f.waitNoUpstream(t)
}

func TestPGGatewayPgbenchAndFaults(t *testing.T) {
	f := newPGFixture(t, "pg:\n  max_message: 65536\n")
	tok := f.token(t, "--grant", "db1:app:query")
	bench := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(f.pg.BinDir, "pgbench"), append(args, f.dsn(""))...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+tok)
		out, errOut, code := run(t, cmd, "")
		if code != 0 {
			t.Fatalf("pgbench %v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		return out
	}
	// pgbench -i drops, creates and fills its tables through Vigil (COPY
	// in, DDL): on this target the database pack only alerts. Then a
	// select-only run with 8 clients.
	f.s.must("", "target", "rules", "db1", "database=alert")
	bench("-i", "-s", "1", "-q")
	for _, mode := range []string{"simple", "prepared"} {
		out := bench("-n", "-S", "-c", "8", "-j", "2", "-t", "200", "-M", mode)
		if !strings.Contains(out, "number of transactions actually processed: 1600/1600") {
			t.Fatalf("pgbench -S -M %s:\n%s", mode, out)
		}
	}
	f.waitNoUpstream(t)

	ctx := context.Background()
	// An oversized message ends the session with 54000; nothing leaks.
	c := f.connect(t, tok)
	_, err := c.Exec(ctx, "select '"+strings.Repeat("x", 70000)+"'").ReadAll()
	if err == nil || !strings.Contains(err.Error(), "54000") && !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized query: %v", err)
	}
	// A client that vanishes in the middle of COPY: the database rolls
	// the copy back and Vigil lets go of the upstream connection.
	c = f.connect(t, tok)
	if _, err := c.Exec(ctx, "create table cp (n int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	nc := c.Conn()
	if _, err := c.Exec(ctx, "select 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	copyIn := []byte{'Q'}
	q := "copy cp from stdin\x00"
	copyIn = append(copyIn, byte((len(q)+4)>>24), byte((len(q)+4)>>16), byte((len(q)+4)>>8), byte(len(q)+4))
	copyIn = append(copyIn, q...)
	for i := range 100 {
		row := fmt.Sprintf("%d\n", i)
		copyIn = append(copyIn, 'd', 0, 0, 0, byte(len(row)+4))
		copyIn = append(copyIn, row...)
	}
	if _, err := nc.Write(copyIn); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	nc.Close()
	f.waitNoUpstream(t)
	if got := f.pg.Psql(t, "\\c app\nselect count(*) from cp"); got != "0" {
		t.Fatalf("rows of the abandoned COPY: %s", got)
	}
	// The database is down: a clear error, audited, no session left.
	f.pg.Stop()
	_, err = pgconn.Connect(ctx, f.dsn(tok))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "cannot reach db1") {
		t.Fatalf("login with the database down: %#v", err)
	}
	audit := f.s.must("", "audit", "search", "--type", "session.upstream_failed", "-o", "json") +
		f.s.must("", "audit", "search", "--type", "db.protocol_error", "-o", "json")
	for _, w := range []string{"unreachable", "exceeds the limit", "session.upstream_failed"} {
		if !strings.Contains(audit, w) {
			t.Errorf("audit lacks %q: %s", w, audit)
		}
	}
}

// rawPG is a hijacked connection through the gateway, for messages no
// driver sends in that order.
type rawPG struct {
	t  testing.TB
	fe *pgproto3.Frontend
	nc net.Conn
}

func (f *pgFixture) raw(t testing.TB, tok string) *rawPG {
	t.Helper()
	hj, err := f.connect(t, tok).Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return &rawPG{t: t, fe: hj.Frontend, nc: hj.Conn}
}

func (r *rawPG) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the messages up to the n-th ReadyForQuery (or the first
// of stop's types), each as a short string: "E:SQLSTATE", "D:values",
// "C:tag", "Z:status", or the message type.
func (r *rawPG) read(n int, stop ...string) []string {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []string
	for n > 0 {
		msg, err := r.fe.Receive()
		if err != nil {
			return append(got, "error:"+err.Error())
		}
		var s string
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			s = "E:" + m.Code
		case *pgproto3.DataRow:
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, string(v))
			}
			s = "D:" + strings.Join(vals, ",")
		case *pgproto3.CommandComplete:
			s = "C:" + string(m.CommandTag)
		case *pgproto3.ReadyForQuery:
			s = "Z:" + string(m.TxStatus)
			n--
		case *pgproto3.CopyInResponse:
			s = "G"
		case *pgproto3.RowDescription:
			s = "T"
		case *pgproto3.ParseComplete:
			s = "1"
		case *pgproto3.BindComplete:
			s = "2"
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
			continue
		default:
			s = fmt.Sprintf("%T", m)
		}
		got = append(got, s)
		if slices.Contains(stop, s) {
			break
		}
	}
	return got
}

// TestPGGatewayProtocolState drives the gateway with message orders no
// driver sends, each of which once put Vigil's request tracking out of
// step with the database (so rows reached the client unmasked or the
// statement log lied) or let SQL past the rules.
func TestPGGatewayProtocolState(t *testing.T) {
	f := newPGFixture(t, "")
	f.pg.Psql(t, "\\c app\nCREATE TABLE public.p (id int, email text); ALTER TABLE public.p OWNER TO app; INSERT INTO public.p VALUES (1, 'carol@example.com');")
	tok := f.token(t, "--grant", "db1:app:query")
	const masked = "D:c*******@example.com"
	check := func(t *testing.T, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
	selectEmail := &pgproto3.Query{String: "select email from p"}

	t.Run("query dropped after an extended error", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.Parse{Query: "select * from nonexistent"}, selectEmail, &pgproto3.Sync{}, selectEmail)
		check(t, r.read(2), []string{"E:42P01", "Z:I", "T", masked, "C:SELECT 1", "Z:I"})
	})
	t.Run("sync during COPY FROM STDIN", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.Query{String: "create temp table cp (n int)"})
		check(t, r.read(1), []string{"C:CREATE TABLE", "Z:I"})
		r.send(&pgproto3.Query{String: "copy cp from stdin"})
		check(t, r.read(1, "G"), []string{"G"})
		r.send(&pgproto3.Sync{}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Sync{}, &pgproto3.CopyDone{}, selectEmail)
		check(t, r.read(2), []string{"C:COPY 1", "Z:I", "T", masked, "C:SELECT 1", "Z:I"})
	})
	t.Run("COPY FROM STDIN in the extended protocol", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.Query{String: "create temp table cp (n int)"})
		r.read(1)
		r.send(&pgproto3.Parse{Query: "copy cp from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		check(t, r.read(1, "G"), []string{"1", "2", "G"})
		r.send(&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "select count(*) from cp"})
		check(t, r.read(2), []string{"C:COPY 2", "Z:I", "T", "D:2", "C:SELECT 1", "Z:I"})
	})
	t.Run("cursor declared in SQL", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.Query{String: "begin; declare cur cursor for select email from p"})
		check(t, r.read(1), []string{"C:BEGIN", "C:DECLARE CURSOR", "Z:T"})
		r.send(&pgproto3.Execute{Portal: "cur"}, &pgproto3.Sync{})
		got := r.read(1)
		if len(got) < 2 || got[0] != masked {
			t.Errorf("cursor rows: %q, want %s first", got, masked)
		}
		r.send(&pgproto3.Query{String: "commit"})
		check(t, r.read(1), []string{"C:COMMIT", "Z:I"})
	})
	t.Run("refused re-Parse does not rename a statement", func(t *testing.T) {
		r := f.raw(t, tok)
		sid := f.pgSession(t)
		r.send(&pgproto3.Parse{Name: "s1", Query: "select 41 + 1"}, &pgproto3.Sync{})
		check(t, r.read(1), []string{"1", "Z:I"})
		r.send(&pgproto3.Parse{Name: "s1", Query: "select email from p"}, &pgproto3.Sync{})
		check(t, r.read(1), []string{"E:42P05", "Z:I"})
		r.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
		check(t, r.read(1), []string{"2", "D:42", "C:SELECT 1", "Z:I"})
		r.send(&pgproto3.Terminate{})
		r.nc.Close()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := f.s.must("", "queries", "--session", sid)
			if strings.Contains(out, "select 41 + 1") {
				if !regexp.MustCompile(`select 41 \+ 1\s`).MatchString(out) || strings.Count(out, "select email from p") != 1 {
					t.Errorf("statement log:\n%s", out)
				}
				js := f.s.must("", "queries", "--session", sid, "-o", "json")
				if !strings.Contains(js, `"statement": "select email from p"`) || !strings.Contains(js, `"sqlstate": "42P05"`) {
					t.Errorf("statement log json:\n%s", js)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("statement log:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("function call by OID", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.FunctionCall{Function: 1299}, selectEmail)
		check(t, r.read(2), []string{"E:0A000", "Z:I", "T", masked, "C:SELECT 1", "Z:I"})
	})
	t.Run("client encoding switched in a pipeline", func(t *testing.T) {
		// In SJIS 0x95 0x5C is one character: the backslash Vigil's UTF-8
		// reading sees, escaping the quote, is not there, and the DROP
		// would run. The database pack blocks it in every reading.
		r := f.raw(t, tok)
		r.send(&pgproto3.Query{String: "set client_encoding = 'SJIS'"},
			&pgproto3.Query{String: "select E'\x95\\' ; drop table p; --'"})
		r.read(2)
		if got := f.pg.Psql(t, "\\c app\nselect count(*) from p"); got != "1" {
			t.Fatalf("table p after the smuggled DROP: %q", got)
		}
	})
	t.Run("COPY TO STDOUT with masking on", func(t *testing.T) {
		r := f.raw(t, tok)
		r.send(&pgproto3.Query{String: "copy/**/p to stdout"}, selectEmail)
		check(t, r.read(2), []string{"E:0A000", "Z:I", "T", masked, "C:SELECT 1", "Z:I"})
	})
	f.waitNoUpstream(t)
}

// TestUnauthenticatedAuditFlood: connections that never log in put at
// most audit.unauthenticated_per_source events per source and minute in
// the audit log; the rest are counted in an audit.suppressed event,
// written at the latest when Vigil stops.
func TestUnauthenticatedAuditFlood(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(cfgPath, []byte("audit:\n  unauthenticated_per_source: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	s, err := startServer(t, data, nil, "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		nc, err := net.Dial("tcp", s.pgAddr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(nc)
		nc.Close()
	}
	count := func(s *server, typ string) []map[string]any {
		var res struct{ Events []map[string]any }
		if err := json.Unmarshal([]byte(s.must("", "audit", "search", "--type", typ, "-o", "json")), &res); err != nil {
			t.Fatal(err)
		}
		return res.Events
	}
	if got := count(s, "db.startup_failed"); len(got) != 3 {
		t.Errorf("%d db.startup_failed events, want 3 (the limit)", len(got))
	}
	s.stop()
	s2, err := startServer(t, data, nil, "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sup := count(s2, "audit.suppressed")
	if len(sup) != 1 {
		t.Fatalf("%d audit.suppressed events, want 1: %v", len(sup), sup)
	}
	d, _ := sup[0]["data"].(map[string]any)
	ev, _ := d["events"].(map[string]any)
	if d["total"] != float64(5) || ev["db.startup_failed"] != float64(5) || sup[0]["source"] != "127.0.0.1" {
		t.Errorf("audit.suppressed %v, want 5 db.startup_failed from 127.0.0.1", sup[0])
	}
}
