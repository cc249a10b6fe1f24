package recording

import (
	"bytes"
	"time"
)

// InputSink receives input events once their echo is decided.
type InputSink interface {
	Input(t time.Time, p []byte) error
}

// Keystrokes records what a user types at a terminal, replacing with '*'
// every printable character the remote side did not echo: passwords at a
// sudo, passwd or ssh prompt, `read -s`, anything typed with echo off.
//
// The gateway cannot see the remote terminal's echo flag, so Keystrokes
// infers it: a printable keystroke is held until output arrives. Output
// that starts with the held characters (ANSI escape sequences aside, so
// colour highlighting still counts as echo) is their echo and releases
// them as typed (control bytes such as the "\b \b" of a backspace do
// not count either way). Output that starts with anything else means they were not
// echoed: the held characters up to the next Enter are recorded as '*'.
// Control keys, escape sequences (arrows, function keys) and Enter are
// recorded as they are, in order. What is still held when the session ends
// is masked: when in doubt, Vigil hides rather than records.
//
// It is not safe for concurrent use; the gateway calls it from one
// goroutine per direction under its own lock.
type Keystrokes struct {
	sink    InputSink
	pending []key
	inEsc   escState // input escape sequence state
	outEsc  escState // output escape sequence state
	prevOut byte     // last output byte
	out     []byte   // scratch for released input
}

type key struct {
	b         byte
	t         time.Time
	printable bool
}

// escState tracks an ANSI escape sequence across chunks.
type escState uint8

const (
	escNone escState = iota
	escStart
	escCSI
	escOSC
	escOSCEnd // saw ESC inside OSC, expecting '\'
	escOne    // one more byte (SS3 and other two-byte forms)
)

// step advances the escape state by b and reports whether b belongs to an
// escape sequence.
func (s *escState) step(b byte) bool {
	switch *s {
	case escNone:
		if b == 0x1b {
			*s = escStart
			return true
		}
		return false
	case escStart:
		switch b {
		case '[':
			*s = escCSI
		case ']':
			*s = escOSC
		case 'O', 'P', '(', ')':
			*s = escOne
		default:
			*s = escNone
		}
		return true
	case escCSI:
		if b >= 0x40 && b <= 0x7e {
			*s = escNone
		}
		return true
	case escOSC:
		switch b {
		case 0x07:
			*s = escNone
		case 0x1b:
			*s = escOSCEnd
		}
		return true
	case escOSCEnd:
		*s = escNone
		return true
	case escOne:
		*s = escNone
		return true
	}
	return false
}

// NewKeystrokes returns a masker writing decided input to sink.
func NewKeystrokes(sink InputSink) *Keystrokes { return &Keystrokes{sink: sink} }

func isEnter(b byte) bool { return b == '\r' || b == '\n' }

// Input takes keystrokes the user sent at time t.
func (k *Keystrokes) Input(t time.Time, p []byte) error {
	k.out = k.out[:0]
	for _, b := range p {
		esc := k.inEsc.step(b)
		printable := !esc && (b >= 0x20 && b != 0x7f)
		if !printable && len(k.pending) == 0 {
			k.out = append(k.out, b) // nothing held: record at once
			continue
		}
		k.pending = append(k.pending, key{b: b, t: t, printable: printable})
	}
	if len(k.out) == 0 {
		return nil
	}
	return k.sink.Input(t, k.out)
}

// Output takes what the remote side printed, before it is recorded, so
// released input lands in the recording ahead of its echo.
func (k *Keystrokes) Output(p []byte) error {
	released := 0 // pending entries decided as echoed
	next := k.nextPrintable(0)
	for i, b := range p {
		prev := k.prevOut
		k.prevOut = b
		// Escape sequences and control bytes are never an echo of a
		// printable key; they are how terminals draw one, like the
		// "\b \b" that erases a character (hence a space after \b).
		if k.outEsc.step(b) || b < 0x20 || b == 0x7f || (b == ' ' && prev == '\b') {
			continue
		}
		if next < 0 {
			k.skipOutput(p[i+1:]) // nothing left to match
			break
		}
		if b == k.pending[next].b {
			released = next + 1
			next = k.nextPrintable(next + 1)
			continue
		}
		// Output that is not the echo: what is held up to the next Enter
		// was typed without echo. The same byte may be the echo of the
		// line typed after it, so it is tried once more against that.
		if err := k.release(released, false); err != nil {
			return err
		}
		if err := k.maskLine(); err != nil {
			return err
		}
		released, next = 0, k.nextPrintable(0)
		if next < 0 || b != k.pending[next].b {
			k.skipOutput(p[i+1:])
			return nil
		}
		released, next = next+1, k.nextPrintable(next+1)
	}
	return k.release(released, false)
}

// skipOutput keeps the output state right across bytes that need no
// matching, cheaply: an escape sequence in progress is finished, and then
// only the last ESC of the rest can leave one open.
func (k *Keystrokes) skipOutput(rest []byte) {
	if len(rest) == 0 {
		return
	}
	k.prevOut = rest[len(rest)-1]
	for len(rest) > 0 && k.outEsc != escNone {
		k.outEsc.step(rest[0])
		rest = rest[1:]
	}
	if i := bytes.LastIndexByte(rest, 0x1b); i >= 0 {
		for _, b := range rest[i:] {
			k.outEsc.step(b)
		}
	}
}

// nextPrintable returns the index of the first held printable at or after
// i, or -1.
func (k *Keystrokes) nextPrintable(i int) int {
	for ; i < len(k.pending); i++ {
		if k.pending[i].printable {
			return i
		}
	}
	return -1
}

// release records the first n held keys, masking printables if mask, and
// then any control keys that follow them up to the next printable.
func (k *Keystrokes) release(n int, mask bool) error {
	for n < len(k.pending) && !k.pending[n].printable {
		n++
	}
	if n == 0 {
		return nil
	}
	// One event per run of keys with the same timestamp keeps the
	// recording's timing while not writing one event per byte.
	start := 0
	for i := 1; i <= n; i++ {
		if i < n && k.pending[i].t.Equal(k.pending[start].t) {
			continue
		}
		buf := k.out[:0]
		for _, kk := range k.pending[start:i] {
			if mask && kk.printable {
				buf = append(buf, '*')
			} else {
				buf = append(buf, kk.b)
			}
		}
		k.out = buf
		if err := k.sink.Input(k.pending[start].t, buf); err != nil {
			return err
		}
		start = i
	}
	k.pending = append(k.pending[:0], k.pending[n:]...)
	return nil
}

// maskLine records the held keys up to and including the first Enter (all
// of them if there is none) with printables masked.
func (k *Keystrokes) maskLine() error {
	n := len(k.pending)
	for i, kk := range k.pending {
		if isEnter(kk.b) {
			n = i + 1
			break
		}
	}
	return k.release(n, true)
}

// Unechoed returns how many printable keys are held, typed but not (yet)
// echoed.
func (k *Keystrokes) Unechoed() int {
	n := 0
	for _, kk := range k.pending {
		if kk.printable {
			n++
		}
	}
	return n
}

// Close masks and records whatever is still held.
func (k *Keystrokes) Close() error { return k.release(len(k.pending), true) }
