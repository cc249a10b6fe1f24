package recording

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/klauspost/compress/gzip"
)

// maxLine bounds one event line when reading (an output chunk is at most
// the gateway's buffer, a few KiB escaped).
const maxLine = 16 << 20

// Event is one asciicast event.
type Event struct {
	Time float64
	Code string
	Data string
}

// decoder reads asciicast v2 lines from a plain stream: the header, then
// one event per Next. Reader (over a stored, compressed recording) and
// Play (over an exported one) share it.
type decoder struct {
	sc *bufio.Scanner
}

func newDecoder(r io.Reader) (*decoder, Header, error) {
	d := &decoder{sc: bufio.NewScanner(r)}
	d.sc.Buffer(make([]byte, 64<<10), maxLine)
	var hdr Header
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return nil, hdr, fmt.Errorf("recording: no header: %w", err)
		}
		return nil, hdr, errors.New("recording: empty recording")
	}
	if err := json.Unmarshal(d.sc.Bytes(), &hdr); err != nil || hdr.Version != 2 {
		return nil, hdr, errors.New("recording: not an asciicast v2 recording")
	}
	return d, hdr, nil
}

// Next returns the next event, or io.EOF at the end. A recording cut short
// (a crash before Close) ends after its last complete event.
func (d *decoder) Next() (Event, error) {
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return Event{}, fmt.Errorf("recording: %w", err)
		}
		return Event{}, io.EOF
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(d.sc.Bytes(), &raw); err != nil || len(raw) != 3 {
		return Event{}, errors.New("recording: malformed event line")
	}
	var ev Event
	if json.Unmarshal(raw[0], &ev.Time) != nil || json.Unmarshal(raw[1], &ev.Code) != nil || json.Unmarshal(raw[2], &ev.Data) != nil {
		return Event{}, errors.New("recording: malformed event line")
	}
	return ev, nil
}

// Reader reads a recording written by Writer.
type Reader struct {
	*decoder
	Header Header
	f      *os.File
	gz     *gzip.Reader
}

// openText opens the stored recording at path and returns its asciicast
// text (decrypted with keys' identities, decompressed) and the file. An
// encrypted recording that keys cannot decrypt fails here, wrapping
// ErrNoIdentity, before any of it is returned. nil keys read only old,
// unencrypted recordings.
func openText(path string, keys *Keys) (*gzip.Reader, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("recording: open %s: %w", path, err)
	}
	gz, err := openGzip(f, keys)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("recording: open %s: %w", path, err)
	}
	return gz, f, nil
}

// openGzip tells the format of the stored recording r and returns its
// compressed stream: the plaintext of a container's frames, or an old
// gzip recording as it is.
func openGzip(r io.Reader, keys *Keys) (*gzip.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	kind, err := sniff(br)
	if err != nil {
		return nil, err
	}
	var src io.Reader = br
	if kind == formatContainer {
		if !keys.CanDecrypt() {
			return nil, ErrNoIdentity
		}
		fr := newFrameReader(br, keys.identities)
		// The first frame now: a wrong identity or a damaged file is
		// reported as it is, before anything is read.
		if err := fr.next(); err == io.EOF {
			return nil, errors.New("recording: empty recording (no complete frame)")
		} else if err != nil {
			return nil, err
		}
		src = fr
	}
	gz, err := gzip.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("recording: bad compressed stream: %w", err)
	}
	return gz, nil
}

// Open opens the recording at path and reads its header, decrypting with
// keys' identities. An encrypted recording that keys cannot decrypt gives
// an error wrapping ErrNoIdentity; old unencrypted recordings (.cast.gz)
// open with any keys, nil included.
func Open(path string, keys *Keys) (*Reader, error) {
	gz, f, err := openText(path, keys)
	if err != nil {
		return nil, err
	}
	r := &Reader{f: f, gz: gz}
	if r.decoder, r.Header, err = newDecoder(gz); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return r, nil
}

// Close releases the file.
func (r *Reader) Close() error {
	r.gz.Close()
	return r.f.Close()
}

// ReadEvents passes the header and then the first n events of the
// recording at path to header and fn, decrypting with keys (see Open).
// The recording may still be being written: what a Flush put on disk is
// readable.
func ReadEvents(path string, keys *Keys, n int64, header func(Header) error, fn func(Event) error) error {
	r, err := Open(path, keys)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := header(r.Header); err != nil {
		return err
	}
	for i := int64(0); i < n; i++ {
		ev, err := r.Next()
		if err != nil {
			return fmt.Errorf("recording: read event %d of %s: %w", i, path, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// Export writes the recording at path to w as a plain .cast file,
// decrypting with keys (see Open). It writes nothing to w unless the
// recording opens: an error wrapping ErrNoIdentity leaves w untouched. A
// recording cut short by a crash exports up to its last complete frame.
func Export(path string, keys *Keys, w io.Writer) error {
	gz, f, err := openText(path, keys)
	if err != nil {
		return err
	}
	defer f.Close()
	defer gz.Close()
	if _, err := io.Copy(w, gz); err != nil {
		return fmt.Errorf("recording: export %s: %w", path, err)
	}
	return nil
}

// Follow writes the output events of the .cast stream in to out as they
// arrive (a live session being watched) and its markers to notes, one
// "[vigil] LABEL" line each, until the stream ends or ctx does.
func Follow(ctx context.Context, in io.Reader, out, notes io.Writer) error {
	d, _, err := newDecoder(in)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		ev, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch ev.Code {
		case CodeOutput:
			_, err = io.WriteString(out, ev.Data)
		case CodeMarker:
			// Labels carry user text (commands, typed lines): no escape
			// sequence of theirs reaches the admin's terminal.
			_, err = fmt.Fprintf(notes, "\r\n[vigil] %s\r\n", Clean(ev.Data))
		}
		if err != nil {
			return err
		}
	}
	return context.Cause(ctx)
}

// Play writes the output events of the .cast stream in to w at their
// recorded pace divided by speed (0 means as fast as possible), pausing at
// most maxIdle between events (0: no cap). It stops when ctx ends.
func Play(ctx context.Context, in io.Reader, w io.Writer, speed float64, maxIdle time.Duration) error {
	d, _, err := newDecoder(in)
	if err != nil {
		return err
	}
	last := 0.0
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Code != CodeOutput {
			continue
		}
		if speed > 0 {
			pause := time.Duration((ev.Time - last) / speed * float64(time.Second))
			if maxIdle > 0 && pause > maxIdle {
				pause = maxIdle
			}
			if pause > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(pause):
				}
			}
		}
		last = ev.Time
		if _, err := io.WriteString(w, ev.Data); err != nil {
			return err
		}
	}
}

// maxLabel bounds a label or reason shown on a terminal.
const maxLabel = 200

// Clean makes s safe to show on a terminal: control characters
// (escape sequences that could fake or hide Vigil's messages) become '?',
// and it is cut to a reasonable length.
func Clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Bidi_Control, r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if r := []rune(s); len(r) > maxLabel {
		s = string(r[:maxLabel]) + "…"
	}
	return s
}
