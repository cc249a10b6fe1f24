package rules

import "strings"

// ReadOnlyViolation describes the first statement of a SQL string that
// may write. CheckReadOnly returns nil, not a zero ReadOnlyViolation,
// when every statement is read-only.
type ReadOnlyViolation struct {
	// Statement is the offending statement as sent, trimmed.
	Statement string
	// Reason says briefly why, for the user: "INSERT writes data",
	// "SET default_transaction_read_only changes the read-only guard".
	Reason string
}

// CheckReadOnly returns the first statement of sql that may write, or nil
// if none may. sql is a simple-query string, which may hold several
// statements, or the one statement of an extended-protocol Parse; each
// statement is checked on its normalised text (see splitSQL).
//
// The check is an allow-list, so a statement it does not know is refused:
//
//   - Queries (SELECT, VALUES, TABLE, WITH, and a query in parentheses)
//     pass unless they hold INTO (SELECT INTO creates a table), a locking
//     clause (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE),
//     or the word INSERT, UPDATE, DELETE or MERGE anywhere, as a
//     data-modifying WITH would.
//   - SHOW, FETCH, MOVE, CLOSE, LISTEN, UNLISTEN, DEALLOCATE, EXECUTE,
//     SAVEPOINT, RELEASE, COMMIT, END, ROLLBACK and ABORT pass, but not
//     COMMIT PREPARED or ROLLBACK PREPARED, which finish a transaction
//     someone else prepared. EXECUTE passes because the statement it runs
//     was checked when it was prepared (by PREPARE or a Parse message).
//   - BEGIN, START TRANSACTION, SET TRANSACTION and SET SESSION
//     CHARACTERISTICS pass unless they ask for READ WRITE.
//   - SET and RESET pass except for the parameters that guard this check
//     or the session: default_transaction_read_only,
//     transaction_read_only, session_authorization, role,
//     session_replication_role, and the two that change how SQL is read
//     and so how this check must read it, standard_conforming_strings and
//     client_encoding (SET NAMES). A quoted parameter name, RESET ALL and
//     DISCARD ALL (which does a RESET ALL) are refused too; DISCARD PLANS,
//     TEMP and SEQUENCES pass.
//   - EXPLAIN passes unless it runs the statement (ANALYZE, in either
//     syntax, unless its value is false, off or 0); then the statement
//     must pass. DECLARE passes if its query does, PREPARE if the
//     statement after AS does, COPY only as COPY ... TO STDOUT (and its
//     query, if any, must pass).
//   - Everything else is refused, naming the verb: INSERT, UPDATE,
//     DELETE, MERGE, DDL, GRANT, VACUUM, CALL, DO, LOCK, NOTIFY (which
//     writes nothing lasting, but is not reading either), and so on.
//
// Any statement is also refused if it calls, by a plain or quoted name,
// a built-in function that writes data, acts on the server or on other
// sessions, or runs SQL hidden in a string: nextval, setval, the large
// object writers (lo_import, lo_create, lowrite, ...), set_config (which
// can turn off default_transaction_read_only from a SELECT),
// pg_terminate_backend, pg_cancel_backend, pg_reload_conf, pg_notify, the
// replication slot and backup functions, dblink and query_to_xml (see
// writingFuncs). pg_advisory_lock and its family pass: they take locks
// but write nothing. So is a statement with an identifier in Unicode
// escapes (U&"..."), which could spell any of those names, and one with a
// line comment that a bare carriage return ends: PostgreSQL reads on
// after the carriage return, splitSQL only after a line feed.
//
// Functions written by users are not checked: one called from a SELECT
// runs in the upstream session, whose default_transaction_read_only=on
// stops its writes. That setting is a second line of defence, not a
// sandbox: such a function could still call set_config to turn it off
// for the transactions after it.
//
// The check reads SQL in every way PostgreSQL may (see splitSQL): with
// standard_conforming_strings on and off, and in each client encoding
// whose characters can hide a backslash (SJIS, BIG5, GBK, GB18030,
// JOHAB), since a session can switch either by means no check sees. It
// refuses SET and RESET of both; the session's start is the gateway's:
// it must not let a client's startup packet change them.
//
// A check that refuses too much is safe and one that lets too much pass
// is not, so it errs on refusing: a column named update, for one, makes a
// query fail.
func CheckReadOnly(sql string) *ReadOnlyViolation {
	for _, st := range splitSQL(sql) {
		reason := readOnlyReason(sqlTokens(st.norm), 0)
		if reason == "" {
			reason = hiddenWriteReason(st.orig)
		}
		if reason != "" {
			return &ReadOnlyViolation{Statement: st.orig, Reason: reason}
		}
	}
	return nil
}

