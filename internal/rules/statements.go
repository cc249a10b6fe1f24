package rules

// Statements splits a simple-query string into its statements, as sent
// (trimmed), at the semicolons outside comments, literals and quoted
// identifiers; empty statements are left out. The database gateway logs
// each statement of a query string on its own.
func Statements(sql string) []string {
	var out []string
	for _, st := range appendSQL(nil, sql, maxSQLDepth, false) {
		out = append(out, st.orig)
	}
	return out
}

// CopyStreams reports whether sql holds a COPY statement that reads rows
// from the client (COPY ... FROM STDIN) and one that sends rows to it
// (COPY ... TO STDOUT), in any reading of the SQL (see splitSQL). A COPY
// statement whose direction cannot be read counts as both.
func CopyStreams(sql string) (in, out bool) {
	for _, st := range splitSQL(sql) {
		toks := sqlTokens(st.norm)
		if !hasPrefix(toks, "copy") {
			continue
		}
		_, dir, dest, ok := copyParts(toks[1:])
		switch {
		case !ok || dir == "":
			return true, true
		case dir == "from":
			in = in || hasPrefix(dest, "stdin")
		case dir == "to":
			out = out || hasPrefix(dest, "stdout")
		}
	}
	return in, out
}
