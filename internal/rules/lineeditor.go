package rules

import (
	"unicode"
	"unicode/utf8"
)

// MaxLine is the longest command line LineEditor keeps; beyond it the
// line is cut and Uncertain.
const MaxLine = 16 << 10

const (
	// maxHistory is how many submitted lines LineEditor remembers for
	// history recall, like a shell's HISTSIZE.
	maxHistory = 500
	// maxInputString caps an OSC or DCS string in the input: terminal
	// replies are short, and a user must not hide keystrokes behind an
	// escape that never ends.
	maxInputString = 4 << 10
)

// LineEditor rebuilds the command line a user submits at an interactive
// shell from the raw bytes their terminal sends, as readline (or zle,
// or any editor with emacs key bindings) would: best effort, for rules to
// look at before the shell runs the line.
//
// It does not see the shell: not its prompt, its history from before the
// session, its completions, its aliases, nor whether a full-screen
// program rather than a shell has the terminal. Where what the shell ran
// may differ from the line returned, Uncertain says so; see Uncertain.
//
// The zero value is ready to use. It is not safe for concurrent use.
type LineEditor struct {
	buf       []byte // the line, UTF-8
	cur       int    // cursor, a byte offset into buf at a rune boundary
	uncertain bool   // the current line may differ from the shell's
	last      bool   // Uncertain: the line last returned may differ

	esc      escKind // escape sequence in progress
	params   [16]byte
	nparams  int  // bytes of params, which may exceed len(params)
	strLen   int  // bytes of the OSC or DCS string so far
	skip     int  // raw bytes still to ignore (X10 mouse report)
	quoted   bool // ^V: insert the next byte as it is
	ctrlX    bool // ^X: the next key is a ^X sequence
	afterCR  bool // the last byte was a CR: a LF after it is part of the same Enter
	lastKill bool // the last key killed text: another kill adds to the kill buffer
	kill     []byte
	// killUnknown: since Reset, the shell's kill buffer may hold what
	// Vigil cleared, so a yank is uncertain.
	killUnknown bool
	// justRun: no byte has been fed since a line was returned; appended:
	// that line went into hist.
	justRun, appended bool

	paste      bool // inside a bracketed paste
	pasteMatch int  // bytes of pasteEnd matched so far

	hist []histEntry // submitted lines, oldest first
	back int         // how far up history the line is: 0 is the line being typed
	// mods are the lines edited while browsing history, by back: readline
	// keeps such edits until a line is submitted. mods[0] is the line
	// being typed while another is shown.
	mods     map[int]histEntry
	unknown  bool // the line shown comes from history Vigil did not see
	nextHist bool // ^O: the next line starts as the history line after this one
}

// histEntry is a submitted line.
type histEntry struct {
	line      string
	uncertain bool
}

// escKind is the state of an escape sequence in the input.
type escKind uint8

const (
	escNone      escKind = iota
	escStart             // after ESC
	escCSI               // after ESC [
	escSS3               // after ESC O
	escString            // in an OSC or DCS string
	escStringEsc         // ESC inside such a string: maybe the ST that ends it
)

// pasteEnd ends a bracketed paste.
const pasteEnd = "\x1b[201~"

// Feed consumes p up to and including the first Enter (a CR or LF outside
// a bracketed paste; also keypad Enter, ^O and Alt-#, which submit the
// line too). If it reached an Enter it returns the bytes consumed (the
// Enter's index + 1), the reconstructed line and submitted true, and
// starts a new, empty line; otherwise it returns len(p), "" and false. A
// LF right after a CR is the same Enter and consumed silently. Cancelling
// a line (^C, ^G) submits nothing.
func (e *LineEditor) Feed(p []byte) (n int, line string, submitted bool) {
	for i, b := range p {
		if e.step(b) {
			return i + 1, e.submit(), true
		}
	}
	return len(p), "", false
}

// Empty reports whether the line being typed is empty (nothing typed
// since the last Enter, or the line was cancelled or killed).
func (e *LineEditor) Empty() bool { return len(e.buf) == 0 }

// Uncertain reports whether the line last returned by Feed may differ
// from what the shell ran: it was recalled from history Vigil did not see
// (typed before the session), completed with Tab, found by a history
// search, cut at MaxLine, given text yanked back after a Reset, or
// touched by a key LineEditor does not model (a numeric argument, undo,
// a ^X sequence, a cut-short escape). It is false before any line is
// returned.
func (e *LineEditor) Uncertain() bool { return e.last }

