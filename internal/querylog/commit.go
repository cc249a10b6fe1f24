package querylog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/vigil-pam/vigil/internal/store"
)

// How a batch is written. What a transaction costs is mostly fixed (the
// pages it dirties go to the write-ahead log and are synced, the
// full-text index writes a segment), so the writer goroutine makes
// transactions large (WriterOptions.CommitInterval) and each entry as
// cheap as it can be:
//
//   - What is constant in a session (its ID, user, target, login,
//     database and client address) is stored once, as a row of
//     query_sessions, and each entry's row in queries refers to it by
//     query_session_id: an entry updates one index for them
//     (queries_query_session) rather than one per column searched. The
//     writer remembers the IDs of the sessions it stored recently
//     (sessionCache, sessions.go), so a session's row is looked up, or
//     inserted, once rather than per entry or per transaction.
//   - The entries go in with multi-row INSERTs of insertRows rows,
//     prepared once per connection and reused.
//   - The full-text index is fed by one INSERT … SELECT at the end of the
//     transaction. FTS5 writes what it holds in memory to a new segment
//     whenever a statement opens a savepoint in the transaction, which
//     every INSERT into queries did after an INSERT into queries_fts:
//     indexing row by row wrote, and then merged, one segment per entry.
//   - The INSERTs are INSERT OR IGNORE rather than ON CONFLICT DO NOTHING:
//     the same for these rows (no value bound is ever NULL and queries
//     has no CHECK or foreign key, so the only constraint a row can break
//     is the unique (session, seq); keep it so: query_session_id is not
//     declared a foreign key of query_sessions for that reason, besides
//     the lookup it would cost each row), but a multi-row INSERT that
//     may abort half-way saves the pages it changes to a statement
//     journal, a temporary file, as it goes: a sixth of the writer's CPU
//     when profiled.
//   - They number their parameters with ? rather than $N: the driver
//     looks up each named parameter by a linear search, quadratic in the
//     parameters of a statement (960 for 64 rows).
//
// The statement log is SQLite-only anyway (FTS5).

// insertRows are the row counts of the prepared multi-row INSERTs, largest
// first: a batch is written with as many of the largest as fit, then the
// next, and so on down to one row.
var insertRows = []int{64, 16, 4, 1}

// insertColumns is the number of values insertSQL takes per entry, in the
// order of insertArgs.
const insertColumns = 15

