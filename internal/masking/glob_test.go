package masking

import (
	"path"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

func TestStarsOnlyAgreesWithPathMatch(t *testing.T) {
	globs := []string{"", "*", "**", "***", "ssn", "a*", "*a", "a*a", "*ssn", "ssn*", "*ssn*", "*_ssn", "*a*b*", "a*b*c", "*aa*", "a**a", "*card_no*", "pass*word"}
	names := []string{"", "ssn", "ssn_x", "x_ssn", "xssnx", "ab", "ba", "aXbYc", "abc", "ac", "aa", "aaa", "a", "card_no", "my_card_no_2", "password", "pass_the_word", "passwor"}
	for _, g := range globs {
		for _, n := range names {
			want, _ := path.Match(g, n)
			c := newColumnPattern(g)
			if !c.starsOnly {
				t.Fatalf("newColumnPattern(%q): got starsOnly false, want true", g)
			}
			if got := c.match(n); got != want {
				t.Errorf("match(%q, %q): got %v, want %v", g, n, got, want)
			}
		}
	}
}

func TestColumnPattern(t *testing.T) {
	tests := []struct {
		glob string
		name string // already lower-cased, as Plan passes it
		want bool
	}{
		{"*password*", "password", true},
		{"*password*", "user_password_hash", true},
		{"*PassWord*", "password", true},
		{"*password*", "passwd", false},
		{"ssn", "ssn", true},
		{"ssn", "ssn_verified", false},
		{"*_ssn", "customer_ssn", true},
		{"*_ssn", "ssn", false},
		{"*password*", "old/password", true},
		{"card_[0-9]", "card_1", true},
		{"card_[0-9]", "card_x", false},
		{"?ard_no", "card_no", true},
		{"a?b", "a/b", true},
		{"*?b", "x/yb", true},
		{`x\*y`, "x*y", true},
		{`x\*y`, "xzy", false},
	}
	for _, tc := range tests {
		t.Run(tc.glob+" "+tc.name, func(t *testing.T) {
			c := newColumnPattern(tc.glob)
			if got := c.match(tc.name); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// likeMatch is SQL's `name LIKE pattern` (escape '\\'), for the tests.
func likeMatch(t *testing.T, pattern, name string) bool {
	t.Helper()
	var re strings.Builder
	re.WriteString(`(?s)^`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '%':
			re.WriteString(`.*`)
		case '_':
			re.WriteString(`.`)
		case '\\':
			if i+1 == len(pattern) {
				t.Fatalf("LIKE pattern %q ends with its escape character", pattern)
			}
			i++
			re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		default:
			re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	return regexp.MustCompile(re.String() + `$`).MatchString(name)
}

func TestLikePatterns(t *testing.T) {
	tests := []struct {
		glob, want string
	}{
		{"*password*", "%password%"},
		{"ssn", "ssn"},
		{"*_ssn", `%\_ssn`},
		{"*token*", "%to_%en%"},
		{"*api_key*", `%ap_%\__%ey%`},
		{"card_no%", `card\_no\%`},
		{"card_[0-9]", `card\__%`},
		{`[\]]x`, "_%x"},
		{"?ard_no", `_%ard\_no`},
		{`x\*y`, "x*y"},
		{`x\\y`, `x\\y`},
		{"*schlüssel*", "%schl%ssel%"},
	}
	for _, tc := range tests {
		t.Run(tc.glob, func(t *testing.T) {
			m := mustNew(t, Config{Columns: []string{tc.glob}})
			if got := m.LikePatterns(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := (&Masker{}).LikePatterns(); got != nil {
		t.Errorf("no column patterns: got %q", got)
	}
	// Whatever a pattern matches, its LIKE pattern matches the name as a
	// database may lower-case it: ASCII capitals only (C locale), with a
	// dotless i (Turkish), or with full case mapping (ICU: U+0130 becomes
	// i and a combining dot).
	lowers := map[string]func(string) string{
		"C": func(n string) string {
			return strings.Map(func(r rune) rune {
				if 'A' <= r && r <= 'Z' {
					return r + 'a' - 'A'
				}
				return r
			}, n)
		},
		"Turkish": func(n string) string { return strings.ToLowerSpecial(unicode.TurkishCase, n) },
		"ICU":     func(n string) string { return strings.ReplaceAll(strings.ToLower(n), "i", "i\u0307") },
	}
	globs := []string{"*password*", "*_ssn", "card_[0-9]", "card_[^0-9]x", `[\]]x`, "?ard_no", `x\*y`, "a!b%c_d",
		"*card_no*", "[a-c]*[!]", `x\\y%`, "*schlüssel*", "*token*", "*api_key*", "ssn", "a.b", "api", "é?"}
	names := []string{"password", "OLD_PASSWORD", "customer_ssn", "CUSTOMER_SSN", "card_1", "card_zx", "]x", "card_no",
		"x*y", "a!b%c_d", "my_card_no", "b!", "c]", `x\y%`, "API_SCHLÜSSEL", "api_schlüssel", "api_to\u212aen",
		"API_KEY", "AP\u0130", "ssn", "SSN", "a.b", "éz", "ÉZ", "api_token\nx", "a/b_ssn", "ÉZZ"}
	for _, g := range globs {
		m := mustNew(t, Config{Columns: []string{g}})
		like := m.LikePatterns()[0]
		for _, n := range names {
			if !m.MatchColumn(n) {
				continue
			}
			for locale, lower := range lowers {
				if !likeMatch(t, like, lower(n)) {
					t.Errorf("%q matches %q but its LIKE pattern %q does not match %q (%s)", g, n, like, lower(n), locale)
				}
			}
		}
	}
}
