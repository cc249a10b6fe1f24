package rules

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
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
// DROP/**/TABLE "Users" reads as drop table "". A quoted identifier
// called as a function, as in "pg_read_file"('x') or U&"pg\005fread_file"(…),
// reads as the bare name when the database would read that the same way
// (see calledName), so rules on function names see it.
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
			name, next := calledName(sql, i, skipQuoted(sql, i, '"', false))
			emit(name)
			i = next
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

// reservedWords are PostgreSQL's fully reserved key words: never a
// function's name unquoted, so a quoted one keeps its quotes (a function
// a user named "where" must not read as the key word, which rules'
// Unless patterns look for).
var reservedWords = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true, "asc": true,
	"asymmetric": true, "both": true, "case": true, "cast": true, "check": true, "collate": true, "column": true,
	"constraint": true, "create": true, "current_catalog": true, "current_date": true, "current_role": true,
	"current_time": true, "current_timestamp": true, "current_user": true, "default": true, "deferrable": true,
	"desc": true, "distinct": true, "do": true, "else": true, "end": true, "except": true, "false": true,
	"fetch": true, "for": true, "foreign": true, "from": true, "grant": true, "group": true, "having": true,
	"in": true, "initially": true, "intersect": true, "into": true, "lateral": true, "leading": true,
	"limit": true, "localtime": true, "localtimestamp": true, "not": true, "null": true, "offset": true,
	"on": true, "only": true, "or": true, "order": true, "placing": true, "primary": true, "references": true,
	"returning": true, "select": true, "session_user": true, "some": true, "symmetric": true, "system_user": true,
	"table": true, "then": true, "to": true, "trailing": true, "true": true, "union": true, "unique": true,
	"user": true, "using": true, "variadic": true, "when": true, "where": true, "window": true, "with": true,
}

// calledName is the normalised form of the quoted identifier sql[i:j]
// (i at its opening quote), and where reading goes on after it: `""`,
// or, when it is called as a function (a "(" follows) and names what the
// bare name would (letters, digits, _ and $, not a reserved word), that
// name lower-cased. A U&"..." identifier's escapes (\XXXX, \+XXXXXX, or
// those of its UESCAPE character) are decoded first; one that cannot be
// decoded stays `""`. A UESCAPE clause is read with the name. Case is
// folded although the database would not fold it: a rule may hit a name
// that differs only in case (fail closed), never miss one.
func calledName(sql string, i, j int) (string, int) {
	k := skipSpace(sql, j)
	if k >= len(sql) || j <= i+1 || sql[j-1] != '"' {
		return `""`, j
	}
	name := strings.ReplaceAll(sql[i+1:j-1], `""`, `"`)
	if i >= 2 && sql[i-1] == '&' && sql[i-2]|0x20 == 'u' && (i < 3 || !isIdentByte(sql[i-3])) {
		esc := byte('\\')
		if k+7 <= len(sql) && strings.EqualFold(sql[k:k+7], "uescape") && (k+7 == len(sql) || !isIdentByte(sql[k+7])) {
			q := skipSpace(sql, k+7)
			if q+3 > len(sql) || sql[q] != '\'' || sql[q+2] != '\'' || strings.IndexByte("'\"+ \t\n\r\f\v0123456789abcdefABCDEF", sql[q+1]) >= 0 {
				return `""`, j // the database refuses it
			}
			esc, j, k = sql[q+1], q+3, skipSpace(sql, q+3)
		}
		var ok bool
		if name, ok = unicodeUnescape(name, esc); !ok {
			return `""`, j
		}
	}
	if k >= len(sql) || sql[k] != '(' || name == "" || '0' <= name[0] && name[0] <= '9' || name[0] == '$' {
		return `""`, j
	}
	for x := 0; x < len(name); x++ {
		if !isIdentByte(name[x]) {
			return `""`, j
		}
	}
	name = strings.ToLower(name)
	if reservedWords[name] {
		return `""`, j
	}
	return name, j
}

// skipSpace returns the index of the first byte at or after i that is
// neither white space nor in a comment.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0:
			i++
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexAny(s[i:], "\n\r")
			if j < 0 {
				return len(s)
			}
			i += j
		case strings.HasPrefix(s[i:], "/*"):
			i = skipBlockComment(s, i)
		default:
			return i
		}
	}
	return i
}

// unicodeUnescape decodes the escapes of a U&"..." identifier's text:
// esc followed by 4 hex digits, or by + and 6, or a doubled esc. A
// malformed escape, or one naming no character, reports false.
func unicodeUnescape(s string, esc byte) (string, bool) {
	if strings.IndexByte(s, esc) < 0 {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != esc {
			b.WriteByte(s[i])
			continue
		}
		n := 4
		switch {
		case i+1 < len(s) && s[i+1] == esc:
			b.WriteByte(esc)
			i++
			continue
		case i+1 < len(s) && s[i+1] == '+':
			n = 6
			i++
		}
		if i+n >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
		if err != nil || v == 0 || v > unicode.MaxRune || 0xD800 <= v && v <= 0xDFFF {
			return "", false
		}
		b.WriteRune(rune(v))
		i += n
	}
	return b.String(), true
}
