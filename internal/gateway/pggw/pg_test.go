package pggw

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigil-pam/vigil/internal/masking"
	"github.com/vigil-pam/vigil/internal/pgtest"
	"github.com/vigil-pam/vigil/internal/vault"
)

// TestAgainstPostgres checks, against a real PostgreSQL, what the
// gateway assumes of it: the substitute of a blocked statement raises
// exactly the verdict's error whatever the session's string settings,
// and the large object functions have the OIDs loFunctions allows.
func TestAgainstPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	srv := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, srv.DSN(srv.User, srv.Password, srv.Database, "sslmode=disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())

	t.Run("substitute", func(t *testing.T) {
		tests := []struct {
			name     string
			settings string
			v        verdict
		}{
			{"plain", "", verdict{code: "42501", msg: "Vigil blocked this statement", hint: "ask"}},
			{"quotes and backslashes", "SET standard_conforming_strings = off; SET backslash_quote = off",
				verdict{code: "25006", msg: `it's a \ trap \' '' $$ $v$ $vigil_blocked$; DROP TABLE x; --`, hint: `h'\`}},
			{"conforming strings on", "SET standard_conforming_strings = on",
				verdict{code: "0A000", msg: `E'\'' END; $$ /* */ -- `, hint: ""}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.settings != "" {
					if _, err := pc.Exec(ctx, tc.settings).ReadAll(); err != nil {
						t.Fatal(err)
					}
				}
				_, err := pc.Exec(ctx, substitute(tc.v)).ReadAll()
				var pe *pgconn.PgError
				if !errors.As(err, &pe) {
					t.Fatalf("got %v, want the verdict's error", err)
				}
				if pe.Code != tc.v.code || pe.Message != tc.v.msg || pe.Hint != tc.v.hint {
					t.Errorf("got %s %q hint %q, want %s %q hint %q", pe.Code, pe.Message, pe.Hint, tc.v.code, tc.v.msg, tc.v.hint)
				}
			})
		}
	})

	// The credential goes by SCRAM with channel binding over unverified
	// TLS, by SCRAM alone in the clear; a server asking for the password
	// in the clear gets it only over verified TLS.
	t.Run("upstream authentication", func(t *testing.T) {
		connect := func(mode string) error {
			tc, err := tlsConfig(vault.Target{TLS: mode, TLSCA: string(srv.CACert)}, srv.Host)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := pgconn.ParseConfig(srv.DSN(srv.User, srv.Password, srv.Database))
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLSConfig, cfg.Fallbacks = tc, nil
			cfg.RequireAuth, cfg.ChannelBinding = authPolicy(tc)
			c, err := pgconn.ConnectConfig(ctx, cfg)
			if err == nil {
				c.Close(ctx)
			}
			return err
		}
		for _, mode := range []string{TLSDisable, TLSRequire, TLSVerifyFull} {
			if err := connect(mode); err != nil {
				t.Errorf("%s with SCRAM: %v", mode, err)
			}
		}
		hba := "local all all trust\nhost all all 127.0.0.1/32 password\n"
		if err := os.WriteFile(filepath.Join(srv.Dir, "data", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := srv.Psql(t, "SELECT pg_reload_conf()"); out != "t" {
			t.Fatalf("reload: %q", out)
		}
		for mode, ok := range map[string]bool{TLSDisable: false, TLSRequire: false, TLSVerifyFull: true} {
			if err := connect(mode); (err == nil) != ok {
				t.Errorf("%s with a cleartext password request: got %v, want allowed=%v", mode, err, ok)
			}
		}
	})

	t.Run("masked columns", func(t *testing.T) {
		// The pattern is a bound parameter: backslashes in it mean the
		// same whatever the string settings.
		if _, err := pc.Exec(ctx, `SET standard_conforming_strings = off; CREATE TABLE mc1 (id int, api_token text, xssn text, my_ssn text, "Card_Number" text,
			old_secret_token text, note text, "API_SCHLÜSSEL" text, "api_to`+"\u212a"+`en" text, "API_KEY" text);
			ALTER TABLE mc1 DROP COLUMN old_secret_token;
			CREATE VIEW mcv AS SELECT api_token AS view_token, id, note AS card_numberx FROM mc1;`).ReadAll(); err != nil {
			t.Fatal(err)
		}
		m, err := masking.New(masking.Config{Columns: []string{"*token*", "*_ssn", "card_number", "x?sn", "*schlüssel*", "*api_key*"}})
		if err != nil {
			t.Fatal(err)
		}
		res := pc.ExecParams(ctx, "SELECT 'mc1'::regclass::oid::int8, 'mcv'::regclass::oid::int8", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		found := func(t *testing.T) map[string][]string {
			t.Helper()
			got, err := maskedColumns(ctx, pc, m)
			if err != nil {
				t.Fatal(err)
			}
			names := map[string][]string{}
			for src, name := range got {
				switch strconv.FormatUint(uint64(src.table), 10) {
				case string(res.Rows[0][0]):
					names["mc1"] = append(names["mc1"], fmt.Sprintf("%d:%s", src.attr, name))
				case string(res.Rows[0][1]):
					names["mcv"] = append(names["mcv"], fmt.Sprintf("%d:%s", src.attr, name))
				}
			}
			slices.Sort(names["mc1"])
			return names
		}
		// The dropped column keeps its number (6) but is not masked; the
		// view's column 1 reads api_token as view_token. Capitals the
		// database's lower() leaves alone (C locale) and the Kelvin sign,
		// which Go lower-cases to k, are found too.
		want := map[string][]string{"mc1": {"10:API_KEY", "2:api_token", "3:xssn", "4:my_ssn", "5:Card_Number", "8:API_SCHLÜSSEL",
			"9:api_to\u212aen"}, "mcv": {"1:view_token"}}
		if got := found(t); !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("got %v, want %v", got, want)
		}

		// The client's search_path cannot put look-alike operators or
		// functions before pg_catalog's.
		if _, err := pc.Exec(ctx, `CREATE SCHEMA evil;
			CREATE FUNCTION evil.no(text, text) RETURNS bool LANGUAGE sql AS 'SELECT false';
			CREATE FUNCTION evil.no(oid, oid) RETURNS bool LANGUAGE sql AS 'SELECT false';
			CREATE FUNCTION evil.no(int2, int4) RETURNS bool LANGUAGE sql AS 'SELECT false';
			CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS 'SELECT ''x''';
			CREATE OPERATOR evil.~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.no);
			CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.no);
			CREATE OPERATOR evil.> (LEFTARG = int2, RIGHTARG = int4, FUNCTION = evil.no);
			SET search_path = evil, pg_catalog`).ReadAll(); err != nil {
			t.Fatal(err)
		}
		if got := found(t); !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("with search_path evil, pg_catalog: got %v, want %v", got, want)
		}
		if _, err := pc.Exec(ctx, `RESET search_path`).ReadAll(); err != nil {
			t.Fatal(err)
		}

		// Too many candidates is an error, not a partial answer.
		defer func(n int) { maxMaskedColumns = n }(maxMaskedColumns)
		maxMaskedColumns = 3
		if _, err := maskedColumns(ctx, pc, m); err == nil || !strings.Contains(err.Error(), "more than 3 columns") {
			t.Errorf("over the cap: got %v", err)
		}
	})

	t.Run("large object OIDs", func(t *testing.T) {
		res := pc.ExecParams(ctx, "SELECT oid::int8, proname FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY($1::text[])",
			[][]byte{[]byte("{lo_create,lo_open,lo_close,loread,lowrite,lo_lseek,lo_creat,lo_tell,lo_unlink,lo_truncate,lo_lseek64,lo_tell64,lo_truncate64}")}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		found := 0
		for _, row := range res.Rows {
			oid, _ := strconv.ParseUint(string(row[0]), 10, 32)
			if got := loFunctions[uint32(oid)]; got != string(row[1]) {
				t.Errorf("%s has OID %d, loFunctions says %q", row[1], oid, got)
			}
			found++
		}
		if found != len(loFunctions) {
			t.Errorf("found %d of the %d functions", found, len(loFunctions))
		}
	})
}

// BenchmarkMaskedColumns measures what masking by column name adds to
// each login: the catalog query of maskedColumns with the default
// patterns, against a new database, then one of 2,000 more tables of 10
// columns, two of them masked.
//
//	go test ./internal/gateway/pggw/ -run '^$' -bench MaskedColumns
func BenchmarkMaskedColumns(b *testing.B) {
	srv := pgtest.Start(b)
	ctx := context.Background()
	pc, err := pgconn.Connect(ctx, srv.DSN(srv.User, srv.Password, srv.Database, "sslmode=disable"))
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close(ctx)
	m, err := masking.New(masking.Default())
	if err != nil {
		b.Fatal(err)
	}
	for _, tables := range []int{0, 2000} {
		if _, err := pc.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			EXECUTE format('CREATE TABLE t%%s (id int, a text, b text, c int, d int, e date, f text, password_hash text, api_token text, g text)', i);
			END LOOP; END $$`, tables)).ReadAll(); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("tables=%d", tables), func(b *testing.B) {
			for b.Loop() {
				got, err := maskedColumns(ctx, pc, m)
				if err != nil || len(got) < 2*tables {
					b.Fatalf("got %d columns, %v", len(got), err)
				}
			}
		})
	}
}
