// Package recording owns session recordings: the asciicast v2 format
// (header line, then [time, code, data] events), writing one as a session
// runs (compressed, encrypted at rest with age to the configured
// recipients, flushed at least every second, any size in bounded memory),
// the keys it is encrypted with (Keys, LoadKeys), masking input typed
// while the remote side does not echo, and reading recordings back for
// playback and export where an identity is at hand. The stored format is
// described in container.go. The SSH gateway uses it now; the PostgreSQL
// gateway will write its transcripts through it too.
//
// It does not decide what a session is or when it ends (package session,
// the gateways), nor where recordings are listed (the sessions table), nor
// who may play them (the API).
package recording

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
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

	"filippo.io/age"
	"github.com/klauspost/compress/gzip"
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

// fileExt ends the name of a recording file (DIR/ID.cast.age); old
// recordings, written before encryption, end in .cast.gz.
const fileExt = ".cast.age"

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
	// Size is the stored (compressed, encrypted) size in bytes.
	Size int64
	// Events counts the events written.
	Events int64
}

// queueDepth bounds the events waiting to be encoded: at most this many
// relay chunks (32 KiB each) are held in memory; when the encoder falls
// behind, the session waits (SSH flow control), nothing is dropped.
const queueDepth = 32

// Writer streams one recording to an encrypted container, DIR/ID.cast.age
// (see Magic). Events are copied into a bounded queue and encoded,
// compressed, encrypted and written by the writer's own goroutine, so a
// session's relay and its recording use different cores. It is safe for
// concurrent use. After a failure every call returns it (the caller
// decides whether the session may go on); OnFail reports it at once.
type Writer struct {
	start time.Time
	path  string
	keys  *Keys
	hdr   Header // as written; neither changes after Create
	q     chan item
	done  chan Summary // the encoder's result, once, after q is closed
	// finished is closed when the file is complete (after Close).
	finished chan struct{}

	// mu guards carry, closed, tap and seq, and orders events into q.
	mu     sync.Mutex
	carry  map[string][]byte // incomplete UTF-8 at the end of the last chunk, per code
	closed bool
	tap    Tap
	seq    int64 // events queued so far

	// errMu guards err and onFail (set by the encoder, read by callers).
	errMu  sync.Mutex
	err    error
	onFail func(error)

	// Owned by the encoder goroutine.
	f       *os.File
	counter *countingWriter // the file: what is stored is hashed and counted
	// frame is the frame being built (length prefix, then the age file)
	// and enc encrypts into it, gz compresses into enc. enc is nil
	// between frames; frame and gz are nil while idle (in their pools).
	frame  *bytes.Buffer
	enc    io.WriteCloser
	gz     *gzip.Writer
	buf    *bufio.Writer
	line   []byte
	events int64
	dirty  bool
}

// item is one queued event, or a flush request (ack not nil), which may
// also ask to give back the compressor as an idle interval does (release).
type item struct {
	t       time.Time
	code    string
	data    *[]byte
	ack     chan error
	release bool
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// gzPool holds compressors between bursts: a compressor's state is about
// 250 KiB, and an idle session (most of them, most of the time) should not
// hold one. Every frame holds whole gzip members (one ends with each
// frame); a recording idle for a flush interval also returns its
// compressor and frame buffer, and the next event takes them again.
// Readers of gzip read concatenated members as one stream.
var gzPool = sync.Pool{New: func() any { z, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return z }}

// framePool holds frame buffers between bursts (up to maxSegment and a
// little more each).
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// gzSink is the encoder's view of the compressed stream: it opens a frame
// (and takes a compressor) when events follow a flush.
type gzSink struct{ w *Writer }

func (s gzSink) Write(p []byte) (int, error) {
	w := s.w
	if w.enc == nil {
		if err := w.openFrame(); err != nil {
			return 0, err
		}
	}
	return w.gz.Write(p)
}

// openFrame starts a frame: a new age file, its file key wrapped for
// every recipient (the costly part, once per frame), and a gzip member.
func (w *Writer) openFrame() error {
	if w.frame == nil {
		w.frame = framePool.Get().(*bytes.Buffer)
	}
	w.frame.Reset()
	var length [frameLenSize]byte // filled in by endFrame
	w.frame.Write(length[:])
	enc, err := age.Encrypt(w.frame, w.keys.recipients...)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	w.enc = enc
	if w.gz == nil {
		w.gz = gzPool.Get().(*gzip.Writer)
	}
	w.gz.Reset(enc)
	return nil
}

// endFrame ends the open frame's gzip member and age file and writes the
// frame to the file with one write, so a crash tears at most this frame.
func (w *Writer) endFrame() error {
	if w.enc == nil {
		return nil
	}
	enc := w.enc
	w.enc = nil
	if err := w.gz.Close(); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	b := w.frame.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-frameLenSize))
	_, err := w.counter.Write(b)
	w.frame.Reset()
	return err
}

