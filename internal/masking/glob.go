package masking

import (
	"path"
	"strings"
)

// columnPattern is one Config.Columns entry, lower-cased. Patterns whose
// only metacharacter is '*' (all of Default's) are matched by matchStars,
// which never allocates and costs a few string comparisons; the rest by
// path.Match.
type columnPattern struct {
	glob      string
	starsOnly bool
}

// newColumnPattern returns the matcher for the (valid) pattern p.
func newColumnPattern(p string) columnPattern {
	p = strings.ToLower(p)
	return columnPattern{glob: p, starsOnly: !strings.ContainsAny(p, `?[\`)}
}

// match reports whether the lower-cased column name matches. '*' matches
// any run of characters including '/': column names are not paths, and a
// quoted name with a slash in it must not slip past "*password*".
func (c columnPattern) match(name string) bool {
	if c.starsOnly {
		return matchStars(c.glob, name)
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

// matchStars reports whether name matches glob, in which '*' matches any
// run of bytes and every other byte only itself. The literals between the
// first and the last '*' are found left to right: taking the leftmost
// place for each leaves the most room for the rest, so this is exact.
func matchStars(glob, name string) bool {
	first := strings.IndexByte(glob, '*')
	if first < 0 {
		return glob == name
	}
	last := strings.LastIndexByte(glob, '*')
	prefix, suffix := glob[:first], glob[last+1:]
	if len(name) < len(prefix)+len(suffix) || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return false
	}
	name = name[len(prefix) : len(name)-len(suffix)]
	for middle := glob[first:last]; middle != ""; {
		middle = middle[1:] // the '*' before the next literal
		lit := middle
		if j := strings.IndexByte(middle, '*'); j >= 0 {
			lit = middle[:j]
		}
		middle = middle[len(lit):]
		i := strings.Index(name, lit)
		if i < 0 {
			return false
		}
		name = name[i+len(lit):]
	}
	return true
}
