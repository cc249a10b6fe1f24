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
		toks = toks[1:]
		if hasPrefix(toks, "(") {
			end := closingParen(toks)
			if end < 0 {
				return true, true
			}
			toks = toks[end+1:]
		}
		known, paren := false, 0
		for i, t := range toks {
			switch t {
			case "(":
				paren++
			case ")":
				paren--
			case "from", "to":
				if paren != 0 || known {
					continue
				}
				known = true
				switch {
				case t == "from" && hasPrefix(toks[i+1:], "stdin"):
					in = true
				case t == "to" && hasPrefix(toks[i+1:], "stdout"):
					out = true
				}
			}
		}
		if !known {
			in, out = true, true
		}
	}
	return in, out
}
