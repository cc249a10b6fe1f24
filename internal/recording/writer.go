// Package recording owns session recordings: the asciicast v2 format
// (header line, then [time, code, data] events), writing one as a session
// runs (compressed, flushed at least every second, any size in bounded
// memory), masking input typed while the remote side does not echo, and
// reading recordings back for playback and export. The SSH gateway uses it
// now; the PostgreSQL gateway will write its transcripts through it too.
//
// It does not decide what a session is or when it ends (package session,
// the gateways), nor where recordings are listed (the sessions table).
package recording

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Event codes of asciicast v2.
const (
	CodeOutput = "o"
	CodeInput  = "i"
	CodeResize = "r"
	CodeMarker = "m"
)

// FlushInterval is the longest an event waits before it is on disk.
const FlushInterval = time.Second

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Summary describes a finished recording.
type Summary struct {
	// Path is the recording file.
	Path string
	// Digest is hex SHA-256 of the file's bytes as stored.
	Digest string
	// Size is the stored (compressed) size in bytes.
	Size int64
	// Events counts the events written.
	Events int64
}

// Writer streams one recording to a gzip-compressed .cast.gz file. It is
// safe for concurrent use; every method after a failure returns that
// failure (the caller decides whether the session may go on).
type Writer struct {
	start time.Time
	path  string

	// mu guards everything below.
	mu      sync.Mutex
	f       *os.File
	counter *countingWriter
	gz      *gzip.Writer
	buf     *bufio.Writer
	line    []byte
	carry   map[string][]byte // incomplete UTF-8 at the end of the last chunk, per code
	events  int64
	dirty   bool
	err     error
	onFail  func(error)
	closed  bool
	stop    chan struct{}
	stopped chan struct{}
}

type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// Create starts the recording DIR/ID.cast.gz (mode 0600, which must not
// exist) and writes its header. start is time zero of the events.
func Create(dir, id string, hdr Header, start time.Time) (*Writer, error) {
	if id == "" || filepath.Base(id) != id {
		return nil, fmt.Errorf("recording: bad id %q", id)
	}
	path := filepath.Join(dir, id+".cast.gz")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", path, err)
	}
	cw := &countingWriter{w: f, h: sha256.New()}
	gz, _ := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	w := &Writer{start: start, path: path, f: f, counter: cw, gz: gz, buf: bufio.NewWriterSize(gz, 64<<10),
		carry: map[string][]byte{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	hdr.Version = 2
	if hdr.Timestamp == 0 {
		hdr.Timestamp = start.Unix()
	}
	b, _ := json.Marshal(hdr)
	w.buf.Write(b)
	w.buf.WriteByte('\n')
	w.dirty = true
	if err := w.flushLocked(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	go w.flusher()
	return w, nil
}

// OnFail sets a function called once, from any goroutine, when the
// recording first fails (a write, the periodic flush, the disk filling),
// so the session can end without waiting for its next write.
func (w *Writer) OnFail(f func(error)) {
	w.mu.Lock()
	w.onFail = f
	w.mu.Unlock()
}

// failLocked records the first failure and reports it.
func (w *Writer) failLocked(err error) {
	if w.err != nil {
		return
	}
	w.err = err
	if f := w.onFail; f != nil {
		go f(err)
	}
}

// Path is the file being written.
func (w *Writer) Path() string { return w.path }

func (w *Writer) flusher() {
	defer close(w.stopped)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.dirty && w.err == nil {
				if err := w.flushLocked(); err != nil {
					w.failLocked(err)
				}
			}
			w.mu.Unlock()
		}
	}
}

// flushLocked pushes buffered events through gzip to the disk.
func (w *Writer) flushLocked() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("recording: write %s: %w", w.path, err)
	}
	if err := w.gz.Flush(); err != nil {
		return fmt.Errorf("recording: write %s: %w", w.path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("recording: sync %s: %w", w.path, err)
	}
	w.dirty = false
	return nil
}