// maxReadOnlyDepth bounds how far readOnlyReason follows a statement into
// the one it holds (EXPLAIN ANALYZE, PREPARE, COPY (query)); PostgreSQL
// nests them no deeper than two.
const maxReadOnlyDepth = 4

// refusedVerbs gives the reason for refusing the statements that start
// with a verb known to write or to act on the server.
var refusedVerbs = map[string]string{
	"insert":     "INSERT writes data",
	"update":     "UPDATE writes data",
	"delete":     "DELETE writes data",
	"merge":      "MERGE writes data",
	"truncate":   "TRUNCATE deletes data",
	"create":     "CREATE changes the schema",
	"alter":      "ALTER changes the schema",
	"drop":       "DROP changes the schema",
	"comment":    "COMMENT changes the catalog",
	"security":   "SECURITY LABEL changes the catalog",
	"grant":      "GRANT changes privileges",
	"revoke":     "REVOKE changes privileges",
	"reassign":   "REASSIGN OWNED changes ownership",
	"call":       "CALL runs a procedure, which may write",
	"do":         "DO runs code, which may write",
	"vacuum":     "VACUUM writes to tables",
	"analyze":    "ANALYZE writes statistics",
	"analyse":    "ANALYZE writes statistics",
	"cluster":    "CLUSTER rewrites a table",
	"reindex":    "REINDEX rebuilds indexes",
	"refresh":    "REFRESH MATERIALIZED VIEW writes data",
	"lock":       "LOCK takes table locks",
	"import":     "IMPORT FOREIGN SCHEMA creates tables",
	"load":       "LOAD loads a library into the server",
	"checkpoint": "CHECKPOINT writes to disk",
	"notify":     "NOTIFY sends a notification, which a read-only grant does not allow",
}

// readOnlyReason returns why the statement toks (see sqlTokens) may
// write, or "" if it cannot. depth counts the statements it is inside.
func readOnlyReason(toks []string, depth int) string {
	if len(toks) == 0 {
		return ""
	}
	if depth > maxReadOnlyDepth {
		return "statements nested this deep cannot be checked"
	}
	verb := toks[0]
	switch verb {
	case "select", "values", "table", "with", "(":
		return queryReason(toks)
	case "show", "fetch", "move", "close", "listen", "unlisten", "deallocate",
		"execute", "savepoint", "release", "end", "abort":
		return ""
	case "commit", "rollback":
		if len(toks) > 1 && toks[1] == "prepared" {
			return strings.ToUpper(verb) + " PREPARED finishes a prepared transaction, which may write"
		}
		return ""
	case "begin":
		return transactionModeReason(toks[1:], "BEGIN")
	case "start":
		if len(toks) > 1 && toks[1] == "transaction" {
			return transactionModeReason(toks[2:], "START TRANSACTION")
		}
	case "set":
		return setReason(toks[1:])
	case "reset":
		return resetReason(toks[1:])
	case "discard":
		if len(toks) > 1 {
			switch toks[1] {
			case "plans", "temp", "temporary", "sequences":
				return ""
			case "all":
				return "DISCARD ALL resets every parameter, the read-only guard among them"
			}
		}
	case "explain":
		return explainReason(toks[1:], depth)
	case "declare":
		return declareReason(toks)
	case "prepare":
		return prepareReason(toks, depth)
	case "copy":
		return copyReason(toks[1:], depth)
	}
	if r, ok := refusedVerbs[verb]; ok {
		return r
	}
	if !isIdentByte(verb[0]) {
		return "the statement may write; this grant is read-only"
	}
	if len(verb) > 32 {
		verb = verb[:32] + "..."
	}
	return strings.ToUpper(verb) + " may write; this grant is read-only"
}

