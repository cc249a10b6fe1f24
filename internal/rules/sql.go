package rules

import (
	"regexp"
	"slices"
	"strings"
)

// sqlStmt is one SQL statement, as sent and normalised.
type sqlStmt struct {
	orig string // as sent, trimmed
	norm string // normalised, see normalizeSQL
}

// maxSQLDepth bounds how deep splitSQL looks into the bodies of DO blocks
// and functions nested in one another.
const maxSQLDepth = 3

// codeBody matches a normalised statement whose dollar-quoted strings are
// code (a DO block, a function or procedure body) rather than data.
var codeBody = regexp.MustCompile(`^(?:do\b|create\s+(?:or\s+replace\s+)?(?:function|procedure)\b)`)

// splitSQL splits sql into statements at the semicolons outside
// comments, literals and quoted identifiers, and normalises each for
// KindSQL rules: comments (-- and nested /* */) become a space; the
// contents of string literals ('...', E'...', $tag$...$tag$) and quoted
// identifiers ("...") are removed, leaving the empty quotes; letters are
// lower-cased and runs of white space become one space. So a statement
// inside a string, as in SELECT 'drop table x', cannot hit, while
// DROP/**/TABLE "Users" reads as drop table "".
//
// The dollar-quoted bodies of DO blocks and of CREATE FUNCTION and CREATE
// PROCEDURE are code, not data: their statements follow the statement
// that holds them. Dynamic SQL (EXECUTE 'DROP ...') stays hidden, like
// any string.
//
// A statement with a backslash inside a literal reads differently when
// standard_conforming_strings is off (backslashes escape in every '...'
// string), which a session can turn on and off by means no check sees
// (set_config in a function, a pipelined SET): such SQL is split both
// ways and the statements of both readings returned, so a rule sees
// whatever the database may run. For the same reason a statement in which
// a backslash may be the second byte of a character in one of the client
// encodings that allow it (SJIS, BIG5, GBK, GB18030, JOHAB; see
// encodingReadings) is split in each of those readings too.
func splitSQL(sql string) []sqlStmt {
	out := appendSQL(nil, sql, 0, false)
	if strings.IndexByte(sql, '\\') < 0 {
		return out
	}
	add := func(sts []sqlStmt) {
		for _, st := range sts {
			if !slices.ContainsFunc(out, func(o sqlStmt) bool { return o.norm == st.norm }) {
				out = append(out, st)
			}
		}
	}
	add(appendSQL(nil, sql, 0, true))
	for _, r := range encodingReadings(sql) {
		add(appendSQL(nil, r, 0, false))
		add(appendSQL(nil, r, 0, true))
	}
	return out
}

// mbScheme is how a client encoding whose characters may hold ASCII bytes
// after the first sizes a character that starts with a byte >= 0x80
// (PostgreSQL's pg_*_mblen), and whether a backslash may follow as its
// second byte.
type mbScheme func(s string, i int) int

// mbSchemes are the client encodings in which a multibyte character can
// hide a backslash: SJIS (and SHIFT_JIS_2004), BIG5 and GBK (and UHC,
// whose second bytes exclude the backslash, so it hides none), GB18030
// (two or four bytes) and JOHAB (EUC sizes).
var mbSchemes = []mbScheme{
	func(s string, i int) int { // SJIS
		if c := s[i]; c >= 0xa1 && c <= 0xdf {
			return 1
		}
		return 2
	},
	func(string, int) int { return 2 }, // BIG5, GBK
	func(s string, i int) int { // GB18030
		if i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			return 4
		}
		return 2
	},
	func(s string, i int) int { // JOHAB
		if s[i] == 0x8f {
			return 3
		}
		return 2
	},
}

