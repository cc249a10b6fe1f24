package masking

import (
	"path"
	"regexp"
	"strings"
	"testing"
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
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return regexp.MustCompile(re.String() + `$`).MatchString(name)
}

func TestLikePattern(t *testing.T) {
	tests := []struct {
		glob, want string
	}{
		{"*password*", "%password%"},
		{"ssn", "ssn"},
		{"*_ssn", `%\_ssn`},
		{"card_no%", `card\_no\%`},
		{"a!b", "a!b"},
		{"card_[0-9]", `card\__`},
		{"card_[^0-9]x", `card\__x`},
		{`[\]]x`, "_x"},
		{"?ard_no", `_ard\_no`},
		{`x\*y`, "x*y"},
		{`x\?y\_`, `x?y\_`},
		{`x\\y`, `x\\y`},
	}
	for _, tc := range tests {
		t.Run(tc.glob, func(t *testing.T) {
			if err := (Config{Columns: []string{tc.glob}}).Validate(); err != nil {
				t.Fatal(err)
			}
			if got := likePattern(tc.glob); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// Whatever a pattern matches, its LIKE pattern matches too.
	globs := []string{"*password*", "*_ssn", "card_[0-9]", "card_[^0-9]x", `[\]]x`, "?ard_no", `x\*y`, "a!b%c_d", "*card_no*", "[a-c]*[!]", `x\\y%`}
	names := []string{"password", "old_password", "customer_ssn", "card_1", "card_zx", "]x", "card_no", "x*y", "a!b%c_d", "my_card_no", "b!", "c]", `x\y%`}
	for _, g := range globs {
		m := mustNew(t, Config{Columns: []string{g}})
		like := m.LikePatterns()[0]
		for _, n := range names {
			if m.MatchColumn(n) && !likeMatch(t, like, n) {
				t.Errorf("%q matches %q but its LIKE pattern %q does not", g, n, like)
			}
		}
	}
}
