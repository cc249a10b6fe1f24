package rules

import "unicode/utf8"

// MaxOutputLine is the longest output line OutputLines passes on; the
// rest of a longer line is dropped.
const MaxOutputLine = 4 << 10

// maxOutputString caps an OSC, DCS or similar string in the output, past
// which its bytes are read as text again: a program must not hide what
// it prints behind an escape that never ends.
const maxOutputString = 4 << 10

// OutputLines splits what a terminal session prints into lines for
// output rules: escape sequences (colours, cursor moves, titles,
// hyperlinks) removed, carriage returns and other control characters
// but tab removed, lines capped at MaxOutputLine bytes. It keeps its
// state across chunks, so a sequence or a line split between two Feed
// calls comes out whole.
//
// It reads the byte stream, not the screen: text a program draws with
// cursor moves, or overwrites, comes out as it was sent.
//
// The zero value is ready to use. It is not safe for concurrent use.
type OutputLines struct {
	line   []byte
	esc    outEsc
	strLen int // bytes of the string sequence so far
}

// outEsc is the state of an escape sequence in the output.
type outEsc uint8

const (
	outNone      outEsc = iota
	outStart            // after ESC
	outInter            // after ESC and intermediates, such as ESC ( for a charset
	outCSI              // after ESC [
	outOne              // one more byte ends it (SS2, SS3)
	outString           // OSC, DCS, SOS, PM, APC string
	outStringEsc        // ESC in a string: maybe the ST that ends it
)

// Feed consumes p and calls fn with each line it completes, without the
// line feed. Empty lines are passed on too.
func (o *OutputLines) Feed(p []byte, fn func(line string)) {
	for _, b := range p {
		o.step(b, fn)
	}
}

// step consumes one byte.
func (o *OutputLines) step(b byte, fn func(string)) {
	switch o.esc {
	case outNone:
		o.text(b, fn)
	case outStart:
		o.esc = outNone
		switch {
		case b == '[':
			o.esc = outCSI
		case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
			o.esc, o.strLen = outString, 0
		case b == 'N' || b == 'O':
			o.esc = outOne
		case b >= 0x20 && b <= 0x2f:
			o.esc = outInter
		case b < 0x20:
			o.text(b, fn)
		}
		// Anything else is the final byte of a two-byte sequence.
	case outCSI, outInter:
		switch {
		case o.esc == outCSI && b >= 0x20 && b <= 0x3f, b >= 0x20 && b <= 0x2f:
			// parameters, intermediates
		case b >= 0x40 && b <= 0x7e, o.esc == outInter && b >= 0x30 && b <= 0x3f:
			o.esc = outNone // final byte
		default:
			// A control byte cuts the sequence short and acts as itself.
			o.esc = outNone
			o.text(b, fn)
		}
	case outOne:
		o.esc = outNone
	case outString:
		switch {
		case b == 0x07:
			o.esc = outNone
		case b == 0x1b:
			o.esc = outStringEsc
		case b == '\n' || o.strLen >= maxOutputString:
			o.esc = outNone
			o.text(b, fn)
		default:
			o.strLen++
		}
	case outStringEsc:
		o.esc = outNone
		if b != '\\' {
			// Not the string terminator: the ESC starts another sequence.
			o.esc = outStart
			o.step(b, fn)
		}
	}
}

// text handles b outside any escape sequence.
func (o *OutputLines) text(b byte, fn func(string)) {
	switch {
	case b == '\n':
		fn(string(o.trimmed()))
		o.line = o.line[:0]
	case b == 0x1b:
		o.esc = outStart
	case b == '\t' || b >= 0x20 && b != 0x7f:
		if len(o.line) < MaxOutputLine {
			o.line = append(o.line, b)
		}
	}
	// CR, BS, BEL and the other controls are dropped.
}

// trimmed returns the line without a rune that the cap cut in two.
func (o *OutputLines) trimmed() []byte {
	l := o.line
	if len(l) < MaxOutputLine {
		return l
	}
	for i := len(l) - 1; i >= 0 && i >= len(l)-utf8.UTFMax; i-- {
		if utf8.RuneStart(l[i]) {
			if !utf8.FullRune(l[i:]) {
				return l[:i]
			}
			break
		}
	}
	return l
}

// Flush calls fn with the pending partial line, if it is not empty, and
// forgets it, as at the end of a session.
func (o *OutputLines) Flush(fn func(line string)) {
	if len(o.line) > 0 {
		fn(string(o.trimmed()))
	}
	o.line = o.line[:0]
}