// Reset forgets the line being typed, after Vigil has cleared it on the
// target. When no byte has been fed since Feed returned a line, that line
// is the one cleared: Vigil held back its Enter, the shell never ran it,
// so it leaves the history LineEditor models too. Since the way Vigil
// cleared the line may have put it in the shell's kill buffer, a later
// yank (^Y) inserts it and makes the line Uncertain. Escape sequence
// state is kept.
func (e *LineEditor) Reset() {
	cleared := e.buf
	if e.justRun && e.appended {
		cleared = []byte(e.hist[len(e.hist)-1].line)
		e.hist = e.hist[:len(e.hist)-1]
	}
	if len(cleared) > 0 {
		e.kill = append(e.kill[:0], cleared...)
	}
	e.killUnknown = true
	e.justRun, e.appended = false, false
	e.clearLine()
}

// submit ends the current line and returns it.
func (e *LineEditor) submit() string {
	line := string(e.buf)
	e.last = e.uncertain || e.unknown
	n, back, next := len(e.hist), e.back, e.nextHist
	e.justRun, e.appended = true, line != ""
	if line != "" {
		if len(e.hist) == maxHistory {
			copy(e.hist, e.hist[1:])
			e.hist = e.hist[:maxHistory-1]
			n--
		}
		e.hist = append(e.hist, histEntry{line, e.last})
	}
	e.clearLine()
	if next && back > 0 {
		// ^O: the shell starts the next line with the history line after
		// the one just run.
		e.uncertain = true
		if i := n - back + 1; i >= 0 && i < len(e.hist) {
			e.back = len(e.hist) - i
			e.load(e.hist[i])
		}
	}
	return line
}

// clearLine empties the line and its per-line state.
func (e *LineEditor) clearLine() {
	e.buf, e.cur = e.buf[:0], 0
	e.uncertain, e.unknown, e.nextHist, e.lastKill = false, false, false, false
	e.back = 0
	clear(e.mods)
}

// step consumes one byte and reports whether it submitted the line.
func (e *LineEditor) step(b byte) bool {
	cr := e.afterCR
	e.afterCR, e.justRun = false, false
	switch {
	case e.skip > 0:
		e.skip--
		return false
	case e.paste:
		e.pasteByte(b)
		return false
	case e.esc != escNone:
		return e.escByte(b)
	case e.quoted:
		e.quoted = false
		e.insert(b)
		return false
	case e.ctrlX:
		// ^X sequences (edit in $EDITOR, undo, exchange point and mark,
		// macros) are not modelled.
		e.ctrlX = false
		e.uncertain = true
		if b == 0x1b {
			e.esc = escStart
		}
		return false
	}
	if b >= 0x20 && b != 0x7f {
		e.insert(b)
		e.lastKill = false
		return false
	}
	if b == '\n' && cr {
		return false // the LF of a CR LF
	}
	return e.control(b)
}

// control handles the control byte b outside any escape sequence and
// reports whether it submitted the line.
func (e *LineEditor) control(b byte) bool {
	killed := false
	switch b {
	case '\r':
		e.afterCR = true
		return true
	case '\n':
		return true
	case 0x0f: // ^O: operate-and-get-next, Enter then recall the next line
		e.nextHist = true
		return true
	case 0x1b:
		e.esc = escStart
		return false // an escape sequence continues a kill
	case 0x03, 0x07: // ^C, ^G
		e.clearLine()
	case 0x01: // ^A
		e.cur = 0
	case 0x05: // ^E
		e.cur = len(e.buf)
	case 0x02: // ^B
		e.cur = e.prevRune(e.cur)
	case 0x06: // ^F
		e.cur = e.nextRune(e.cur)
	case 0x7f, 0x08: // Backspace
		e.delete(e.prevRune(e.cur), e.cur)
	case 0x04: // ^D: delete at the cursor; on an empty line, end of file
		e.delete(e.cur, e.nextRune(e.cur))
	case 0x0b: // ^K
		e.killRange(e.cur, len(e.buf), true)
		killed = true
	case 0x15: // ^U
		e.killRange(0, e.cur, false)
		killed = true
	case 0x17: // ^W: unix-word-rubout
		e.killRange(e.wordStartSpace(e.cur), e.cur, false)
		killed = true
	case 0x19: // ^Y: yank
		for _, c := range e.kill {
			e.insert(c)
		}
		e.uncertain = e.uncertain || e.killUnknown
	case 0x14: // ^T: transpose characters
		e.transpose()
	case 0x10: // ^P
		e.historyUp()
	case 0x0e: // ^N
		e.historyDown()
	case 0x16: // ^V: quoted insert
		e.quoted = true
	case 0x18: // ^X: prefix
		e.ctrlX = true
	case '\t', 0x12, 0x13, 0x1d, 0x1f: // Tab, ^R, ^S, ^], ^_
		// Completion, history search, character search and undo change
		// the line in ways only the shell knows.
		e.uncertain = true
	}
	// ^L, ^Z, ^Q, ^\, ^@ and the rest leave the line as it is.
	e.lastKill = killed
	return false
}

