package rules

import (
	"strings"
	"testing"
)

// submission is a line LineEditor returned.
type submission struct {
	line      string
	uncertain bool
}

// feedAll feeds each chunk to e in turn and returns what it submitted.
func feedAll(t testing.TB, e *LineEditor, chunks ...string) []submission {
	t.Helper()
	var out []submission
	for _, c := range chunks {
		p := []byte(c)
		for len(p) > 0 {
			n, line, ok := e.Feed(p)
			if n <= 0 || n > len(p) {
				t.Fatalf("Feed(%q): got n = %d, want 1..%d", p, n, len(p))
			}
			if ok {
				out = append(out, submission{line, e.Uncertain()})
			} else if n != len(p) {
				t.Fatalf("Feed(%q): got n = %d without a line, want %d", p, n, len(p))
			}
			p = p[n:]
		}
	}
	return out
}

const (
	left      = "\x1b[D"
	right     = "\x1b[C"
	up        = "\x1b[A"
	down      = "\x1b[B"
	home      = "\x1b[H"
	endKey    = "\x1b[F"
	del       = "\x1b[3~"
	ctrlLeft  = "\x1b[1;5D"
	ctrlRight = "\x1b[1;5C"
	pasteOn   = "\x1b[200~"
	pasteOff  = "\x1b[201~"
)

func TestLineEditor(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []submission
	}{
		{"plain", []string{"ls -la\r"}, []submission{{"ls -la", false}}},
		{"LF", []string{"ls\n"}, []submission{{"ls", false}}},
		{"CR LF is one Enter", []string{"ls\r\npwd\r\n"}, []submission{{"ls", false}, {"pwd", false}}},
		{"CR then LF later", []string{"ls\r", "\n", "\r"}, []submission{{"ls", false}, {"", false}}},
		{"empty", []string{"\r"}, []submission{{"", false}}},
		{"nothing yet", []string{"rm -rf /"}, nil},
		{"UTF-8", []string{"echo héllo wörld\r"}, []submission{{"echo héllo wörld", false}}},
		{"UTF-8 split", []string{"echo h\xc3", "\xa9\r"}, []submission{{"echo hé", false}}},

		{"backspace", []string{"lsx\x7f\r"}, []submission{{"ls", false}}},
		{"ctrl-h", []string{"lsx\x08\r"}, []submission{{"ls", false}}},
		{"backspace rune", []string{"echo é\x7f\r"}, []submission{{"echo ", false}}},
		{"backspace at start", []string{"\x7f\x7fls\r"}, []submission{{"ls", false}}},
		{"ctrl-u", []string{"rm -rf /\x15ls\r"}, []submission{{"ls", false}}},
		{"ctrl-u mid", []string{"xxls" + left + left + "\x15\r"}, []submission{{"ls", false}}},
		{"ctrl-k", []string{"ls -la" + left + left + left + "\x0b\r"}, []submission{{"ls ", false}}},
		{"ctrl-w", []string{"rm -rf /tmp/x\x17\r"}, []submission{{"rm -rf ", false}}},
		{"ctrl-w spaces", []string{"rm -rf   \x17\r"}, []submission{{"rm ", false}}},
		{"ctrl-c", []string{"rm -rf /\x03ls\r"}, []submission{{"ls", false}}},
		{"ctrl-g", []string{"rm -rf /\x07\r"}, []submission{{"", false}}},
		{"ctrl-c clears uncertain", []string{"x\t\x03ls\r"}, []submission{{"ls", false}}},

		{"ctrl-a", []string{"rf /\x01rm -\r"}, []submission{{"rm -rf /", false}}},
		{"home CSI", []string{"rf /" + home + "rm -\r"}, []submission{{"rm -rf /", false}}},
		{"home tilde", []string{"rf /\x1b[1~rm -\r"}, []submission{{"rm -rf /", false}}},
		{"home 7", []string{"rf /\x1b[7~rm -\r"}, []submission{{"rm -rf /", false}}},
		{"home SS3", []string{"rf /\x1bOHrm -\r"}, []submission{{"rm -rf /", false}}},
		{"ctrl-e", []string{"rm -rf\x01\x05 /\r"}, []submission{{"rm -rf /", false}}},
		{"end CSI", []string{"rm -rf" + home + endKey + " /\r"}, []submission{{"rm -rf /", false}}},
		{"end tilde", []string{"rm -rf\x01\x1b[4~ /\r"}, []submission{{"rm -rf /", false}}},
		{"end SS3", []string{"rm -rf\x01\x1bOF /\r"}, []submission{{"rm -rf /", false}}},

		{"ctrl-b ctrl-f", []string{"rm -f /\x02\x02\x02r\x06\x06X\r"}, []submission{{"rm -rf X/", false}}},
		{"arrows", []string{"rm -f /" + left + left + left + "r" + right + right + "X\r"}, []submission{{"rm -rf X/", false}}},
		{"arrows SS3", []string{"rm -f /\x1bOD\x1bOD\x1bODr\x1bOC\x1bOCX\r"}, []submission{{"rm -rf X/", false}}},
		{"left past start", []string{"s" + left + left + left + "l\r"}, []submission{{"ls", false}}},
		{"right past end", []string{"l" + right + right + "s\r"}, []submission{{"ls", false}}},
		{"left over rune", []string{"é" + left + "x\r"}, []submission{{"xé", false}}},
		{"ctrl-left", []string{"rm /tmp/x" + ctrlLeft + ctrlLeft + "-rf \r"}, []submission{{"rm /-rf tmp/x", false}}},
		{"ctrl-left words", []string{"rm tmp" + ctrlLeft + "-rf \r"}, []submission{{"rm -rf tmp", false}}},
		{"ctrl-right", []string{"rm /tmp/x" + home + ctrlRight + " -rf\r"}, []submission{{"rm -rf /tmp/x", false}}},
		{"alt arrows", []string{"b c" + "\x1b[1;3D" + "a \r"}, []submission{{"b a c", false}}},
		{"alt-b", []string{"rm /tmp/x\x1bb\x1bb\x1bb\x1bf -rf\r"}, []submission{{"rm -rf /tmp/x", false}}},
		{"alt-f", []string{"rm /tmp/x\x01\x1bf -rf\r"}, []submission{{"rm -rf /tmp/x", false}}},
		{"rxvt ctrl-left", []string{"a b\x1bOdX\r"}, []submission{{"a Xb", false}}},
		{"alt-d", []string{"rm -rf /tmp\x01\x1bf\x1bd\r"}, []submission{{"rm /tmp", false}}},
		{"alt-d twice", []string{"echo foo bar baz\x01\x1bf\x1bd\x1bd\r"}, []submission{{"echo baz", false}}},
		{"alt-backspace", []string{"rm -rf /tmp\x1b\x7f\r"}, []submission{{"rm -rf /", false}}},
		{"alt-ctrl-h", []string{"rm -rf /tmp\x1b\x08\r"}, []submission{{"rm -rf /", false}}},
		{"delete", []string{"rmx -rf" + home + right + right + del + "\r"}, []submission{{"rm -rf", false}}},
		{"delete at end", []string{"ls" + del + "\r"}, []submission{{"ls", false}}},
		{"ctrl-d", []string{"rmx\x02\x04\r"}, []submission{{"rm", false}}},
		{"ctrl-d empty", []string{"\x04ls\r"}, []submission{{"ls", false}}},

		{"yank", []string{"rm -rf /\x15ls; \x19\r"}, []submission{{"ls; rm -rf /", false}}},
		{"yank backward kills", []string{"a b c\x17\x17\x19\x19\r"}, []submission{{"a b cb c", false}}},
		{"yank forward kills", []string{"a b c\x01\x1bd\x1bd\x05 \x19\r"}, []submission{{" c a b", false}}},
		{"transpose", []string{"sl\x14\r"}, []submission{{"ls", false}}},
		{"transpose mid", []string{"mr -rf" + home + right + "\x14\r"}, []submission{{"rm -rf", false}}},
		{"upcase", []string{"rm\x01\x1bu\r"}, []submission{{"RM", false}}},
		{"downcase", []string{"RM -rf /\x01\x1bl\r"}, []submission{{"rm -rf /", false}}},
		{"capitalize", []string{"rM\x01\x1bc\r"}, []submission{{"Rm", false}}},
		{"quoted insert", []string{"a\x16\x03b\r"}, []submission{{"a\x03b", false}}},
		{"insert comment", []string{"rm -rf /\x1b#"}, []submission{{"#rm -rf /", false}}},
		{"ignored controls", []string{"l\x0c\x1a\x00s\r"}, []submission{{"ls", false}}},

		{"history up", []string{"ls /etc\r", up + "\r"}, []submission{{"ls /etc", false}, {"ls /etc", false}}},
		{"history up SS3", []string{"ls\r", "\x1bOA\r"}, []submission{{"ls", false}, {"ls", false}}},
		{"history ctrl-p", []string{"ls\r", "pwd\r", "\x10\x10\r"}, []submission{{"ls", false}, {"pwd", false}, {"ls", false}}},
		{"history down", []string{"a\r", "b\r", up + up + down + "\r"}, []submission{{"a", false}, {"b", false}, {"b", false}}},
		{"history ctrl-n", []string{"a\r", "b\r", "\x10\x10\x0e\r"}, []submission{{"a", false}, {"b", false}, {"b", false}}},
		{"history down SS3", []string{"a\r", "b\r", up + up + "\x1bOB\r"}, []submission{{"a", false}, {"b", false}, {"b", false}}},
		{"history draft", []string{"a\r", "rm -rf" + up + down + " /\r"}, []submission{{"a", false}, {"rm -rf /", false}}},
		{"history edit", []string{"ls /tmp\r", up + "\x17/etc\r"}, []submission{{"ls /tmp", false}, {"ls /etc", false}}},
		{"history edit kept", []string{"a\r", "b\r", up + "X" + up + down + "\r"}, []submission{{"a", false}, {"b", false}, {"bX", false}}},
		{"history edit reverted", []string{"a\r", "b\r", up + "X\x03" + up + "\r"}, []submission{{"a", false}, {"b", false}, {"b", false}}},
		{"history unknown", []string{up + "\r"}, []submission{{"", true}}},
		{"history unknown typed", []string{"ls\r", up + up + " -rf /\r"}, []submission{{"ls", false}, {" -rf /", true}}},
		{"history unknown and back", []string{"ls\r", up + up + down + "\r"}, []submission{{"ls", false}, {"ls", false}}},
		{"history down at bottom", []string{"ls" + down + "\r"}, []submission{{"ls", false}}},
		{"history uncertain entry", []string{"a\t\r", up + "\r"}, []submission{{"a", true}, {"a", true}}},
		{"history skips empty", []string{"a\r", "\r", up + "\r"}, []submission{{"a", false}, {"", false}, {"a", false}}},
		{"operate and get next", []string{"a\r", "b\r", up + up + "\x0f", "\r"}, []submission{{"a", false}, {"b", false}, {"a", false}, {"b", true}}},

		{"operate and get next, then down", []string{up + "0\x0f", "\x0e\r"}, []submission{{"0", true}, {"", true}}},

		{"tab", []string{"cat /etc/pas\t\r"}, []submission{{"cat /etc/pas", true}}},
		{"reverse search", []string{"\x12rm\r"}, []submission{{"rm", true}}},
		{"uncertain is per line", []string{"a\t\r", "b\r"}, []submission{{"a", true}, {"b", false}}},
		{"ctrl-x", []string{"ls\x18\x05\r"}, []submission{{"ls", true}}},
		{"alt unknown", []string{"ls \x1b.\r"}, []submission{{"ls ", true}}},
		{"alt digit", []string{"\x1b5x\r"}, []submission{{"x", true}}},
		{"alt enter", []string{"ls\x1b\r"}, []submission{{"ls", true}}},

		{"paste", []string{pasteOn + "rm -rf /" + pasteOff + "\r"}, []submission{{"rm -rf /", false}}},
		{"paste newlines", []string{pasteOn + "ls\rrm -rf /\n" + pasteOff + "\r"}, []submission{{"ls\nrm -rf /\n", false}}},
		{"paste controls", []string{pasteOn + "a\x03\x7fb" + pasteOff + "\r"}, []submission{{"a\x03\x7fb", false}}},
		{"paste split", []string{"\x1b[20", "0~ls\r", "x\x1b[2", "01", "~\r"}, []submission{{"ls\nx", false}}},
		{"paste ESC inside", []string{pasteOn + "a\x1b[20\x1b[201~\r"}, []submission{{"a\x1b[20", false}}},
		{"paste end without start", []string{"ls" + pasteOff + "\r"}, []submission{{"ls", false}}},

		{"CSI split", []string{"rm -f /\x1b", "[", "D", "\x1b[", "D\x1b[D", "r\r"}, []submission{{"rm -rf /", false}}},
		{"SS3 split", []string{"s\x1b", "O", "Dl\r"}, []submission{{"ls", false}}},
		{"function keys ignored", []string{"l\x1b[15~\x1b[24;2~\x1bOPs\r"}, []submission{{"ls", false}}},
		{"focus and reports ignored", []string{"l\x1b[I\x1b[O\x1b[12;40Rs\r"}, []submission{{"ls", false}}},
		{"OSC ignored", []string{"l\x1b]11;rgb:0000/0000/0000\x07s\r"}, []submission{{"ls", false}}},
		{"OSC ST split", []string{"l\x1b]11;rgb:0", "000\x1b", "\\s\r"}, []submission{{"ls", false}}},
		{"DCS ignored", []string{"l\x1bP1+r544e\x1b\\s\r"}, []submission{{"ls", false}}},
		{"OSC cut by Enter", []string{"\x1b]rm -rf /\r"}, []submission{{"", true}}},
		{"CSI cut by Enter", []string{"ls\x1b[1\r"}, []submission{{"ls", true}}},
		{"X10 mouse", []string{"l\x1b[M !!s\r"}, []submission{{"ls", false}}},
		{"SGR mouse", []string{"l\x1b[<0;10;5Ms\r"}, []submission{{"ls", false}}},
		{"keypad enter", []string{"ls\x1bOM"}, []submission{{"ls", false}}},
		{"lone escape", []string{"\x1b\x1bb"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e LineEditor
			got := feedAll(t, &e, tc.chunks...)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("line %d: got %q (uncertain %v), want %q (uncertain %v)", i, got[i].line, got[i].uncertain, tc.want[i].line, tc.want[i].uncertain)
				}
			}
		})
	}
}

func TestLineEditorFeedCount(t *testing.T) {
	var e LineEditor
	p := []byte("ls\rpwd\r\nwho")
	for _, want := range []struct {
		n    int
		line string
		ok   bool
	}{{3, "ls", true}, {4, "pwd", true}, {4, "", false}} {
		n, line, ok := e.Feed(p)
		if n != want.n || line != want.line || ok != want.ok {
			t.Errorf("Feed(%q): got %d %q %v, want %d %q %v", p, n, line, ok, want.n, want.line, want.ok)
		}
		p = p[n:]
	}
	if got := feedAll(t, &e, "\r"); len(got) != 1 || got[0].line != "who" {
		t.Errorf("got %+v, want who", got)
	}
}

func TestLineEditorReset(t *testing.T) {
	tests := []struct {
		name   string
		before []string // fed before Reset
		after  []string // fed after
		want   []submission
	}{
		{"typed line", []string{"ls\r", "rm -rf /\t"}, []string{"pwd\r", up + "\r"}, []submission{{"pwd", false}, {"pwd", false}}},
		{"held-back line leaves history", []string{"ls\r", "rm -rf /\r"}, []string{up + "\r"}, []submission{{"ls", false}}},
		{"run line stays", []string{"ls\r", "x"}, []string{up + "\r"}, []submission{{"ls", false}}},
		{"yank after reset", []string{"rm -rf /\r"}, []string{"\x19\r"}, []submission{{"rm -rf /", true}}},
		{"yank after own kill", []string{"rm -rf /\r"}, []string{"ls\x15\x19\r"}, []submission{{"ls", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e LineEditor
			feedAll(t, &e, tc.before...)
			e.Reset()
			got := feedAll(t, &e, tc.after...)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %+v, want %+v", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestLineEditorOverflow(t *testing.T) {
	var e LineEditor
	long := strings.Repeat("a", MaxLine+100)
	got := feedAll(t, &e, long, "\r", "ls\r")
	if len(got) != 2 || got[0].line != long[:MaxLine] || !got[0].uncertain || got[1] != (submission{"ls", false}) {
		t.Errorf("got %d lines, first %d bytes uncertain %v, want %d bytes uncertain, then ls", len(got), len(got[0].line), got[0].uncertain, MaxLine)
	}
	e = LineEditor{}
	got = feedAll(t, &e, pasteOn+long+pasteOff+"\r")
	if len(got) != 1 || len(got[0].line) != MaxLine || !got[0].uncertain {
		t.Errorf("paste: got %d lines, want one of %d bytes, uncertain", len(got), MaxLine)
	}
}

func TestLineEditorHistoryLimit(t *testing.T) {
	var e LineEditor
	for i := range maxHistory + 10 {
		feedAll(t, &e, strings.Repeat("x", i%7)+"y\r")
	}
	if len(e.hist) != maxHistory {
		t.Errorf("got %d history lines, want %d", len(e.hist), maxHistory)
	}
	got := feedAll(t, &e, strings.Repeat(up, maxHistory)+"\r")
	if want := strings.Repeat("x", 10%7) + "y"; got[0].line != want || got[0].uncertain {
		t.Errorf("oldest: got %q uncertain %v, want %q", got[0].line, got[0].uncertain, want)
	}
	if got := feedAll(t, &e, strings.Repeat(up, maxHistory+2)+"\r"); !got[0].uncertain {
		t.Errorf("past oldest: got certain, want uncertain")
	}
}

func FuzzLineEditor(f *testing.F) {
	for _, s := range []string{
		"ls -la\r", "rm -rf /\x15ls\r", "\x1b[200~a\rb\x1b[201~\r", "a\x1b[D\x1b[3~\x1bb\x1bd\r",
		"\x1b]0;t\x07x\r", "\x10\x10\x0e\x0f", "é\x14\x1bu\x19\x17\r", "\x1b[M!!!\x1bOM",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, p []byte, split uint8) {
		var e LineEditor
		cut := int(split) % (len(p) + 1)
		for i, chunk := range [][]byte{p[:cut], p[cut:], p} {
			if i == 2 && split&1 == 1 {
				e.Reset()
			}
			for len(chunk) > 0 {
				n, line, ok := e.Feed(chunk)
				if n <= 0 || n > len(chunk) || !ok && n != len(chunk) {
					t.Fatalf("Feed: got n = %d ok = %v for %d bytes", n, ok, len(chunk))
				}
				if len(line) > MaxLine {
					t.Fatalf("got a line of %d bytes, want at most %d", len(line), MaxLine)
				}
				if e.cur < 0 || e.cur > len(e.buf) {
					t.Fatalf("got cursor %d in a line of %d bytes", e.cur, len(e.buf))
				}
				chunk = chunk[n:]
			}
		}
	})
}