// queryReason returns why the query toks may write: SELECT INTO, a
// locking clause, or a data-modifying statement in WITH. It looks at every
// word, inside parentheses too, so a column named update or delete is
// refused as well.
func queryReason(toks []string) string {
	for i, t := range toks {
		switch t {
		case "for":
			if lock := lockingClause(toks[i+1:]); lock != "" {
				return lock + " locks rows"
			}
		case "insert", "update", "delete", "merge":
			return strings.ToUpper(t) + " writes data"
		case "into":
			return "SELECT INTO creates a table"
		}
	}
	return ""
}

// lockingClause returns the locking clause ("FOR UPDATE", ...) that toks,
// the words after FOR, start, or "" if they start none.
func lockingClause(toks []string) string {
	switch {
	case hasPrefix(toks, "update"):
		return "FOR UPDATE"
	case hasPrefix(toks, "no", "key", "update"):
		return "FOR NO KEY UPDATE"
	case hasPrefix(toks, "share"):
		return "FOR SHARE"
	case hasPrefix(toks, "key", "share"):
		return "FOR KEY SHARE"
	}
	return ""
}

// isQuery reports whether toks start a query.
func isQuery(toks []string) bool {
	if len(toks) == 0 {
		return false
	}
	switch toks[0] {
	case "select", "values", "table", "with", "(":
		return true
	}
	return false
}

// transactionModeReason refuses the transaction modes toks if they ask
// for READ WRITE; what names the statement.
func transactionModeReason(toks []string, what string) string {
	for i := range toks {
		if hasPrefix(toks[i:], "read", "write") {
			return what + " READ WRITE turns off the read-only guard"
		}
	}
	return ""
}

// guardedParams are the parameters SET and RESET may not touch, and why.
var guardedParams = map[string]string{
	"default_transaction_read_only": "changes the read-only guard",
	"transaction_read_only":         "changes the read-only guard",
	"session_authorization":         "changes the user",
	"role":                          "changes the user",
	"session_replication_role":      "changes which triggers and rules fire",
	"standard_conforming_strings":   "changes how SQL is read, which this check relies on",
	"client_encoding":               "changes how SQL is read, which this check relies on",
}

// setReason checks SET; toks follow the SET.
func setReason(toks []string) string {
	i := 0
	for i < len(toks) && (toks[i] == "session" || toks[i] == "local") {
		i++
	}
	if i == len(toks) {
		return ""
	}
	switch toks[i] {
	case "transaction":
		return transactionModeReason(toks[i+1:], "SET TRANSACTION")
	case "characteristics":
		return transactionModeReason(toks[i+1:], "SET SESSION CHARACTERISTICS")
	case "authorization":
		return "SET SESSION AUTHORIZATION " + guardedParams["session_authorization"]
	case "names":
		return "SET NAMES " + guardedParams["client_encoding"]
	}
	return paramReason("SET", toks[i:])
}

// resetReason checks RESET; toks follow the RESET.
func resetReason(toks []string) string {
	switch {
	case len(toks) == 0:
		return ""
	case toks[0] == "all":
		return "RESET ALL resets the read-only guard"
	case hasPrefix(toks, "session", "authorization"):
		return "RESET SESSION AUTHORIZATION " + guardedParams["session_authorization"]
	}
	return paramReason("RESET", toks)
}

// paramReason refuses SET or RESET (verb) of a guarded parameter, or of
// one whose name is quoted and so removed by normalising. toks start with
// the name, which may be qualified (myext.setting).
func paramReason(verb string, toks []string) string {
	for j := 0; j < len(toks); j += 2 {
		if toks[j] == `""` {
			return verb + " of a quoted parameter name cannot be checked"
		}
		if j+1 == len(toks) || toks[j+1] != "." {
			break
		}
	}
	if what, ok := guardedParams[toks[0]]; ok {
		return verb + " " + toks[0] + " " + what
	}
	return ""
}