// escByte consumes b inside an escape sequence and reports whether it
// submitted the line.
func (e *LineEditor) escByte(b byte) bool {
	switch e.esc {
	case escStart:
		e.esc = escNone
		switch b {
		case '[':
			e.esc, e.nparams = escCSI, 0
		case 'O':
			e.esc = escSS3
		case ']', 'P': // OSC, DCS: a terminal's reply
			e.esc, e.strLen = escString, 0
		case 0x1b:
			e.esc = escStart
		default:
			return e.meta(b)
		}
	case escCSI:
		switch {
		case b >= 0x20 && b <= 0x3f: // parameters and intermediates
			if e.nparams < len(e.params) {
				e.params[e.nparams] = b
			}
			e.nparams++
		case b >= 0x40 && b <= 0x7e:
			e.esc = escNone
			e.csi(b)
		default:
			// A control byte cuts the sequence short; the key is
			// handled as itself.
			e.esc = escNone
			e.uncertain = true
			return e.stepAgain(b)
		}
	case escSS3:
		e.esc = escNone
		switch b {
		case 'A':
			e.historyUp()
		case 'B':
			e.historyDown()
		case 'C':
			e.cur = e.nextRune(e.cur)
		case 'D':
			e.cur = e.prevRune(e.cur)
		case 'H':
			e.cur = 0
		case 'F':
			e.cur = len(e.buf)
		case 'c': // rxvt ctrl-right
			e.cur = e.wordEnd(e.cur)
		case 'd': // rxvt ctrl-left
			e.cur = e.wordStart(e.cur)
		case 'M': // keypad Enter
			return true
		default:
			if b < 0x20 {
				e.uncertain = true
				return e.stepAgain(b)
			}
		}
		e.lastKill = false
	case escString:
		switch {
		case b == 0x07: // BEL ends an OSC
			e.esc = escNone
		case b == 0x1b:
			e.esc = escStringEsc
		case b < 0x20 || e.strLen >= maxInputString:
			// Replies hold no control bytes and are short: this is the
			// user typing after a lone ESC ] or ESC P.
			e.esc = escNone
			e.uncertain = true
			return e.stepAgain(b)
		default:
			e.strLen++
		}
	case escStringEsc:
		e.esc = escNone
		if b != '\\' {
			e.uncertain = true
			return e.stepAgain(b)
		}
	}
	return false
}

// stepAgain handles b from scratch, after an escape sequence it cut short.
func (e *LineEditor) stepAgain(b byte) bool { return e.step(b) }

// csiParams returns the parameter bytes of the CSI sequence just ended,
// or "?" if they overflowed.
func (e *LineEditor) csiParams() string {
	if e.nparams > len(e.params) {
		return "?"
	}
	return string(e.params[:e.nparams])
}

// csi handles the CSI sequence that ended with final.
func (e *LineEditor) csi(final byte) {
	p := e.csiParams()
	plain := p == "" || p == "1"
	word := p == "1;5" || p == "5" || p == "1;3" || p == "3" // ctrl or alt
	e.lastKill = false
	switch final {
	case 'A':
		if plain {
			e.historyUp()
		}
	case 'B':
		if plain {
			e.historyDown()
		}
	case 'C':
		switch {
		case plain:
			e.cur = e.nextRune(e.cur)
		case word:
			e.cur = e.wordEnd(e.cur)
		}
	case 'D':
		switch {
		case plain:
			e.cur = e.prevRune(e.cur)
		case word:
			e.cur = e.wordStart(e.cur)
		}
	case 'H':
		e.cur = 0
	case 'F':
		e.cur = len(e.buf)
	case 'M':
		if p == "" {
			e.skip = 3 // X10 mouse report: three raw bytes follow
		}
	case '~':
		switch p {
		case "1", "7":
			e.cur = 0
		case "4", "8":
			e.cur = len(e.buf)
		case "3":
			e.delete(e.cur, e.nextRune(e.cur))
		case "200":
			e.paste, e.pasteMatch = true, 0
		}
	}
	// Other sequences (function keys, focus, cursor reports) do nothing
	// at a shell prompt.
}

