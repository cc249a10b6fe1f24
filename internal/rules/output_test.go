package rules

import (
	"slices"
	"strings"
	"testing"
)

func TestOutputLines(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []string // lines, then what Flush gives
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"CR LF", []string{"a\r\nb\r\n"}, []string{"a", "b"}},
		{"empty lines", []string{"\n\n"}, []string{"", ""}},
		{"partial", []string{"a\nb"}, []string{"a", "b"}},
		{"split line", []string{"ab", "c\nd", "e\n"}, []string{"abc", "de"}},
		{"colours", []string{"\x1b[1;31merror\x1b[0m: x\n"}, []string{"error: x"}},
		{"CSI split", []string{"a\x1b", "[3", "1mb\x1b[", "0m\n"}, []string{"ab"}},
		{"private CSI", []string{"\x1b[?2004ha\x1b[?25l\n"}, []string{"a"}},
		{"title BEL", []string{"\x1b]0;user@host: ~\x07$ ls\n"}, []string{"$ ls"}},
		{"title ST split", []string{"\x1b]0;ti", "tle\x1b", "\\ok\n"}, []string{"ok"}},
		{"hyperlink", []string{"\x1b]8;;https://x.io\x1b\\link\x1b]8;;\x1b\\\n"}, []string{"link"}},
		{"charset", []string{"\x1b(Bplain\x1b)0\n"}, []string{"plain"}},
		{"two-byte", []string{"\x1b7a\x1b8\x1b=b\n"}, []string{"ab"}},
		{"SS3", []string{"\x1bOAx\n"}, []string{"x"}},
		{"DCS", []string{"\x1bPq#0;2;0;0;0\x1b\\x\n"}, []string{"x"}},
		{"controls", []string{"a\x07b\x08c\td\x00\n"}, []string{"abc\td"}},
		{"progress bar", []string{"10%\r50%\r100%\n"}, []string{"10%50%100%"}},
		{"newline ends OSC", []string{"\x1b]0;-----BEGIN\nx\n"}, []string{"", "x"}},
		{"newline in CSI", []string{"a\x1b[3\nb\n"}, []string{"a", "b"}},
		{"ESC ESC", []string{"a\x1b\x1b[31mb\n"}, []string{"ab"}},
		{"UTF-8", []string{"héllo \xe2\x9c", "\x93\n"}, []string{"héllo ✓"}},
		{"pem", []string{"\x1b[32m-----BEGIN OPENSSH PRIVATE KEY-----\x1b[0m\r\n"}, []string{"-----BEGIN OPENSSH PRIVATE KEY-----"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o OutputLines
			var got []string
			add := func(line string) { got = append(got, line) }
			for _, c := range tc.chunks {
				o.Feed([]byte(c), add)
			}
			o.Flush(add)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			// Flush forgets the line.
			n := len(got)
			o.Flush(add)
			if len(got) != n {
				t.Errorf("second Flush: got %q, want nothing", got[n:])
			}
		})
	}
}

func TestOutputLinesCap(t *testing.T) {
	var o OutputLines
	var got []string
	add := func(line string) { got = append(got, line) }
	long := strings.Repeat("a", MaxOutputLine-1) + "é" + strings.Repeat("b", 100)
	o.Feed([]byte(long+"\nshort\n"), add)
	if len(got) != 2 || got[0] != strings.Repeat("a", MaxOutputLine-1) || got[1] != "short" {
		t.Errorf("got %d lines of %d bytes, want the first cut at %d before a split rune, then short", len(got), len(got[0]), MaxOutputLine-1)
	}
	// An escape string that never ends is read as text again.
	got = nil
	o.Feed([]byte("\x1b]"+strings.Repeat("x", maxOutputString+10)+"\n"), add)
	if len(got) != 1 || len(got[0]) != 10 {
		t.Errorf("got %d lines, want one of 10 bytes", len(got))
	}
}

func FuzzOutputLines(f *testing.F) {
	f.Add([]byte("\x1b[31ma\r\nb\x1b]0;x\x07c"), uint8(4))
	f.Fuzz(func(t *testing.T, p []byte, split uint8) {
		var o OutputLines
		check := func(line string) {
			if len(line) > MaxOutputLine || strings.ContainsAny(line, "\r\n\x1b") {
				t.Fatalf("got line %q, want at most %d bytes without CR, LF or ESC", line, MaxOutputLine)
			}
		}
		cut := int(split) % (len(p) + 1)
		o.Feed(p[:cut], check)
		o.Feed(p[cut:], check)
		o.Flush(check)
	})
}
