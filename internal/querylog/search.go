package querylog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
)

// Limits of search.
const (
	// DefaultLimit is the page size when Query.Limit is zero.
	DefaultLimit = 100
	// MaxLimit caps Query.Limit.
	MaxLimit = 1000
	// perRowMax is the most rows the indexed filters may select for a
	// text search to check them one by one (see Search).
	perRowMax = 256
)

// ErrBadQuery wraps every error caused by the query itself (as opposed to
// the store), so the API can answer 400.
var ErrBadQuery = errors.New("querylog: bad query")

// Query selects stored entries; zero fields do not filter.
type Query struct {
	// Session, User and Target match exactly.
	Session, User, Target string
	// Source matches the client address exactly, or its host part (an
	// address without a port matches every port).
	Source string
	// Since and Until bound the statement's time: Since ≤ time < Until.
	Since, Until time.Time
	// Text is a full-text query over the statement: words (all must
	// occur, any order) and "quoted phrases"; a word ending in * matches
	// as a prefix. Case and punctuation are ignored; FTS5 operators (OR,
	// NOT, NEAR, parentheses) are searched as words.
	Text string
	// Outcome is one of the Outcome constants.
	Outcome string
	// After is a cursor (Result.Next): only entries after the one with
	// this ID in the result's order (a greater ID, or a smaller one with
	// Desc).
	After int64
	// Desc returns newest (highest ID) first.
	Desc bool
	// Limit caps the result; 0 means DefaultLimit, at most MaxLimit.
	Limit int
}

// Result is a page of a search.
type Result struct {
	// Entries are in ID order (descending with Query.Desc).
	Entries []Stored
	// Next is the Query.After that continues the search, 0 when there is
	// nothing more.
	Next int64
}