// release writes what is buffered as a frame and returns the compressor
// and the frame buffer to their pools.
func (w *Writer) release() error {
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if err := w.endFrame(); err != nil {
		return err
	}
	if w.gz != nil {
		gzPool.Put(w.gz)
		w.gz = nil
	}
	if w.frame != nil {
		framePool.Put(w.frame)
		w.frame = nil
	}
	return nil
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

// Create starts the recording DIR/ID.cast.age (mode 0600, which must not
// exist), encrypted to keys' recipients, and writes its header. start is
// time zero of the events. keys must have recipients (nil is an error).
func Create(dir, id string, hdr Header, start time.Time, keys *Keys) (*Writer, error) {
	if id == "" || filepath.Base(id) != id {
		return nil, fmt.Errorf("recording: bad id %q", id)
	}
	if !keys.CanEncrypt() {
		return nil, fmt.Errorf("recording: create %s: no recipients to encrypt to", id)
	}
	path := filepath.Join(dir, id+fileExt)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", path, err)
	}
	cw := &countingWriter{w: f, h: sha256.New()}
	hdr.Version = 2
	if hdr.Timestamp == 0 {
		hdr.Timestamp = start.Unix()
	}
	// A modest line buffer: an idle session holds it for hours, and the
	// encoder's own goroutine keeps encryption and write syscalls off the
	// relay's path.
	w := &Writer{start: start, path: path, keys: keys, hdr: hdr, f: f, counter: cw,
		carry: map[string][]byte{}, q: make(chan item, queueDepth), done: make(chan Summary, 1),
		finished: make(chan struct{})}
	w.buf = bufio.NewWriterSize(gzSink{w}, 16<<10)
	// The magic, then the header as the first frame: once Create returns,
	// the file is a readable recording without events.
	if _, err = cw.Write([]byte(Magic)); err != nil {
		err = fmt.Errorf("recording: write %s: %w", path, err)
	} else {
		b, _ := json.Marshal(hdr)
		w.buf.Write(b)
		w.buf.WriteByte('\n')
		w.dirty = true
		err = w.flush()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	go w.encode()
	return w, nil
}

// OnFail sets a function called once, from another goroutine, when the
// recording first fails (a write, the periodic flush, the disk filling),
// so the session can end without waiting for its next write.
func (w *Writer) OnFail(f func(error)) {
	w.errMu.Lock()
	w.onFail = f
	w.errMu.Unlock()
}

// fail records the first failure and reports it.
func (w *Writer) fail(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err != nil {
		return
	}
	w.err = err
	if f := w.onFail; f != nil {
		go f(err)
	}
}

// Err returns the first failure, if any.
func (w *Writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// Path is the file being written.
func (w *Writer) Path() string { return w.path }

// Keys returns the keys the recording is encrypted with (whether they can
// decrypt it decides whether it can be read back here).
func (w *Writer) Keys() *Keys { return w.keys }

// Header returns the recording's header as written (its Env must not be
// modified).
func (w *Writer) Header() Header { return w.hdr }

// encode is the writer's goroutine: it writes queued events, flushes at
// least every FlushInterval, and finalizes the file when q is closed.
func (w *Writer) encode() {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case it, ok := <-w.q:
			if !ok {
				w.done <- w.finish()
				close(w.finished)
				return
			}
			if it.ack != nil {
				if w.Err() == nil && w.dirty {
					if err := w.flush(); err != nil {
						w.fail(err)
					}
				}
				if it.release && w.Err() == nil {
					if err := w.release(); err != nil {
						w.fail(err)
					}
				}
				it.ack <- w.Err()
				continue
			}
			if w.Err() == nil {
				w.writeLine(it.t, it.code, *it.data)
			}
			*it.data = (*it.data)[:0]
			chunkPool.Put(it.data)
		case <-t.C:
			if w.Err() != nil {
				continue
			}
			var err error
			switch {
			case w.dirty:
				err = w.flush()
			case w.gz != nil:
				// A whole interval without events: give back the
				// compressor and frame buffer.
				err = w.release()
			}
			if err != nil {
				w.fail(fmt.Errorf("recording: write %s: %w", w.path, err))
			}
		}
	}
}

// flush pushes buffered events through gzip and age to the disk: the
// open frame ends and is written, then synced.
func (w *Writer) flush() error {
	for _, f := range []func() error{w.buf.Flush, w.endFrame} {
		if err := f(); err != nil {
			return fmt.Errorf("recording: write %s: %w", w.path, err)
		}
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("recording: sync %s: %w", w.path, err)
	}
	w.dirty = false
	return nil
}

// Flush waits until every event given so far is on disk (or failed).
// During or after Close it waits for the file to be complete.
func (w *Writer) Flush() error { return w.request(false) }

func (w *Writer) request(release bool) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.finished
		return w.Err()
	}
	ack := make(chan error, 1)
	w.q <- item{ack: ack, release: release}
	w.mu.Unlock()
	return <-ack
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

// Tap sees every event as it is queued, in order: seq numbers the events
// from 0 as they appear in the file (after the header), t is seconds since
// the start. It runs under the writer's lock on the relay path, so it must
// not block; data is only valid during the call.
type Tap func(seq int64, t float64, code string, data []byte)

