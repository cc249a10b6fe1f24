package pggw

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Transcript limits: a value is cut at maxShownValue bytes and one
// statement's rows at maxShownBytes (and Config.RecordRows rows); the
// statement log keeps the full counts.
const (
	maxShownValue = 256
	maxShownBytes = 1 << 20
)

// transcribeRow adds one result row to e's transcript, after the column
// header for the first.
func (c *conn) transcribeRow(e *execution, d *rowDesc, values [][]byte) {
	if len(e.out) >= maxShownBytes {
		return
	}
	if e.shown == 0 && d != nil {
		var line strings.Builder
		for i, n := range d.names {
			if i > 0 {
				line.WriteString(" |")
			}
			line.WriteByte(' ')
			line.WriteString(cleanLine(n, maxShownValue))
		}
		e.out = append(e.out, line.String()...)
		e.out = append(e.out, "\r\n"...)
		e.out = append(e.out, strings.Repeat("-", min(max(line.Len(), 3), 120))...)
		e.out = append(e.out, "\r\n"...)
	}
	for i, v := range values {
		if i > 0 {
			e.out = append(e.out, " |"...)
		}
		e.out = append(e.out, ' ')
		switch {
		case v == nil:
		case d != nil && i < len(d.fmts) && d.fmts[i] == 1:
			e.out = append(e.out, binaryValue(v)...)
		default:
			e.out = append(e.out, cleanLine(string(v), maxShownValue)...)
		}
	}
	e.out = append(e.out, "\r\n"...)
	e.shown++
}

// binaryValue shows a binary-format value as psql shows bytea.
func binaryValue(v []byte) string {
	const n = 32
	if len(v) <= n {
		return `\x` + hex.EncodeToString(v)
	}
	return `\x` + hex.EncodeToString(v[:n]) + fmt.Sprintf("… (%d bytes)", len(v))
}

// cleanLine makes s safe to print on one terminal line: control
// characters (escape sequences a value could carry into an auditor's
// terminal) shown escaped, invalid UTF-8 replaced, cut at n bytes.
func cleanLine(s string, n int) string {
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= n {
			b.WriteString(fmt.Sprintf("… (%d bytes)", len(s)))
			break
		}
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			b.WriteRune(utf8.RuneError)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cleanText is cleanLine for a statement: its lines kept as lines.
func cleanText(s string, n int) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = cleanLine(l, n)
	}
	return strings.Join(lines, "\r\n")
}

// transcribe writes a finished statement into the recording as psql
// would have shown it: the prompt and statement, the rows (up to the
// limits), the outcome and the time taken.
func (c *conn) transcribe(e *execution, now time.Time) {
	if !c.recording() {
		return
	}
	var b strings.Builder
	b.WriteString("\r\n")
	b.WriteString(c.sess.Target)
	b.WriteString("=> ")
	text := e.text
	if text == "" {
		text = "(empty query)"
	}
	b.WriteString(cleanText(text, 64<<10))
	b.WriteString("\r\n")
	if e.args != "" {
		b.WriteString("-- parameters: ")
		b.WriteString(e.args)
		b.WriteString("\r\n")
	}
	b.Write(e.out)
	switch e.outcome {
	case "ok":
		switch {
		case e.desc != nil || e.shown > 0 || e.rows > 0 && strings.HasPrefix(e.tag, "SELECT"):
			if int64(e.shown) < e.rows {
				fmt.Fprintf(&b, "(%d more rows not recorded)\r\n", e.rows-int64(e.shown))
			}
			if e.rows == 1 {
				b.WriteString("(1 row)\r\n")
			} else {
				fmt.Fprintf(&b, "(%d rows)\r\n", e.rows)
			}
		case e.tag != "":
			b.WriteString(cleanLine(e.tag, 128))
			b.WriteString("\r\n")
		}
		if e.copied > 0 {
			fmt.Fprintf(&b, "(COPY data: %d bytes)\r\n", e.copied)
		}
	case "blocked":
		fmt.Fprintf(&b, "ERROR:  %s\r\n[vigil] statement blocked (%s); it did not reach the database\r\n", cleanLine(e.errMsg, 1024), e.rule)
	case "incomplete":
		b.WriteString("(not run: an earlier statement failed, or the session ended first)\r\n")
	default:
		fmt.Fprintf(&b, "ERROR:  %s (SQLSTATE %s)\r\n", cleanLine(e.errMsg, 1024), e.sqlstate)
	}
	if e.masked > 0 {
		fmt.Fprintf(&b, "[vigil] %d values masked in this result\r\n", e.masked)
	}
	fmt.Fprintf(&b, "Time: %.3f ms\r\n", float64(now.Sub(e.start).Microseconds())/1000)
	c.rec.Output(now, []byte(b.String()))
}