// meta handles Alt+b (ESC b) and reports whether it submitted the line.
func (e *LineEditor) meta(b byte) bool {
	killed := false
	switch b {
	case 'b', 'B':
		e.cur = e.wordStart(e.cur)
	case 'f', 'F':
		e.cur = e.wordEnd(e.cur)
	case 'd', 'D':
		e.killRange(e.cur, e.wordEnd(e.cur), true)
		killed = true
	case 0x7f, 0x08: // Alt-Backspace
		e.killRange(e.wordStart(e.cur), e.cur, false)
		killed = true
	case 'u', 'U', 'l', 'L', 'c', 'C':
		e.changeCase(b | 0x20)
	case '#': // insert-comment: comment the line out and submit it
		e.cur = 0
		e.insert('#')
		return true
	case ' ': // set-mark
	case '\r', '\n':
		// Alt-Enter: readline has no binding; the shell may take it as
		// Enter.
		e.uncertain = true
		return e.control(b)
	default:
		// Numeric arguments, yank-last-arg, completions, transpose
		// words, revert-line, history moves and the rest.
		e.uncertain = true
		if b < 0x20 {
			return e.control(b)
		}
	}
	e.lastKill = killed
	return false
}

// pasteByte consumes b inside a bracketed paste, which inserts everything
// up to pasteEnd literally; a CR becomes a LF, as the shell runs it.
func (e *LineEditor) pasteByte(b byte) {
	if b == pasteEnd[e.pasteMatch] {
		e.pasteMatch++
		if e.pasteMatch == len(pasteEnd) {
			e.paste, e.pasteMatch = false, 0
		}
		return
	}
	if e.pasteMatch > 0 {
		// Not the end after all: what looked like it was pasted text.
		for _, c := range []byte(pasteEnd[:e.pasteMatch]) {
			e.insert(c)
		}
		e.pasteMatch = 0
		if b == pasteEnd[0] {
			e.pasteMatch = 1
			return
		}
	}
	if b == '\r' {
		b = '\n'
	}
	e.insert(b)
}

// insert inserts b at the cursor.
func (e *LineEditor) insert(b byte) {
	if len(e.buf) >= MaxLine {
		e.uncertain = true
		return
	}
	e.touch()
	if e.cur == len(e.buf) {
		e.buf = append(e.buf, b)
	} else {
		e.buf = append(e.buf, 0)
		copy(e.buf[e.cur+1:], e.buf[e.cur:])
		e.buf[e.cur] = b
	}
	e.cur++
}

// delete removes buf[from:to].
func (e *LineEditor) delete(from, to int) {
	if from >= to {
		return
	}
	e.touch()
	e.buf = append(e.buf[:from], e.buf[to:]...)
	if e.cur > to {
		e.cur -= to - from
	} else if e.cur > from {
		e.cur = from
	}
}

// killRange deletes buf[from:to] into the kill buffer: appended to it
// (forward kills) or prepended (backward kills) when the last key
// killed too, as readline does.
func (e *LineEditor) killRange(from, to int, forward bool) {
	if from >= to {
		return
	}
	text := e.buf[from:to]
	e.killUnknown = false
	switch {
	case !e.lastKill:
		e.kill = append(e.kill[:0], text...)
	case forward:
		e.kill = append(e.kill, text...)
	default:
		e.kill = append(append(make([]byte, 0, len(text)+len(e.kill)), text...), e.kill...)
	}
	if len(e.kill) > MaxLine {
		e.kill = e.kill[:MaxLine]
	}
	e.delete(from, to)
}

// transpose swaps the two characters before the cursor, or around it,
// as ^T does.
func (e *LineEditor) transpose() {
	if e.cur == 0 || len(e.buf) < 2 {
		return
	}
	if e.cur == len(e.buf) {
		e.cur = e.prevRune(e.cur)
	}
	a := e.prevRune(e.cur)
	c := e.nextRune(e.cur)
	first := append([]byte(nil), e.buf[a:e.cur]...)
	second := e.buf[e.cur:c]
	e.touch()
	n := copy(e.buf[a:], second)
	copy(e.buf[a+n:], first)
	e.cur = c
}

