package rules

import (
	"strings"
	"testing"
)

func TestCheckReadOnly(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want string // a part of the reason; "" if sql must pass
	}{
		// Queries.
		{"select", "select 1", ""},
		{"select upper case", "SELECT * FROM t WHERE a = 1", ""},
		{"select mixed case", "SeLeCt a FrOm t", ""},
		{"select no space", "select*from t", ""},
		{"parenthesised select", "(select 1) union (select 2)", ""},
		{"values", "values (1), (2)", ""},
		{"table", "table t", ""},
		{"with", "with x as (select 1) select * from x", ""},
		{"with recursive", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 5) SELECT * FROM r", ""},
		{"string holding DML", "select 'insert into x'", ""},
		{"string holding DML and a semicolon", "select 'a; drop table t'", ""},
		{"dollar string holding DML", "select $$delete from t$$", ""},
		{"comment holding DML", "/* insert */ select 1", ""},
		{"line comment holding DML", "select 1 -- ; drop table t", ""},
		{"quoted identifier holding DML", `select "delete from t" from t`, ""},
		{"split keyword", "SEL/**/ECT 1", "SEL may write"},
		{"select into", "select * into newtab from t", "SELECT INTO"},
		{"select into temp", "SELECT a INTO TEMP TABLE x FROM t", "SELECT INTO"},
		{"for update", "select * from t for update", "FOR UPDATE locks rows"},
		{"for no key update", "select * from t for no key update skip locked", "FOR NO KEY UPDATE"},
		{"for share", "select * from t for share", "FOR SHARE"},
		{"for key share in a subquery", "select * from (select * from t for key share) s", "FOR KEY SHARE"},
		{"CTE with delete", "with d as (delete from t returning *) select * from d", "DELETE writes data"},
		{"CTE with insert", "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", "INSERT writes data"},
		{"with then update", "with x as (select 1) update t set a = 1", "UPDATE writes data"},
		{"parenthesised select for update", "(select * from t for update)", "FOR UPDATE"},
		{"for read only", "select * from t for read only", ""},
		{"E string with escaped quote", `select E'it\'s; delete from t'`, ""},
		{"column named update, conservatively", "select update from t", "UPDATE writes data"},

		// Several statements.
		{"select then drop", "select 1; drop table t", "DROP"},
		{"two selects", "select 1; select 2;", ""},
		{"empty statements", " ; ;; -- nothing\n /* at all */ ;", ""},
		{"empty", "", ""},

		// Writes and DDL, by verb.
		{"insert", "insert into t values (1)", "INSERT writes data"},
		{"update", "UPDATE t SET a = 1", "UPDATE writes data"},
		{"delete", "Delete From t", "DELETE writes data"},
		{"merge", "merge into t using s on t.id = s.id when matched then delete", "MERGE writes data"},
		{"truncate", "truncate t", "TRUNCATE"},
		{"create", "create table t (a int)", "CREATE"},
		{"alter", "alter table t add column b int", "ALTER"},
		{"drop", "DROP TABLE t", "DROP"},
		{"grant", "grant select on t to bob", "GRANT"},
		{"revoke", "revoke select on t from bob", "REVOKE"},
		{"comment", "comment on table t is 'x'", "COMMENT"},
		{"security label", "security label on table t is 'x'", "SECURITY LABEL"},
		{"vacuum", "vacuum t", "VACUUM"},
		{"analyze", "analyze t", "ANALYZE writes statistics"},
		{"cluster", "cluster t", "CLUSTER"},
		{"reindex", "reindex table t", "REINDEX"},
		{"refresh", "refresh materialized view v", "REFRESH"},
		{"lock", "lock table t", "LOCK"},
		{"import", "import foreign schema s from server x into y", "IMPORT"},
		{"load", "load 'plpgsql'", "LOAD"},
		{"checkpoint", "checkpoint", "CHECKPOINT"},
		{"notify", "notify ch, 'x'", "NOTIFY"},
		{"reassign", "reassign owned by a to b", "REASSIGN"},
		{"call", "call p()", "CALL"},
		{"do", "do $$ begin perform 1; end $$", "DO runs code"},
		{"nested do", "DO $o$ BEGIN EXECUTE $i$ DO $$ BEGIN DELETE FROM t; END $$ $i$; END $o$", "DO runs code"},
		{"unknown verb", "frobnicate t", "FROBNICATE may write"},

		// Transactions and session state.
		{"begin", "begin", ""},
		{"begin read only", "BEGIN READ ONLY", ""},
		{"begin isolation", "begin isolation level repeatable read", ""},
		{"begin read write", "begin read write", "BEGIN READ WRITE"},
		{"start transaction read write", "start transaction isolation level serializable, read write", "START TRANSACTION READ WRITE"},
		{"start transaction", "START TRANSACTION", ""},
		{"commit", "commit", ""},
		{"end", "end", ""},
		{"rollback", "ROLLBACK", ""},
		{"abort", "abort", ""},
		{"savepoint", "savepoint s", ""},
		{"release", "release savepoint s", ""},
		{"rollback to", "rollback to savepoint s", ""},
		{"commit prepared", "commit prepared 'gid'", "COMMIT PREPARED"},
		{"rollback prepared", "rollback prepared 'gid'", "ROLLBACK PREPARED"},
		{"prepare transaction", "prepare transaction 'gid'", "PREPARE TRANSACTION"},
		{"set transaction read only", "set transaction read only", ""},
		{"set transaction read write", "SET TRANSACTION READ WRITE", "SET TRANSACTION READ WRITE"},
		{"set session characteristics", "set session characteristics as transaction read write", "READ WRITE"},
		{"set", "set search_path = app, public", ""},
		{"set local", "SET LOCAL statement_timeout TO '5s'", ""},
		{"set time zone", "set time zone 'UTC'", ""},
		{"set custom", "set myapp.user_id = 42", ""},
		{"set read only off", "set default_transaction_read_only = off", "default_transaction_read_only changes the read-only guard"},
		{"set session read only off", "SET SESSION default_transaction_read_only TO off", "read-only guard"},
		{"set transaction_read_only", "set local transaction_read_only = off", "read-only guard"},
		{"set quoted parameter", `set "default_transaction_read_only" = off`, "quoted parameter"},
		{"set role", "set role admin", "changes the user"},
		{"set session authorization", "set session authorization admin", "changes the user"},
		{"set session_replication_role", "set session_replication_role = replica", "triggers"},
		{"set standard_conforming_strings", "set standard_conforming_strings = off", "how SQL is read"},
		{"set client_encoding", "set client_encoding = 'SJIS'", "how SQL is read"},
		{"set names", "set names 'SJIS'", "how SQL is read"},
		{"reset", "reset search_path", ""},
		{"reset all", "RESET ALL", "RESET ALL"},
		{"reset read only", "reset default_transaction_read_only", "read-only guard"},
		{"reset role", "reset role", "changes the user"},
		{"reset session authorization", "reset session authorization", "changes the user"},
		{"discard plans", "discard plans", ""},
		{"discard temp", "DISCARD TEMP", ""},
		{"discard all", "discard all", "DISCARD ALL"},
		{"set_config", "select set_config('default_transaction_read_only','off',false)", "set_config() can change the read-only guard"},
		{"set_config qualified", "SELECT pg_catalog.set_config ('x', 'y', false)", "set_config()"},
		{"set_config quoted", `select "set_config"('default_transaction_read_only','off',false)`, "set_config()"},
		{"set_config with comment", "select set_config/**/('a','b',true)", "set_config()"},
		{"show", "show all", ""},
		{"show one", "SHOW default_transaction_read_only", ""},
		{"listen", "listen ch", ""},
		{"unlisten", "unlisten *", ""},

		// EXPLAIN.
		{"explain", "explain select 1", ""},
		{"explain delete", "explain delete from t", ""},
		{"explain analyze select", "explain analyze select 1", ""},
		{"explain analyze verbose select", "EXPLAIN ANALYZE VERBOSE SELECT 1", ""},
		{"explain analyse", "explain analyse select * from t", ""},
		{"explain analyze delete", "explain analyze delete from t", "EXPLAIN ANALYZE runs the statement: DELETE"},
		{"explain options analyze", "explain (analyze, buffers) update t set a = 1", "UPDATE"},
		{"explain options analyze true", "explain (format json, analyze true) insert into t values (1)", "INSERT"},
		{"explain analyze false", "explain (analyze false) delete from t", ""},
		{"explain analyze off", "EXPLAIN (ANALYZE OFF, COSTS OFF) DELETE FROM t", ""},
		{"explain analyze 0", "explain (analyze 0) delete from t", ""},
		{"explain analyze quoted false", "explain (analyze 'false') delete from t", "DELETE"},
		{"explain quoted option", `explain ("analyze") delete from t`, "DELETE"},
		{"explain analyze select for update", "explain analyze select * from t for update", "FOR UPDATE"},
		{"explain analyze execute", "explain analyze execute p(1)", ""},

		// Cursors, prepared statements, COPY.
		{"declare", "declare c cursor for select 1", ""},
		{"declare with hold", "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t", ""},
		{"declare for update", "declare c cursor for select * from t for update", "FOR UPDATE"},
		{"fetch", "fetch 10 from c", ""},
		{"move", "move next in c", ""},
		{"close", "close c", ""},
		{"prepare select", "prepare p (int) as select $1", ""},
		{"prepare insert", "prepare p as insert into t values (1)", "INSERT writes data"},
		{"prepare with types", "PREPARE p(int, text) AS DELETE FROM t WHERE id = $1", "DELETE"},
		{"execute", "execute p(1)", ""},
		{"deallocate", "deallocate all", ""},
		{"copy to stdout", "copy t to stdout", ""},
		{"copy columns to stdout", "COPY t (a, b) TO STDOUT WITH (FORMAT csv)", ""},
		{"copy query to stdout", "copy (select * from t) to stdout", ""},
		{"copy from stdin", "copy t from stdin", "COPY FROM"},
		{"copy query to file", "copy (select 1) to '/tmp/x'", "COPY TO a file"},
		{"copy to program", "copy t to program 'rm -rf /'", "COPY TO PROGRAM"},
		{"copy delete returning", "copy (delete from t returning *) to stdout", "DELETE"},

		// Functions.
		{"nextval", "select nextval('s')", "nextval()"},
		{"setval", "SELECT setval('s', 1)", "setval()"},
		{"nextval in insert names the insert", "insert into t values (nextval('s'))", "INSERT"},
		{"quoted nextval", `select "NEXTVAL"('s')`, "nextval()"},
		{"lo_import", "select lo_import('/etc/passwd')", "lo_import()"},
		{"lo_unlink", "select lo_unlink(1234)", "lo_unlink()"},
		{"pg_terminate_backend", "select pg_terminate_backend(pid) from pg_stat_activity", "pg_terminate_backend()"},
		{"pg_reload_conf", "select pg_reload_conf()", "pg_reload_conf()"},
		{"pg_notify", "select pg_notify('ch', 'x')", "pg_notify()"},
		{"dblink_exec", "select dblink_exec('host=x', 'delete from t')", "dblink_exec()"},
		{"dblink", "select * from dblink('host=x', 'select 1') as t(a int)", "dblink()"},
		{"query_to_xml", "select query_to_xml('select 1', true, false, '')", "query_to_xml()"},
		{"advisory lock", "select pg_advisory_lock(1)", ""},
		{"quoted schema and function", `select "pg_catalog"."nextval"('s')`, "nextval()"},
		{"column named nextval", "select nextval from t", ""},
		{"function name in a string", "select 'nextval(1)'", ""},
		{"unicode identifier", `select U&"\0073et_config"('a', 'b', false)`, "Unicode escapes"},
		{"bare carriage return ends a comment", "select 1 -- x\r; delete from t", "DELETE"},
		{"carriage return and line feed", "select 1 -- x\r\nfrom t", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := CheckReadOnly(tc.sql)
			switch {
			case tc.want == "" && v != nil:
				t.Errorf("got %+v, want nil", *v)
			case tc.want != "" && v == nil:
				t.Errorf("got nil, want a violation with %q", tc.want)
			case tc.want != "" && !strings.Contains(v.Reason, tc.want):
				t.Errorf("got reason %q, want one with %q", v.Reason, tc.want)
			}
		})
	}
}

func TestCheckReadOnlyStatement(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"second statement", "select 1;\n  Drop Table \"T\" -- x\n", "Drop Table \"T\" -- x"},
		{"first of two", "DELETE FROM t; DROP TABLE t", "DELETE FROM t"},
		{"explain", "  EXPLAIN ANALYZE DELETE FROM t ", "EXPLAIN ANALYZE DELETE FROM t"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := CheckReadOnly(tc.sql)
			if v == nil {
				t.Fatalf("got nil, want a violation")
			}
			if v.Statement != tc.want {
				t.Errorf("got statement %q, want %q", v.Statement, tc.want)
			}
		})
	}
}

// FuzzCheckReadOnly checks that no input panics and that a violation
// always names a statement and a reason.
func FuzzCheckReadOnly(f *testing.F) {
	for _, s := range []string{
		"select 1", "explain (analyze", "copy (", "prepare", "declare c cursor for",
		"set", "reset", "set session", `explain ("analyze",,) x`, "select f(", `select "x`, "for",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v := CheckReadOnly(s); v != nil && (v.Statement == "" || v.Reason == "") {
			t.Errorf("got %+v, want a statement and a reason", *v)
		}
	})
}