// Search returns the entries of db matching q, in ID order (the order
// they were stored; newest first with q.Desc). Session and time use the
// indexes of queries. User, Target and Source are columns of the entries'
// rows in query_sessions: the rows matching are found by its indexes, and
// their entries by queries_query_session, which holds the time too.
// Outcome is checked on the rows the other filters, or the ID order,
// select. Text uses the full-text index, joined to queries by rowid: it
// drives the search in ID order, or checks each row when the indexed
// filters select few. The page is cut from the IDs selected; then its
// entries, and their query_sessions rows, are read. Errors caused by q
// wrap ErrBadQuery.
func Search(ctx context.Context, db *store.DB, q Query) (Result, error) {
	switch {
	case q.Limit < 0:
		return Result{}, fmt.Errorf("%w: negative limit", ErrBadQuery)
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit > MaxLimit:
		q.Limit = MaxLimit
	}
	if q.After < 0 {
		return Result{}, fmt.Errorf("%w: negative cursor", ErrBadQuery)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return Result{}, fmt.Errorf("%w: until (%s) is not after since (%s)", ErrBadQuery,
			q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	if q.Outcome != "" && !slices.Contains(outcomes, q.Outcome) {
		return Result{}, fmt.Errorf("%w: outcome %q is not one of %s", ErrBadQuery, q.Outcome, strings.Join(outcomes, ", "))
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var match string
	if q.Text != "" {
		var err error
		if match, err = audit.FTSQuery(q.Text, ErrBadQuery); err != nil {
			return Result{}, err
		}
	}
	after := " > "
	if q.Desc {
		after = " < "
	}
	// First the filters an index answers on its own (each index holds
	// the rowid, and queries_query_session the time): they decide how
	// text is searched. (Source is answered by indexes too, through
	// query_sessions, but takes no part in that decision, as before.)
	if q.Session != "" {
		where = append(where, "q.session = "+arg(q.Session))
	}
	var sessions []string
	if q.User != "" {
		sessions = append(sessions, "subject = "+arg(q.User))
	}
	if q.Target != "" {
		sessions = append(sessions, "target = "+arg(q.Target))
	}
	if len(sessions) > 0 {
		where = append(where, inSessions(sessions))
	}
	narrow := len(where) > 0
	if !q.Since.IsZero() {
		where = append(where, "q.time >= "+arg(store.Nanos(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "q.time < "+arg(store.Nanos(q.Until)))
	}
	if q.After > 0 {
		where = append(where, "q.id"+after+arg(q.After))
	}
	// Text is searched one of two ways. Checking each row the indexed
	// filters select against the full-text index costs tens of
	// microseconds a row, so it is the way when they select few (a
	// session, a quiet user). Otherwise the full-text index drives: it
	// yields matching rowids in order, each is looked up and the other
	// filters checked, until a page is full; that costs little per match
	// however many rows match.
	perRow := false
	if match != "" && narrow {
		n, err := countUpTo(ctx, db, where, args, perRowMax+1)
		if err != nil {
			return Result{}, err
		}
		perRow = n <= perRowMax
	}
	if q.Outcome != "" {
		where = append(where, "q.outcome = "+arg(q.Outcome))
	}
	if q.Source != "" {
		// "10.0.0.5" matches "10.0.0.5:51234"; "[::1]" and "::1" both
		// match "[::1]:5432".
		host := strings.TrimSuffix(strings.TrimPrefix(q.Source, "["), "]")
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		source := "(source = " + arg(q.Source) + " OR (source >= " + arg(host+":") + " AND source < " + arg(host+";") + "))"
		where = append(where, inSessions([]string{source}))
	}
	from, id := "queries q", "q.id"
	switch {
	case match == "":
	case perRow:
		where = append(where, "EXISTS (SELECT 1 FROM queries_fts WHERE queries_fts MATCH "+arg(match)+" AND queries_fts.rowid = q.id)")
	default:
		// CROSS JOIN keeps the full-text index the outer loop: SQLite
		// does not reorder it.
		from, id = "queries_fts CROSS JOIN queries q ON q.id = queries_fts.rowid", "queries_fts.rowid"
		where = append(where, "queries_fts MATCH "+arg(match))
		if q.After > 0 {
			// The cursor bounds the full-text scan itself.
			where = append(where, id+after+arg(q.After))
		}
	}
	desc := ""
	if q.Desc {
		desc = " DESC"
	}
	// The page is cut from the IDs the filters select, and only its
	// entries are read, with their query_sessions rows. When the indexes
	// answer every filter, the rows the page leaves out are never read:
	// a user's entries, say, are in queries_query_session a session at
	// a time, and reading each to sort them by ID would go back and forth
	// through the table once per session. One more than a page says
	// whether there is a next one. (LEFT JOIN: an entry whose
	// query_sessions row were missing would be listed with those columns
	// blank, not dropped from the page.)
	page := "SELECT " + id + " AS id FROM " + from
	if len(where) > 0 {
		page += " WHERE " + strings.Join(where, " AND ")
	}
	page += " ORDER BY " + id + desc + " LIMIT " + arg(q.Limit+1)
	rows, err := db.QueryContext(ctx, "SELECT "+columns+" FROM ("+page+") p CROSS JOIN queries q ON q.id = p.id"+
		" LEFT JOIN query_sessions s ON s.id = q.query_session_id ORDER BY p.id"+desc, args...)
	if err != nil {
		return Result{}, fmt.Errorf("querylog: search: %w", err)
	}
	entries, err := scan(rows)
	if err != nil {
		return Result{}, fmt.Errorf("querylog: search: %w", err)
	}
	res := Result{Entries: entries}
	if len(entries) > q.Limit {
		res.Entries = entries[:q.Limit]
		res.Next = res.Entries[q.Limit-1].ID
	}
	return res, nil
}

// inSessions returns the filter selecting the entries whose query_sessions
// row matches all of conds (on its columns, unqualified).
func inSessions(conds []string) string {
	return "q.query_session_id IN (SELECT id FROM query_sessions WHERE " + strings.Join(conds, " AND ") + ")"
}

// countUpTo returns how many rows of queries q match where, counting no
// further than limit.
func countUpTo(ctx context.Context, db *store.DB, where []string, args []any, limit int) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM queries q WHERE "+strings.Join(where, " AND ")+
		fmt.Sprintf(" LIMIT %d)", limit), args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("querylog: search: %w", err)
	}
	return n, nil
}

// Search is the package's Search over the writer's store.
func (w *Writer) Search(ctx context.Context, q Query) (Result, error) {
	return Search(ctx, w.db, q)
}

// columns are what scan reads of an entry's row of queries q and its row
// of query_sessions s, in its order.
const columns = `q.id, q.session, q.seq, q.time, COALESCE(s.subject, ''), COALESCE(s.target, ''),
	COALESCE(s.login, ''), COALESCE(s.database, ''), COALESCE(s.source, ''), q.protocol, q.statement, q.params,
	q.duration_us, q.rows, q.tag, q.outcome, q.sqlstate, q.error, q.rule, q.masked`

// scan reads the entries of rows (columns) and closes it.
func scan(rows *sql.Rows) ([]Stored, error) {
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var s Stored
		var t, us int64
		if err := rows.Scan(&s.ID, &s.Session, &s.Seq, &t, &s.User, &s.Target, &s.Login, &s.Database, &s.Source, &s.Protocol,
			&s.Statement, &s.Params, &us, &s.Rows, &s.Tag, &s.Outcome, &s.SQLState, &s.Error, &s.Rule, &s.Masked); err != nil {
			return nil, err
		}
		s.Time = store.Time(t)
		s.Duration = time.Duration(us) * time.Microsecond
		out = append(out, s)
	}
	return out, rows.Err()
}