// insertSQL returns the INSERT of rows entries. A (session, seq) already
// stored (a retry of a commit that did succeed, or a gateway repeating
// itself) is not inserted again: the first is kept, whatever the second's
// other columns (a query_sessions row added for the second's user and so
// on stays, unused).
func insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR IGNORE INTO queries (session, seq, time, query_session_id, protocol,
	statement, params, duration_us, rows, tag, outcome, sqlstate, error, rule, masked) VALUES `)
	row := "(?" + strings.Repeat(", ?", insertColumns-1) + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// insertArgs appends e's values for insertSQL to args; session is the ID
// of e's row in query_sessions.
func insertArgs(args []any, e *Entry, session int64) []any {
	return append(args, e.Session, e.Seq, store.Nanos(e.Time), session, e.Protocol, e.Statement, e.Params,
		e.Duration.Microseconds(), e.Rows, e.Tag, e.Outcome, e.SQLState, e.Error, e.Rule, e.Masked)
}

// lastIDSQL reads the highest ID stored: the rows a transaction inserts
// after reading it are those above it (IDs are assigned in increasing
// order, and the transaction holds the write lock).
const lastIDSQL = `SELECT COALESCE(max(id), 0) FROM queries`

// indexSQL adds the statements of the rows above $1 to the full-text
// index, under their IDs: the first maxIndexedStatement characters of
// each (a huge statement is indexed by its start; it is stored whole),
// and nothing for a blank one.
var indexSQL = fmt.Sprintf(`INSERT INTO queries_fts (rowid, statement)
	SELECT id, substr(statement, 1, %d) FROM queries
	WHERE id > $1 AND trim(statement, char(9, 10, 11, 12, 13, 32)) <> ''`, maxIndexedStatement)

// insertedSQL lists the entries stored above $1, for telling which
// entries of a batch were already stored.
const insertedSQL = `SELECT session, seq FROM queries WHERE id > $1`

// statements are commit's prepared statements, prepared on the writer's
// first commit; only the writer goroutine uses them.
type statements struct {
	lastID, index, inserted *sql.Stmt
	// addSession and sessionID are addSessionSQL and sessionIDSQL
	// (sessions.go).
	addSession, sessionID *sql.Stmt
	// insert holds the INSERT of n rows under n, for n in insertRows.
	insert map[int]*sql.Stmt
}

// prepare prepares w.stmts unless they are.
func (w *Writer) prepare(ctx context.Context) error {
	if w.stmts != nil {
		return nil
	}
	s := &statements{insert: make(map[int]*sql.Stmt, len(insertRows))}
	prep := func(query string) (*sql.Stmt, error) {
		st, err := w.db.PrepareContext(ctx, query)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		return st, nil
	}
	var err error
	if s.lastID, err = prep(lastIDSQL); err != nil {
		return err
	}
	if s.index, err = prep(indexSQL); err != nil {
		return err
	}
	if s.inserted, err = prep(insertedSQL); err != nil {
		return err
	}
	if s.addSession, err = prep(addSessionSQL); err != nil {
		return err
	}
	if s.sessionID, err = prep(sessionIDSQL); err != nil {
		return err
	}
	for _, n := range insertRows {
		if s.insert[n], err = prep(insertSQL(n)); err != nil {
			return err
		}
	}
	w.stmts = s
	return nil
}

// close closes the statements prepared so far.
func (s *statements) close() {
	for _, st := range []*sql.Stmt{s.lastID, s.index, s.inserted, s.addSession, s.sessionID} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range s.insert {
		st.Close()
	}
}

// commit writes batch in one transaction: the rows of query_sessions its
// entries need and are not stored yet, the entries in queries, in order,
// then their statements in queries_fts under the same rowids. The
// query_sessions IDs it looked up are remembered only once it has
// committed: an ID inserted by a transaction that rolled back is free
// again, and would be given to another session.
func (w *Writer) commit(batch []Entry) error {
	ctx := w.ctx
	if err := w.prepare(ctx); err != nil {
		return fmt.Errorf("querylog: store %d statements: %w", len(batch), err)
	}
	var dups []string
	err := w.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := w.sessionIDs(ctx, tx, batch); err != nil {
			return err
		}
		var last int64
		if err := tx.StmtContext(ctx, w.stmts.lastID).QueryRowContext(ctx).Scan(&last); err != nil {
			return fmt.Errorf("read last id: %w", err)
		}
		var stored int64
		for rest := batch; len(rest) > 0; {
			n := insertRows[len(insertRows)-1]
			for _, r := range insertRows {
				if r <= len(rest) {
					n = r
					break
				}
			}
			w.args = w.args[:0]
			first := len(batch) - len(rest)
			for i := range rest[:n] {
				w.args = insertArgs(w.args, &rest[i], w.ids[first+i])
			}
			res, err := tx.StmtContext(ctx, w.stmts.insert[n]).ExecContext(ctx, w.args...)
			if err != nil {
				return fmt.Errorf("insert %d from %s/%d: %w", n, rest[0].Session, rest[0].Seq, err)
			}
			k, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("insert %d from %s/%d: %w", n, rest[0].Session, rest[0].Seq, err)
			}
			stored += k
			rest = rest[n:]
		}
		clear(w.args[:cap(w.args)]) // let go of the batch's strings
		if stored < int64(len(batch)) {
			var err error
			if dups, err = duplicates(ctx, tx.StmtContext(ctx, w.stmts.inserted), last, batch); err != nil {
				return err
			}
		}
		if _, err := tx.StmtContext(ctx, w.stmts.index).ExecContext(ctx, last); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		return nil
	})
	if err != nil {
		clear(w.looked)
		return fmt.Errorf("querylog: store %d statements: %w", len(batch), err)
	}
	w.remember()
	if len(dups) > 0 {
		w.log.Warn("querylog: statements already stored; kept the first", "entries", dups)
	}
	return nil
}

// duplicates returns "session/seq" of the entries of batch that inserted
// (insertedSQL) says were not stored above last: they were already.
func duplicates(ctx context.Context, inserted *sql.Stmt, last int64, batch []Entry) ([]string, error) {
	type key struct {
		session string
		seq     int64
	}
	rows, err := inserted.QueryContext(ctx, last)
	if err != nil {
		return nil, fmt.Errorf("read inserted: %w", err)
	}
	defer rows.Close()
	stored := map[key]int{}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.session, &k.seq); err != nil {
			return nil, fmt.Errorf("read inserted: %w", err)
		}
		stored[k]++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read inserted: %w", err)
	}
	var dups []string
	for i := range batch {
		k := key{batch[i].Session, batch[i].Seq}
		if stored[k] > 0 {
			stored[k]--
			continue
		}
		dups = append(dups, fmt.Sprintf("%s/%d", k.session, k.seq))
	}
	return dups, nil
}