// encodingReadings returns sql as the database would lex it, after
// conversion from each client encoding in which a backslash can be part of
// a multibyte character: each such backslash becomes a byte >= 0x80 (a
// letter to the lexer, as the converted character is). PostgreSQL
// converts a query to the server's encoding before it lexes it, so in
// SJIS the bytes 0x95 0x5C are one character and the backslash a UTF-8
// reading sees, which may end or escape a literal, is not there. Vigil
// refuses these encodings, but a session could switch to one by means no
// check sees before the switch is reported; a rule must see every
// reading. Readings equal to sql are left out.
func encodingReadings(sql string) []string {
	var out []string
	for _, size := range mbSchemes {
		var b []byte
		for i := 0; i < len(sql); {
			if sql[i] < 0x80 {
				i++
				continue
			}
			n := size(sql, i)
			for j := i + 1; j < i+n && j < len(sql); j++ {
				if sql[j] == '\\' {
					if b == nil {
						b = []byte(sql)
					}
					b[j] = 0x80
				}
			}
			i += n
		}
		if b != nil && !slices.Contains(out, string(b)) {
			out = append(out, string(b))
		}
	}
	return out
}

// appendSQL appends the statements of sql to out; bsEsc reads every
// '...' string with backslash escapes (standard_conforming_strings off).
func appendSQL(out []sqlStmt, sql string, depth int, bsEsc bool) []sqlStmt {
	var (
		b      strings.Builder
		bodies []string // dollar-quoted strings of the current statement
		start  int      // of the current statement in sql
		space  bool     // white space is pending
	)
	emit := func(s string) {
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
	}
	flush := func(end int) {
		if norm := b.String(); norm != "" {
			out = append(out, sqlStmt{orig: strings.TrimSpace(sql[start:end]), norm: norm})
			if depth < maxSQLDepth && codeBody.MatchString(norm) {
				for _, body := range bodies {
					out = appendSQL(out, body, depth+1, bsEsc)
				}
			}
		}
		b.Reset()
		bodies, space = bodies[:0], false
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			// PostgreSQL ends a line comment at a line feed or a bare
			// carriage return.
			if j := strings.IndexAny(sql[i:], "\n\r"); j >= 0 {
				i += j
			} else {
				i = len(sql)
			}
			space = true
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			i = skipBlockComment(sql, i)
			space = true
		case c == '\'':
			// E'...' strings take backslash escapes.
			esc := bsEsc || i > 0 && sql[i-1]|0x20 == 'e' && (i < 2 || !isIdentByte(sql[i-2]))
			i = skipQuoted(sql, i, '\'', esc)
			emit("''")
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
			emit(`""`)
		case c == '$':
			tag := dollarTag(sql, i)
			if tag == "" || (i > 0 && isIdentByte(sql[i-1])) {
				emit("$")
				i++
				break
			}
			body := i + len(tag)
			j := strings.Index(sql[body:], tag)
			if j < 0 {
				bodies = append(bodies, sql[body:])
				i = len(sql)
			} else {
				bodies = append(bodies, sql[body:body+j])
				i = body + j + len(tag)
			}
			emit("$$")
		case c == ';':
			flush(i)
			i++
			start = i
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			i++
		default:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			i++
		}
	}
	flush(len(sql))
	return out
}

// skipBlockComment returns the index after the (nested, as in
// PostgreSQL) block comment that starts at i, or len(s) if it does not
// end.
func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(s[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// skipQuoted returns the index after the string or quoted identifier that
// starts with q at i; a doubled q is an escaped q, and so is \q when esc.
// An unterminated one runs to the end of s.
func skipQuoted(s string, i int, q byte, esc bool) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if esc {
				i++
			}
		case q:
			if i+1 < len(s) && s[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(s)
}

// dollarTag returns the dollar-quote opening tag ($$ or $name$) at i, or
// "" if there is none (as in the parameter $1).
func dollarTag(s string, i int) string {
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[i : j+1]
		case c == '_' || 'a' <= c|0x20 && c|0x20 <= 'z' || c >= 0x80:
		case '0' <= c && c <= '9' && j > i+1:
		default:
			return ""
		}
	}
	return ""
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z' || c >= 0x80
}
