package masking

import (
	"path"
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
