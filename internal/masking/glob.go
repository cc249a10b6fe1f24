package masking

import (
	"path"
	"strings"
	"unicode/utf8"
)

// columnPattern is one Config.Columns entry, lower-cased. Patterns whose
// only metacharacter is '*' (all of Default's) are split into literals
// once and matched without path.Match: Plan matches every column of
// every result against every pattern, so this is the gateway's per-query
// cost. The rest go through path.Match.
type columnPattern struct {
	glob      string
	starsOnly bool
	// For starsOnly patterns: the literal before the first '*' and after
	// the last one, the literals between (in order), and whether there is
	// a '*' at all.
	prefix, suffix string
	middle         []string
	star           bool
}

// newColumnPattern returns the matcher for the valid pattern p.
func newColumnPattern(p string) columnPattern {
	p = strings.ToLower(p)
	c := columnPattern{glob: p, starsOnly: !strings.ContainsAny(p, `?[\`)}
	if !c.starsOnly {
		return c
	}
	first, last := strings.IndexByte(p, '*'), strings.LastIndexByte(p, '*')
	if first < 0 {
		c.prefix = p
		return c
	}
	c.star = true
	c.prefix, c.suffix = p[:first], p[last+1:]
	for _, lit := range strings.Split(p[first:last+1], "*") {
		if lit != "" {
			c.middle = append(c.middle, lit)
		}
	}
	return c
}

// match reports whether the lower-cased column name matches. '*' matches
// any run of characters including '/': column names are not paths, and a
// quoted name with a slash in it must not slip past "*password*".
func (c *columnPattern) match(name string) bool {
	if c.starsOnly {
		return c.matchStars(name)
	}
	if strings.Contains(name, "/") {
		// path.Match's '*' and '?' stop at '/'; NUL cannot occur in an
		// identifier, so it stands in for '/' without matching anything
		// a pattern spells out.
		name = strings.ReplaceAll(name, "/", "\x00")
	}
	ok, _ := path.Match(c.glob, name) // Validate rejected malformed patterns
	return ok
}

// matchStars matches a starsOnly pattern. The literals between the first
// and the last '*' are found left to right: taking the leftmost place for
// each leaves the most room for the rest, so this is exact.
func (c *columnPattern) matchStars(name string) bool {
	if !c.star {
		return name == c.prefix
	}
	if len(name) < len(c.prefix)+len(c.suffix) || !strings.HasPrefix(name, c.prefix) || !strings.HasSuffix(name, c.suffix) {
		return false
	}
	name = name[len(c.prefix) : len(name)-len(c.suffix)]
	for _, lit := range c.middle {
		i := strings.Index(name, lit)
		if i < 0 {
			return false
		}
		name = name[i+len(lit):]
	}
	return true
}

// likePattern returns a LIKE pattern (escape character '\\', LIKE's
// default) that the database's lower-cased form of a name matches at least
// whenever the valid path.Match pattern glob (lower-cased) matches Go's
// lower-cased form of it, in whichever locale and server encoding.
// Literal ASCII characters stay, but 'i', 'j' and 'k' match any run of at
// least one character: a Turkish locale lower-cases 'I' to a dotless 'ı';
// Go lower-cases U+0130 to 'i' and the Kelvin sign to 'k', which a
// database may leave alone or, with full case mapping (ICU), turn into two
// characters ('i' and a combining dot; Lithuanian rules do the same to
// 'I' and 'J' before an accent). A non-ASCII character, which either side
// may fold differently, matches any run of characters; so do '?' and a
// bracket expression, but at least one (one character may be several
// bytes); '*' matches any run.
func likePattern(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch {
		case c == '*':
			b.WriteByte('%')
			continue
		case c == '?':
			b.WriteString("_%")
			continue
		case c == '[':
			// A bracket expression runs to the first ']' not escaped
			// (path.Match takes no ']' unescaped inside); Validate has
			// checked it is closed.
			j := i + 1
			for ; j < len(glob) && glob[j] != ']'; j++ {
				if glob[j] == '\\' {
					j++
				}
			}
			i = j
			b.WriteString("_%")
			continue
		case c == '\\' && i+1 < len(glob):
			i++
			c = glob[i]
		}
		switch {
		case c >= utf8.RuneSelf:
			// The rest of this character's bytes, if any, belong to the
			// same run.
			for i+1 < len(glob) && !utf8.RuneStart(glob[i+1]) {
				i++
			}
			b.WriteByte('%')
		case c == 'i' || c == 'j' || c == 'k':
			b.WriteString("_%")
		case c == '%' || c == '_' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
