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