// SetTap installs tap (live watchers); nil removes it.
func (w *Writer) SetTap(tap Tap) {
	w.mu.Lock()
	w.tap = tap
	w.mu.Unlock()
}

// event queues one event; it blocks while the queue is full.
func (w *Writer) event(t time.Time, code string, p []byte) error {
	if err := w.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("recording: write after close")
	}
	data := chunkPool.Get().(*[]byte)
	// A multi-byte character split across two chunks is written whole
	// with the second one.
	*data = append(append(*data, w.carry[code]...), p...)
	w.carry[code] = w.carry[code][:0]
	if code == CodeOutput || code == CodeInput {
		if cut := incompleteTail(*data); cut > 0 {
			w.carry[code] = append(w.carry[code], (*data)[len(*data)-cut:]...)
			*data = (*data)[:len(*data)-cut]
		}
	}
	if len(*data) == 0 {
		chunkPool.Put(data)
		return nil
	}
	if w.tap != nil {
		w.tap(w.seq, w.secs(t), code, *data)
	}
	w.seq++
	w.q <- item{t: t, code: code, data: data}
	return nil
}

// secs is t as an event time: seconds since the start, never negative.
func (w *Writer) secs(t time.Time) float64 {
	return max(t.Sub(w.start).Seconds(), 0)
}

// AppendEvent appends the asciicast v2 event line [secs, code, data]
// (without the newline) to dst.
func AppendEvent(dst []byte, secs float64, code string, data []byte) []byte {
	dst = append(dst, '[')
	dst = strconv.AppendFloat(dst, secs, 'f', 6, 64)
	dst = append(dst, `, "`...)
	dst = append(dst, code...)
	dst = append(dst, `", `...)
	dst = appendJSONString(dst, data)
	return append(dst, ']')
}

func (w *Writer) writeLine(t time.Time, code string, p []byte) {
	line := append(AppendEvent(w.line[:0], w.secs(t), code, p), '\n')
	w.line = line
	if _, err := w.buf.Write(line); err != nil {
		w.fail(fmt.Errorf("recording: write %s: %w", w.path, err))
		return
	}
	w.events++
	w.dirty = true
	if w.frame != nil && w.frame.Len() >= maxSegment {
		// A busy session: end the frame now, after a whole line (so a
		// crash before the next frame cuts no event in half), and
		// memory stays bounded.
		err := w.buf.Flush()
		if err == nil {
			err = w.endFrame()
		}
		if err != nil {
			w.fail(fmt.Errorf("recording: write %s: %w", w.path, err))
		}
	}
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

// Close writes what is queued and any held partial character, ends the
// last frame, syncs the file and returns the recording's summary.
func (w *Writer) Close(t time.Time) (Summary, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return Summary{}, errors.New("recording: closed twice")
	}
	for _, code := range []string{CodeOutput, CodeInput} {
		if c := w.carry[code]; len(c) > 0 {
			data := chunkPool.Get().(*[]byte)
			*data = append(*data, c...)
			w.q <- item{t: t, code: code, data: data}
		}
	}
	w.closed = true
	close(w.q)
	w.mu.Unlock()
	sum := <-w.done
	if err := w.Err(); err != nil {
		return sum, fmt.Errorf("recording: close %s: %w", w.path, err)
	}
	return sum, nil
}

// finish ends the file; it runs on the encoder goroutine.
func (w *Writer) finish() Summary {
	err := w.Err()
	if err == nil {
		for _, f := range []func() error{w.release, w.f.Sync} {
			if err = f(); err != nil {
				break
			}
		}
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.fail(err)
	}
	return Summary{Path: w.path, Digest: hex.EncodeToString(w.counter.h.Sum(nil)), Size: w.counter.n, Events: w.events}
}

// Constants for plainWord's byte-parallel tests.
const (
	lo8  = 0x0101010101010101
	hi8  = 0x8080808080808080
	sp8  = 0x2020202020202020 // ' '
	qt8  = 0x2222222222222222 // '"'
	bs8  = 0x5c5c5c5c5c5c5c5c // '\\'
	del8 = 0x7f7f7f7f7f7f7f7f
)

// hasZeroByte reports whether any byte of x is zero.
func hasZeroByte(x uint64) bool { return (x-lo8)&^x&hi8 != 0 }

// plainWord reports whether all 8 bytes of w are printable ASCII other
// than '"' and '\\', so they go into a JSON string as they are.
func plainWord(w uint64) bool {
	return w&hi8 == 0 && // ASCII
		(w-sp8)&hi8 == 0 && // no byte below 0x20 (no borrow, as all bytes < 0x80)
		!hasZeroByte(w^qt8) && !hasZeroByte(w^bs8) && !hasZeroByte(w^del8)
}

// appendJSONString appends p as a JSON string. Invalid UTF-8 becomes
// U+FFFD (asciicast is text); control characters are escaped.
func appendJSONString(dst, p []byte) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(p); {
		// Fast path: skip 8 bytes at a time while none needs escaping.
		for i+8 <= len(p) && plainWord(binary.LittleEndian.Uint64(p[i:])) {
			i += 8
		}
		if i >= len(p) {
			break
		}
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
