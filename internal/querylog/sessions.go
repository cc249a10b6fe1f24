package querylog

import (
	"context"
	"database/sql"
	"fmt"
)

// maxCachedSessions bounds the writer's sessionCache: the sessions whose
// query_sessions IDs it remembers. Each costs some 200 bytes. A gateway
// with more sessions logging statements at once than that looks some up
// again in each transaction (two statements a session), which is slower
// but correct.
const maxCachedSessions = 4096

// addSessionSQL stores a session's row of query_sessions unless it is
// stored already (the unique query_sessions_tuple); sessionIDSQL then
// reads its ID. Both take sessionKey.args.
const (
	addSessionSQL = `INSERT OR IGNORE INTO query_sessions (session, subject, target, login, database, source)
	VALUES (?, ?, ?, ?, ?, ?)`
	sessionIDSQL = `SELECT id FROM query_sessions
	WHERE session = ? AND subject = ? AND target = ? AND login = ? AND database = ? AND source = ?`
)

// sessionKey is a row of query_sessions: the columns of an entry that are
// constant in its session. An entry that disagrees with the others of its
// session on one of them has a row of its own, so nothing is lost.
type sessionKey struct {
	session, user, target, login, database, source string
}

// keyOf returns e's sessionKey.
func keyOf(e *Entry) sessionKey {
	return sessionKey{e.Session, e.User, e.Target, e.Login, e.Database, e.Source}
}

// args returns k as the values of addSessionSQL and sessionIDSQL.
func (k sessionKey) args() []any {
	return []any{k.session, k.user, k.target, k.login, k.database, k.source}
}

// sessionCache maps sessionKeys to their IDs in query_sessions, for IDs
// that are committed (see Writer.commit): rows of query_sessions are
// never deleted, so such an ID stays right. It holds at most limit keys
// in two generations: a key is added to cur; when cur holds limit/2, it
// becomes prev (the old prev is dropped) and cur starts empty; a key
// found in prev is added to cur again. A session that keeps logging so
// stays, one that ended is forgotten. With a zero limit it keeps two
// keys at most. It is not safe for concurrent use (the writer goroutine
// owns it).
type sessionCache struct {
	limit     int
	cur, prev map[sessionKey]int64
}

// get returns k's ID, if c has it.
func (c *sessionCache) get(k sessionKey) (int64, bool) {
	if id, ok := c.cur[k]; ok {
		return id, true
	}
	id, ok := c.prev[k]
	if ok {
		c.put(k, id)
	}
	return id, ok
}

// put records k's ID, which must be committed.
func (c *sessionCache) put(k sessionKey, id int64) {
	if c.cur == nil {
		c.cur, c.prev = map[sessionKey]int64{}, map[sessionKey]int64{}
	}
	if len(c.cur) >= max(c.limit/2, 1) {
		clear(c.prev)
		c.prev, c.cur = c.cur, c.prev
	}
	c.cur[k] = id
}

// len returns how many keys c holds (a key in both generations counts
// twice).
func (c *sessionCache) len() int {
	return len(c.cur) + len(c.prev)
}

// sessionIDs sets w.ids[i] to the ID in query_sessions of batch[i]'s
// sessionKey, storing the rows that are missing, in tx. The IDs it did
// not have in w.sessions go in w.looked, for remember to add once tx has
// committed.
func (w *Writer) sessionIDs(ctx context.Context, tx *sql.Tx, batch []Entry) error {
	clear(w.looked)
	w.ids = w.ids[:0]
	var add, find *sql.Stmt
	for i := range batch {
		k := keyOf(&batch[i])
		id, ok := w.sessions.get(k)
		if !ok {
			id, ok = w.looked[k]
		}
		if !ok {
			if add == nil {
				add, find = tx.StmtContext(ctx, w.stmts.addSession), tx.StmtContext(ctx, w.stmts.sessionID)
			}
			args := k.args()
			if _, err := add.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("add session %s: %w", k.session, err)
			}
			if err := find.QueryRowContext(ctx, args...).Scan(&id); err != nil {
				return fmt.Errorf("look up session %s: %w", k.session, err)
			}
			w.looked[k] = id
		}
		w.ids = append(w.ids, id)
	}
	return nil
}

// remember adds the IDs sessionIDs looked up to w.sessions, once the
// transaction that looked them up has committed.
func (w *Writer) remember() {
	for k, id := range w.looked {
		w.sessions.put(k, id)
	}
	clear(w.looked)
}
