package pggw

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/masking"
)

// columnSource is a table column as a RowDescription names the column a
// result column reads: the table's OID and the column's number.
type columnSource struct {
	table uint32
	attr  uint16
}

// maxMaskedColumns caps the columns a login reads as candidates for
// masking by name (maskedColumns): a database with more is refused rather
// than given a session whose aliases could slip past the rest. A variable
// for the tests.
var maxMaskedColumns = 100_000

// maskedColumnsSQL reads the columns whose names may match the masking
// patterns (masking.Masker.LikePatterns, bound to the parameters of the
// ARRAY maskedColumns appends, with the LIMIT) from every table, view,
// materialized view and foreign table. Every function, operator and type
// is named with its schema: the query runs with the client's search_path,
// where a look-alike `lower` or `~~` in a schema listed before pg_catalog
// would otherwise answer for it.
const maskedColumnsSQL = `SELECT a.attrelid, a.attnum, a.attname FROM pg_catalog.pg_attribute a
	JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
	WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
	AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])
	AND pg_catalog.lower(a.attname::pg_catalog.text) OPERATOR(pg_catalog.~~) ANY (ARRAY[`

// maskedColumns asks the database, on pc before it is hijacked, which
// columns of its tables, views, materialized views and foreign tables m
// masks by name, for every schema the login can see in the catalog. A
// result column that reads one of them under another name (`SELECT
// api_token AS t`, a subquery's or a CTE's alias) is masked too: the
// database names its source in the RowDescription. Columns created after
// the session starts are known only by their result names.
//
// The database only narrows the columns down (with LIKE patterns loose
// enough for its own case folding, which can differ from Go's); which of
// them are masked is m's decision. More than maxMaskedColumns
// candidates is an error, not a partial answer.
func maskedColumns(ctx context.Context, pc *pgconn.PgConn, m *masking.Masker) (map[columnSource]string, error) {
	likes := m.LikePatterns()
	var b strings.Builder
	b.WriteString(maskedColumnsSQL)
	params := make([][]byte, len(likes))
	for i, l := range likes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::pg_catalog.text", i+1)
		params[i] = []byte(l)
	}
	fmt.Fprintf(&b, "]) LIMIT %d", maxMaskedColumns+1)
	rr := pc.ExecParams(ctx, b.String(), params, nil, nil, nil)
	out := map[columnSource]string{}
	var bad error
	rows := 0
	for rr.NextRow() {
		rows++
		v := rr.Values()
		if bad != nil || len(v) != 3 {
			continue
		}
		if rows > maxMaskedColumns {
			bad = fmt.Errorf("more than %d columns may match the masking patterns", maxMaskedColumns)
			continue
		}
		name := string(v[2])
		if !m.MatchColumn(name) {
			continue // the LIKE patterns match more
		}
		table, err := strconv.ParseUint(string(v[0]), 10, 32)
		attr, aerr := strconv.ParseUint(string(v[1]), 10, 16)
		if err != nil || aerr != nil {
			bad = fmt.Errorf("unexpected catalog row %q, %q", v[0], v[1])
			continue
		}
		out[columnSource{uint32(table), uint16(attr)}] = name
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("read the columns to mask: %w", err)
	}
	if bad != nil {
		return nil, fmt.Errorf("read the columns to mask: %w", bad)
	}
	return out, nil
}

// sources returns, for each field of rd, the name of the masked table
// column it reads ("" for none), or nil if none does.
func (c *conn) sources(rd *pgproto3.RowDescription) []string {
	if len(c.info.masked) == 0 {
		return nil
	}
	var out []string
	for i, f := range rd.Fields {
		if f.TableOID == 0 {
			continue
		}
		if name, ok := c.info.masked[columnSource{f.TableOID, f.TableAttributeNumber}]; ok {
			if out == nil {
				out = make([]string, len(rd.Fields))
			}
			out[i] = name
		}
	}
	return out
}