// changeCase applies Alt-u (upper), Alt-l (lower) or Alt-c (capitalise)
// to the word after the cursor, ASCII only, and moves past it.
func (e *LineEditor) changeCase(how byte) {
	to := e.wordEnd(e.cur)
	e.touch()
	first := true
	for i := e.cur; i < to; i++ {
		c := e.buf[i]
		switch {
		case how == 'u' || how == 'c' && first:
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
		}
		if isWordByte(c) {
			first = false
		}
		e.buf[i] = c
	}
	e.cur = to
}

// touch notes that the line shown is about to be edited: a recalled
// line keeps its edits while the user browses history.
func (e *LineEditor) touch() {
	if e.back == 0 {
		return
	}
	if _, ok := e.mods[e.back]; ok {
		return
	}
	if e.mods == nil {
		e.mods = make(map[int]histEntry)
	}
	e.mods[e.back] = histEntry{} // saved by leave
}

// historyUp recalls the previous history line. Past the oldest line
// Vigil saw are the lines typed before the session, which Vigil does not
// know: the line shown is then empty and uncertain.
func (e *LineEditor) historyUp() {
	e.leave()
	e.back++
	e.show()
}

// historyDown recalls the next history line, or the line being typed.
func (e *LineEditor) historyDown() {
	if e.back == 0 {
		return
	}
	e.leave()
	e.back--
	e.show()
}

// leave saves the line shown before moving in history, if it is the line
// being typed or was edited.
func (e *LineEditor) leave() {
	if _, edited := e.mods[e.back]; !edited && e.back > 0 {
		return
	}
	if e.mods == nil {
		e.mods = make(map[int]histEntry)
	}
	e.mods[e.back] = histEntry{string(e.buf), e.unknown}
}

// show shows the line at e.back: as edited, as in history, or unknown.
func (e *LineEditor) show() {
	if h, ok := e.mods[e.back]; ok {
		e.buf = append(e.buf[:0], h.line...)
		e.cur, e.unknown = len(e.buf), h.uncertain
		return
	}
	if e.back == 0 || e.back > len(e.hist) {
		// The line being typed, never saved, was empty; lines past the
		// oldest are unknown.
		e.buf, e.cur, e.unknown = e.buf[:0], 0, e.back > 0
		return
	}
	e.unknown = false
	e.load(e.hist[len(e.hist)-e.back])
}

// load makes h the line, cursor at its end.
func (e *LineEditor) load(h histEntry) {
	e.buf = append(e.buf[:0], h.line...)
	e.cur = len(e.buf)
	e.unknown = e.unknown || h.uncertain
}

// prevRune returns the start of the rune before i.
func (e *LineEditor) prevRune(i int) int {
	for i > 0 {
		i--
		if utf8.RuneStart(e.buf[i]) {
			break
		}
	}
	return i
}

// nextRune returns the end of the rune at i.
func (e *LineEditor) nextRune(i int) int {
	if i >= len(e.buf) {
		return len(e.buf)
	}
	_, n := utf8.DecodeRune(e.buf[i:])
	return i + n
}

// isWordByte reports whether the ASCII byte c is part of a word for
// readline's word commands: letters and digits.
func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isWordAt reports whether the rune at i is a letter or digit.
func (e *LineEditor) isWordAt(i int) bool {
	if c := e.buf[i]; c < utf8.RuneSelf {
		return isWordByte(c)
	}
	r, _ := utf8.DecodeRune(e.buf[i:])
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// wordEnd returns where Alt-f from i lands: past the non-word characters,
// then past the word.
func (e *LineEditor) wordEnd(i int) int {
	for i < len(e.buf) && !e.isWordAt(i) {
		i = e.nextRune(i)
	}
	for i < len(e.buf) && e.isWordAt(i) {
		i = e.nextRune(i)
	}
	return i
}

// wordStart returns where Alt-b from i lands: back over the non-word
// characters, then to the start of the word.
func (e *LineEditor) wordStart(i int) int {
	for i > 0 && !e.isWordAt(e.prevRune(i)) {
		i = e.prevRune(i)
	}
	for i > 0 && e.isWordAt(e.prevRune(i)) {
		i = e.prevRune(i)
	}
	return i
}

// wordStartSpace returns where ^W from i deletes to: back over white
// space, then to the start of the white-space-delimited word.
func (e *LineEditor) wordStartSpace(i int) int {
	for i > 0 && isSpace(e.buf[i-1]) {
		i--
	}
	for i > 0 && !isSpace(e.buf[i-1]) {
		i--
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }
