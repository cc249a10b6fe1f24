package recording

import (
	"strings"
	"testing"
	"time"
)

type inputLog struct{ got strings.Builder }

func (l *inputLog) Input(_ time.Time, p []byte) error { l.got.Write(p); return nil }

// step is one chunk in a conversation: input from the user or output from
// the remote side.
type step struct {
	in, out string
}

func TestKeystrokesMasking(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"echoed typing", []step{{in: "l"}, {out: "l"}, {in: "s"}, {out: "s"}, {in: "\r"}, {out: "\r\nfile\r\n$ "}}, "ls\r"},
		{"pasted line echoed at once", []step{{in: "ls -la\r"}, {out: "ls -la\r\n"}}, "ls -la\r"},
		{"typed ahead, echo in pieces", []step{{in: "abc"}, {out: "a"}, {out: "bc"}}, "abc"},
		{"read -s", []step{{out: "Secret: "}, {in: "hunter2"}, {in: "\r"}, {out: "\r\n"}, {in: "x"}, {out: "x"}}, "*******\rx"},
		{"sudo prompt, one key at a time", []step{{out: "[sudo] password for bob: "}, {in: "p"}, {in: "w"}, {in: "\r"}, {out: "\r\nroot@host# "}}, "**\r"},
		{"masked line then typed-ahead echoed line", []step{{in: "pw\rls\r"}, {out: "\r\n"}, {out: "ls\r\n"}}, "**\rls\r"},
		{"colour-highlighted echo", []step{{in: "l"}, {out: "\x1b[32ml\x1b[0m"}}, "l"},
		{"OSC title then echo", []step{{in: "l"}, {out: "\x1b]0;title\x07l"}}, "l"},
		{"arrow keys recorded as they are", []step{{in: "\x1b[A"}, {out: "ls -la"}, {in: "\r"}, {out: "\r\n"}}, "\x1b[A\r"},
		{"escape split across chunks", []step{{in: "\x1b["}, {in: "A"}, {out: "prev"}}, "\x1b[A"},
		{"backspace between echoed keys", []step{{in: "ab"}, {out: "ab"}, {in: "\x7fc"}, {out: "\b \bc"}}, "ab\x7fc"},
		{"ctrl-c", []step{{in: "\x03"}, {out: "^C\r\n"}}, "\x03"},
		{"unechoed at close is masked", []step{{out: "Password: "}, {in: "sec"}}, "***"},
		{"utf-8 echoed", []step{{in: "é"}, {out: "é"}}, "é"},
		{"utf-8 unechoed", []step{{in: "é\r"}, {out: "\r\n"}}, "**\r"},
		{"bell before echo", []step{{in: "x"}, {out: "\ax"}}, "x"},
		{"escape split across output chunks", []step{{out: "prompt \x1b[3"}, {in: "x"}, {out: "1mx"}}, "x"},
		{"escape split after a long unwatched chunk", []step{{out: strings.Repeat("text ", 100) + "\x1b]0;ti"}, {in: "y"}, {out: "tle\ay"}}, "y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log inputLog
			k := NewKeystrokes(&log)
			now := time.Unix(0, 0)
			for _, s := range tc.steps {
				now = now.Add(time.Millisecond)
				if s.in != "" {
					k.Input(now, []byte(s.in))
				}
				if s.out != "" {
					k.Output([]byte(s.out))
				}
			}
			k.Close()
			if got := log.got.String(); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
