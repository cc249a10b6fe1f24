package recording

import "testing"

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain reason", "plain reason"},
		{"\x1b[2J\x1b[Hfake", "?[2J?[Hfake"},
		{"bell\a\r\nnew", "bell???new"},
		{"c1\u009b31m", "c1?31m"},
		{"bidi\u202eevil", "bidi?evil"},
		{"bad\xffutf8", "bad?utf8"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}