// Err returns the first write failure, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Output records data the session printed.
func (w *Writer) Output(t time.Time, p []byte) error { return w.event(t, CodeOutput, p) }

// Input records data the user sent (already masked where needed).
func (w *Writer) Input(t time.Time, p []byte) error { return w.event(t, CodeInput, p) }

// Resize records a terminal size change.
func (w *Writer) Resize(t time.Time, cols, rows int) error {
	return w.event(t, CodeResize, []byte(strconv.Itoa(cols)+"x"+strconv.Itoa(rows)))
}

// Marker records a labelled point (a command, a file transfer).
func (w *Writer) Marker(t time.Time, label string) error {
	return w.event(t, CodeMarker, []byte(label))
}

func (w *Writer) event(t time.Time, code string, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("recording: write after close")
	}
	// A multi-byte character split across two chunks is written whole
	// with the second one.
	if c := w.carry[code]; len(c) > 0 {
		p = append(c, p...)
		w.carry[code] = nil
	}
	if code == CodeOutput || code == CodeInput {
		if cut := incompleteTail(p); cut > 0 {
			w.carry[code] = append([]byte(nil), p[len(p)-cut:]...)
			p = p[:len(p)-cut]
		}
	}
	if len(p) == 0 {
		return nil
	}
	w.writeLocked(t, code, p)
	return w.err
}

func (w *Writer) writeLocked(t time.Time, code string, p []byte) {
	secs := t.Sub(w.start).Seconds()
	if secs < 0 {
		secs = 0
	}
	line := append(w.line[:0], '[')
	line = strconv.AppendFloat(line, secs, 'f', 6, 64)
	line = append(line, `, "`...)
	line = append(line, code...)
	line = append(line, `", `...)
	line = appendJSONString(line, p)
	line = append(line, "]\n"...)
	w.line = line
	if _, err := w.buf.Write(line); err != nil {
		w.failLocked(fmt.Errorf("recording: write %s: %w", w.path, err))
		return
	}
	w.events++
	w.dirty = true
}

// incompleteTail returns how many bytes at the end of p begin a UTF-8
// sequence that the next chunk may complete (0 to 3).
func incompleteTail(p []byte) int {
	for n := 1; n <= 3 && n <= len(p); n++ {
		b := p[len(p)-n]
		if b < 0x80 {
			return 0
		}
		if b >= 0xC0 { // a leading byte: complete if it has its continuation bytes
			need := 2
			if b >= 0xF0 {
				need = 4
			} else if b >= 0xE0 {
				need = 3
			}
			if n < need && utf8.FullRune(p[len(p)-n:]) == false {
				return n
			}
			return 0
		}
	}
	return 0
}

// Close writes what is buffered (and any held partial character), ends
// the gzip stream, syncs the file and returns the recording's summary.
func (w *Writer) Close(t time.Time) (Summary, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return Summary{}, errors.New("recording: closed twice")
	}
	w.closed = true
	for _, code := range []string{CodeOutput, CodeInput} {
		if c := w.carry[code]; len(c) > 0 && w.err == nil {
			w.writeLocked(t, code, c)
		}
	}
	err := w.err
	if err == nil {
		err = w.buf.Flush()
	}
	if err == nil {
		err = w.gz.Close()
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	sum := Summary{Path: w.path, Digest: hex.EncodeToString(w.counter.h.Sum(nil)), Size: w.counter.n, Events: w.events}
	w.mu.Unlock()
	close(w.stop)
	<-w.stopped
	if err != nil {
		return sum, fmt.Errorf("recording: close %s: %w", w.path, err)
	}
	return sum, nil
}

// appendJSONString appends p as a JSON string. Invalid UTF-8 becomes
// U+FFFD (asciicast is text); control characters are escaped.
func appendJSONString(dst, p []byte) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			dst = append(dst, p[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, p[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break some JavaScript
		// players; escape them like encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, p[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexdigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, p[start:]...)
	return append(dst, '"')
}