// explainReason checks EXPLAIN; toks follow the EXPLAIN. Only EXPLAIN
// ANALYZE runs the statement it explains, so only then must the statement
// pass.
func explainReason(toks []string, depth int) string {
	analyze := false
	switch {
	case hasPrefix(toks, "("):
		end := closingParen(toks)
		if end < 0 {
			return "EXPLAIN with an unclosed option list cannot be checked"
		}
		analyze = explainAnalyzes(toks[1:end])
		toks = toks[end+1:]
	case hasPrefix(toks, "analyze"), hasPrefix(toks, "analyse"):
		analyze = true
		toks = toks[1:]
		if hasPrefix(toks, "verbose") {
			toks = toks[1:]
		}
	}
	if !analyze {
		return ""
	}
	if r := readOnlyReason(toks, depth+1); r != "" {
		return "EXPLAIN ANALYZE runs the statement: " + r
	}
	return ""
}

// explainAnalyzes reports whether the EXPLAIN option list opts (inside
// the parentheses) turns ANALYZE on. An option with a quoted name counts
// as ANALYZE, since normalising removed the name, and so does a value
// other than false, off or 0, such as a quoted 'false'.
func explainAnalyzes(opts []string) bool {
	for len(opts) > 0 {
		end, depth := len(opts), 0
	scan:
		for i, t := range opts {
			switch t {
			case "(":
				depth++
			case ")":
				depth--
			case ",":
				if depth == 0 {
					end = i
					break scan
				}
			}
		}
		if opt := opts[:end]; len(opt) > 0 {
			switch opt[0] {
			case "analyze", "analyse", `""`:
				off := len(opt) == 2 && (opt[1] == "false" || opt[1] == "off" || opt[1] == "0")
				if !off {
					return true
				}
			}
		}
		if end == len(opts) {
			break
		}
		opts = opts[end+1:]
	}
	return false
}

// declareReason checks DECLARE name ... CURSOR ... FOR query.
func declareReason(toks []string) string {
	for i, t := range toks {
		if t != "cursor" {
			continue
		}
		for j := i + 1; j < len(toks); j++ {
			if toks[j] == "for" {
				if q := toks[j+1:]; isQuery(q) {
					return queryReason(q)
				}
				return "DECLARE CURSOR for anything but a query cannot be checked"
			}
		}
		break
	}
	return "DECLARE may write; this grant is read-only"
}

// prepareReason checks PREPARE name [(types)] AS statement.
func prepareReason(toks []string, depth int) string {
	if hasPrefix(toks, "prepare", "transaction") {
		return "PREPARE TRANSACTION prepares a transaction for two-phase commit"
	}
	paren := 0
	for i := 2; i < len(toks); i++ {
		switch toks[i] {
		case "(":
			paren++
		case ")":
			paren--
		case "as":
			if paren == 0 {
				return readOnlyReason(toks[i+1:], depth+1)
			}
		}
	}
	return "PREPARE without AS cannot be checked"
}

// copyReason checks COPY; toks follow the COPY. Only COPY ... TO STDOUT
// passes: COPY FROM writes a table and COPY TO a file or program writes
// on the server.
func copyReason(toks []string, depth int) string {
	query, dir, dest, ok := copyParts(toks)
	if !ok {
		return "COPY with an unclosed query cannot be checked"
	}
	if query != nil {
		if r := readOnlyReason(query, depth+1); r != "" {
			return r
		}
	}
	switch {
	case dir == "from":
		return "COPY FROM writes data"
	case dir == "to" && hasPrefix(dest, "stdout"):
		return ""
	case dir == "to" && hasPrefix(dest, "program"):
		return "COPY TO PROGRAM runs a program on the server"
	case dir == "to":
		return "COPY TO a file writes on the server"
	}
	return "COPY may write; this grant is read-only"
}

// copyParts splits the tokens that follow COPY: the query of COPY
// (query) (nil for a table), the direction (the first "from" or "to"
// outside parentheses, "" if there is none) and the tokens after it. ok
// is false when the query's parenthesis is not closed.
func copyParts(toks []string) (query []string, dir string, dest []string, ok bool) {
	if hasPrefix(toks, "(") {
		end := closingParen(toks)
		if end < 0 {
			return nil, "", nil, false
		}
		query, toks = toks[1:end], toks[end+1:]
	}
	paren := 0
	for i, t := range toks {
		switch t {
		case "(":
			paren++
		case ")":
			paren--
		case "from", "to":
			if paren == 0 {
				return query, t, toks[i+1:], true
			}
		}
	}
	return query, "", nil, true
}

// writingFuncs are the built-in functions that, called from any
// statement, write data, act on the server or on other sessions, or run
// SQL hidden in a string, with what they do. writingFuncPrefixes extends
// it to families of functions.
var writingFuncs = map[string]string{
	"nextval":                     "writes a sequence",
	"setval":                      "writes a sequence",
	"lo_import":                   "writes a large object",
	"lo_export":                   "writes a file on the server",
	"lo_unlink":                   "deletes a large object",
	"lo_create":                   "writes a large object",
	"lo_creat":                    "writes a large object",
	"lo_from_bytea":               "writes a large object",
	"lo_put":                      "writes a large object",
	"lo_truncate":                 "writes a large object",
	"lo_truncate64":               "writes a large object",
	"lowrite":                     "writes a large object",
	"set_config":                  "can change the read-only guard",
	"pg_terminate_backend":        "acts on another session",
	"pg_cancel_backend":           "acts on another session",
	"pg_reload_conf":              "acts on the server",
	"pg_notify":                   "sends a notification, which a read-only grant does not allow",
	"pg_switch_wal":               "acts on the server",
	"pg_switch_xlog":              "acts on the server",
	"pg_promote":                  "acts on the server",
	"pg_backup_start":             "acts on the server",
	"pg_backup_stop":              "acts on the server",
	"pg_start_backup":             "acts on the server",
	"pg_stop_backup":              "acts on the server",
	"pg_wal_replay_pause":         "acts on the server",
	"pg_wal_replay_resume":        "acts on the server",
	"pg_xlog_replay_pause":        "acts on the server",
	"pg_xlog_replay_resume":       "acts on the server",
	"pg_logical_emit_message":     "writes to the WAL",
	"pg_replication_slot_advance": "moves a replication slot",
	"pg_sync_replication_slots":   "writes replication slots",
	"pg_import_system_collations": "writes the catalog",
	"pg_extension_config_dump":    "writes the catalog",
	"brin_summarize_new_values":   "writes an index",
	"brin_summarize_range":        "writes an index",
	"brin_desummarize_range":      "writes an index",
	"gin_clean_pending_list":      "writes an index",
	"pg_stat_statements_reset":    "resets statistics",
	"ts_stat":                     "runs SQL hidden in a string",
}

// writingFuncPrefixes are families of functions that writingFuncs would
// have to list one by one, with what they do.
var writingFuncPrefixes = []struct{ prefix, what string }{
	{"dblink", "may write through another connection"},
	{"pg_background", "runs SQL in another session"},
	{"query_to_xml", "runs SQL hidden in a string"},
	{"pg_stat_reset", "resets statistics"},
	{"pg_create_", "acts on the server"}, // restore points, replication slots
	{"pg_drop_", "acts on the server"},
	{"pg_copy_", "acts on the server"},
	{"pg_replication_origin_", "acts on replication"},
	{"pg_logical_slot_get_", "consumes a replication slot"},
	{"pg_rotate_logfile", "acts on the server"},
	{"pg_file_", "writes a file on the server"}, // adminpack
	{"binary_upgrade_", "writes the catalog"},
	{"pg_restore_", "writes statistics"},
	{"pg_clear_", "writes statistics"},
	{"pg_set_", "writes statistics"},
}

// writingFunc returns why calling the function name (lower-case, without
// its schema) is refused, or "" if it is not.
func writingFunc(name string) string {
	if what, ok := writingFuncs[name]; ok {
		return name + "() " + what
	}
	for _, p := range writingFuncPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return name + "() " + p.what
		}
	}
	return ""
}

// hiddenWriteReason scans stmt, one statement as sent, for what
// normalising hides from readOnlyReason: a call to one of writingFuncs,
// by a plain or a quoted name (normalising empties "nextval" to two
// double quotes); an
// identifier with Unicode escapes (U&"..."), which could spell any name;
// and a line comment that a bare carriage return ends, which PostgreSQL
// ends there but splitSQL only at a line feed, so that SQL after the
// carriage return would be hidden. It reads comments, literals and
// quoted identifiers as splitSQL does, with its helpers.
func hiddenWriteReason(stmt string) string {
	var (
		name   string // the last identifier, lower-cased
		called bool   // nothing but space and comments since name
	)
	for i := 0; i < len(stmt); {
		c := stmt[i]
		switch {
		case c == '-' && strings.HasPrefix(stmt[i:], "--"):
			end := len(stmt)
			if j := strings.IndexByte(stmt[i:], '\n'); j >= 0 {
				end = i + j
			}
			if j := strings.IndexByte(stmt[i:end], '\r'); j >= 0 && strings.Trim(stmt[i+j:end], " \t\r\f\v") != "" {
				return "a line comment ended by a bare carriage return hides SQL from this check"
			}
			i = end
		case c == '/' && strings.HasPrefix(stmt[i:], "/*"):
			i = skipBlockComment(stmt, i)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '\'':
			esc := i > 0 && stmt[i-1]|0x20 == 'e' && (i < 2 || !isIdentByte(stmt[i-2]))
			i = skipQuoted(stmt, i, '\'', esc)
			called = false
		case c == '"':
			if i >= 2 && stmt[i-1] == '&' && stmt[i-2]|0x20 == 'u' && (i < 3 || !isIdentByte(stmt[i-3])) {
				return `an identifier with Unicode escapes (U&"...") cannot be checked`
			}
			j := skipQuoted(stmt, i, '"', false)
			quoted := stmt[i+1 : j]
			if strings.HasSuffix(quoted, `"`) {
				quoted = quoted[:len(quoted)-1]
			}
			name = strings.ToLower(strings.ReplaceAll(quoted, `""`, `"`))
			called = true
			i = j
		case c == '$' && dollarTag(stmt, i) != "":
			tag := dollarTag(stmt, i)
			body := i + len(tag)
			if j := strings.Index(stmt[body:], tag); j >= 0 {
				i = body + j + len(tag)
			} else {
				i = len(stmt)
			}
			called = false
		case isIdentByte(c):
			j := i + 1
			for j < len(stmt) && isIdentByte(stmt[j]) {
				j++
			}
			name = strings.ToLower(stmt[i:j])
			called = true
			i = j
		case c == '(':
			if called {
				if r := writingFunc(name); r != "" {
					return r
				}
			}
			called = false
			i++
		default:
			called = false
			i++
		}
	}
	return ""
}

// sqlTokens splits a normalised statement into words (keywords,
// identifiers, numbers, $1), the emptied string literal (two single
// quotes) and quoted identifier (two double quotes), and single
// characters of punctuation.
func sqlTokens(norm string) []string {
	var toks []string
	for i := 0; i < len(norm); {
		c := norm[i]
		switch {
		case c == ' ':
			i++
		case isIdentByte(c):
			j := i + 1
			for j < len(norm) && isIdentByte(norm[j]) {
				j++
			}
			toks = append(toks, norm[i:j])
			i = j
		case (c == '\'' || c == '"') && i+1 < len(norm) && norm[i+1] == c:
			toks = append(toks, norm[i:i+2])
			i += 2
		default:
			toks = append(toks, norm[i:i+1])
			i++
		}
	}
	return toks
}

// hasPrefix reports whether toks start with words.
func hasPrefix(toks []string, words ...string) bool {
	if len(toks) < len(words) {
		return false
	}
	for i, w := range words {
		if toks[i] != w {
			return false
		}
	}
	return true
}

// closingParen returns the index of the parenthesis that closes the one
// toks start with, or -1 if it is not closed.
func closingParen(toks []string) int {
	depth := 0
	for i, t := range toks {
		switch t {
		case "(":
			depth++
		case ")":
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
