package rules

import (
	"slices"
	"testing"
)

func TestSplitSQL(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want []string // normalised statements
	}{
		{"one", "SELECT 1", []string{"select 1"}},
		{"white space", "  SELECT\n\t*  FROM\r\n t ;  ", []string{"select * from t"}},
		{"several", "a; b;;c", []string{"a", "b", "c"}},
		{"line comment", "select 1 -- drop table x; still comment\nfrom t", []string{"select 1 from t"}},
		{"block comment", "drop/* x; */table t", []string{"drop table t"}},
		{"nested comment", "a /* x /* y */ ; z */ b", []string{"a b"}},
		{"string", "select 'a;b''c' from t", []string{"select '' from t"}},
		{"E string", `select E'a\';b' ; x`, []string{"select e''", "x"}},
		// Both readings: standard_conforming_strings on, then off.
		{"backslash read both ways", `select 'a\';b'`, []string{"select ''", "b''"}},
		{"hidden by conforming strings off", `select 'a\' , ' ; delete from t; --'`,
			[]string{"select '' , ''", "select ''", "delete from t"}},
		// SJIS, BIG5, GBK, GB18030 and JOHAB read 0x95 0x5C as one
		// character: the backslash a UTF-8 reading sees is not there.
		{"backslash hidden in a multibyte character", "select E'\x95\\' ; drop table t; --'",
			[]string{"select e''", "drop table t"}},
		{"backslash after a complete character", "select E'\xc3\xa9\\' ; drop table t; --'", []string{"select e''"}},
		{"line comment ended by a carriage return", "select 1 -- x\r; delete from t", []string{"select 1", "delete from t"}},
		{"identifier", `select "A;""B" from "T"`, []string{`select "" from ""`}},
		{"identifier called", `select "F"(1), "a b"(2), "where"(3), "1x"(4), "f"`, []string{`select f(1), ""(2), ""(3), ""(4), ""`}},
		{"unicode identifier called", `select U&"d\0061ta"(1), U&"x!0079" uescape '!' (2), U&"\0000"(3), U&"\12"(4)`,
			[]string{`select u&data(1), u&xy (2), u&""(3), u&""(4)`}},
		{"bad uescape", `select U&"x" UESCAPE '+' (1)`, []string{`select u&"" uescape '' (1)`}},
		{"dollar", "select $$a;b$$, $t$x;$$;y$t$", []string{"select $$, $$"}},
		{"parameter", "select $1, a$b$ from t", []string{"select $1, a$b$ from t"}},
		{"unterminated string", "select 'abc; drop table t", []string{"select ''"}},
		{"unterminated comment", "select 1 /* drop table t", []string{"select 1"}},
		{"DO body", "DO $$ BEGIN DELETE FROM t; END $$; select 1", []string{"do $$", "begin delete from t", "end", "select 1"}},
		{"function body", "create or replace function f() returns int as $f$ select 1; $f$ language sql",
			[]string{"create or replace function f() returns int as $$ language sql", "select 1"}},
		{"data not code", "select $$ delete from t $$", []string{"select $$"}},
		{"empty", " ;; -- x\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, st := range splitSQL(tc.sql) {
				got = append(got, st.norm)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitSQLOrig(t *testing.T) {
	got := splitSQL("select 1 ;\n  Drop Table \"T\" -- x\n")
	if len(got) != 2 || got[1].orig != "Drop Table \"T\" -- x" {
		t.Errorf("got %+v, want the second statement as sent", got)
	}
}

func FuzzSplitSQL(f *testing.F) {
	for _, s := range []string{"select 1", "a;'b;c';$$d$$;/* e */", "DO $x$ begin drop table t; end $x$", "E'\\'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, st := range splitSQL(s) {
			if st.norm == "" {
				t.Errorf("got an empty statement from %q", s)
			}
		}
	})
}

func TestCopyStreams(t *testing.T) {
	tests := []struct {
		sql     string
		in, out bool
	}{
		{"select 1", false, false},
		{"COPY t FROM STDIN", true, false},
		{"copy t (a, b) from stdin with (format csv)", true, false},
		{"COPY t TO STDOUT", false, true},
		{"COPY (SELECT a FROM t) TO STDOUT (FORMAT csv)", false, true},
		{"COPY t FROM '/tmp/x'", false, false},
		{"COPY t TO PROGRAM 'cat'", false, false},
		{"select 1; copy/**/t from stdin; copy t to stdout", true, true},
		{"copy t", true, true},
		{"COPY (SELECT 1", true, true},
		{"select 'copy t from stdin'", false, false},
		// PL/pgSQL cannot COPY to or from the client.
		{"DO $$ BEGIN COPY t TO STDOUT; END $$", false, false},
	}
	for _, tc := range tests {
		in, out := CopyStreams(tc.sql)
		if in != tc.in || out != tc.out {
			t.Errorf("CopyStreams(%q) = %v, %v; want %v, %v", tc.sql, in, out, tc.in, tc.out)
		}
	}
}
