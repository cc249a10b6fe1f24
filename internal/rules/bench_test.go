package rules

import (
	"testing"
)

// typedLine is a typical 40-character command line.
const typedLine = "sudo systemctl restart nginx && tail -n5"

// BenchmarkKeystroke feeds a 40-character command and Enter one byte at a
// time, as an interactive user types, and reports the cost per keystroke.
func BenchmarkKeystroke(b *testing.B) {
	keys := []byte(typedLine + "\r")
	var e LineEditor
	b.ReportAllocs()
	for b.Loop() {
		for i := range keys {
			if _, line, ok := e.Feed(keys[i : i+1]); ok && len(line) != len(typedLine) {
				b.Fatalf("got %q, want %q", line, typedLine)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/keystroke")
}

// BenchmarkKeystrokeMatch is BenchmarkKeystroke plus matching the line
// against every built-in pack on Enter: the whole cost rules add to an
// interactive session's input path.
func BenchmarkKeystrokeMatch(b *testing.B) {
	s := builtinSet(b)
	keys := []byte(typedLine + "\r")
	var e LineEditor
	b.ReportAllocs()
	for b.Loop() {
		for i := range keys {
			if _, line, ok := e.Feed(keys[i : i+1]); ok && s.Match(KindCommand, line) != nil {
				b.Fatalf("got hits on %q, want none", line)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/keystroke")
}

// benchLines are command lines from an ordinary admin session, and ones
// that hit.
var benchLines = []struct{ name, line string }{
	{"innocent", "ls -la /var/log/nginx | grep error"},
	{"innocent-admin", "sudo systemctl stop nginx && sudo systemctl disable nginx"},
	{"innocent-etc", "cat /etc/passwd | grep user > /dev/null 2>&1"},
	{"innocent-long", "find / -xdev -type f -name '*.log' -mtime +7 -size +10M -exec ls -lh {} \\; 2>/dev/null | sort -k5 -h | tail -20"},
	{"hit", "sudo rm -rf /"},
	{"hit-curl", "curl -fsSL https://get.example.com/install.sh | sudo bash -s -- --yes"},
}

// BenchmarkMatchLine matches command lines against every built-in pack.
func BenchmarkMatchLine(b *testing.B) {
	s := builtinSet(b)
	for _, bl := range benchLines {
		b.Run(bl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(KindCommand, bl.line)
			}
		})
	}
}

// BenchmarkMatchSQL matches SQL against every built-in pack.
func BenchmarkMatchSQL(b *testing.B) {
	s := builtinSet(b)
	for _, bs := range []struct{ name, sql string }{
		{"select", "SELECT u.id, u.name, count(o.id) FROM users u JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20"},
		{"update", "UPDATE accounts SET balance = balance - 100, updated_at = now() WHERE id = $1 RETURNING balance"},
		{"hit", "BEGIN; DELETE FROM audit_log; COMMIT;"},
	} {
		b.Run(bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(KindSQL, bs.sql)
			}
		})
	}
}

// BenchmarkOutputLines splits a screenful of coloured output into lines
// and matches each against the output rules.
func BenchmarkOutputLines(b *testing.B) {
	s := builtinSet(b)
	var chunk []byte
	for range 40 {
		chunk = append(chunk, "\x1b[01;34mdrwxr-xr-x\x1b[0m  2 root root 4096 Jan  1 00:00 \x1b[01;34mbin\x1b[0m\r\n"...)
	}
	var o OutputLines
	match := func(line string) { s.Match(KindOutput, line) }
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		o.Feed(chunk, match)
	}
}
