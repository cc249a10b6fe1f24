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

// Reader reads a recording written by Writer.
type Reader struct {
	Header Header
	f      *os.File
	gz     *gzip.Reader
	sc     *bufio.Scanner
}

// Open opens the recording at path and reads its header.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recording: open %s: %w", path, err)
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: %s is not a compressed recording: %w", path, err)
	}
	r := &Reader{f: f, gz: gz, sc: bufio.NewScanner(gz)}
	r.sc.Buffer(make([]byte, 64<<10), maxLine)
	if !r.sc.Scan() {
		r.Close()
		return nil, fmt.Errorf("recording: %s has no header: %v", path, r.err())
	}
	if err := json.Unmarshal(r.sc.Bytes(), &r.Header); err != nil || r.Header.Version != 2 {
		r.Close()
		return nil, fmt.Errorf("recording: %s: bad asciicast v2 header", path)
	}
	return r, nil
}

func (r *Reader) err() error {
	if err := r.sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// Next returns the next event, or io.EOF at the end. A recording cut short
// (a crash before Close) ends with io.ErrUnexpectedEOF after its last
// complete event.
func (r *Reader) Next() (Event, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return Event{}, fmt.Errorf("recording: %w", err)
		}
		return Event{}, io.EOF
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(r.sc.Bytes(), &raw); err != nil || len(raw) != 3 {
		return Event{}, errors.New("recording: malformed event line")
	}
	var ev Event
	if json.Unmarshal(raw[0], &ev.Time) != nil || json.Unmarshal(raw[1], &ev.Code) != nil || json.Unmarshal(raw[2], &ev.Data) != nil {
		return Event{}, errors.New("recording: malformed event line")
	}
	return ev, nil
}

// Close releases the file.
func (r *Reader) Close() error {
	r.gz.Close()
	return r.f.Close()
}

// Export writes the recording at path to w as a plain .cast file.
func Export(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("recording: open %s: %w", path, err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("recording: %s is not a compressed recording: %w", path, err)
	}
	defer gz.Close()
	if _, err := io.Copy(w, gz); err != nil {
		return fmt.Errorf("recording: export %s: %w", path, err)
	}
	return nil
}

// Play writes the output events of the .cast stream in to w at their
// recorded pace divided by speed (0 means as fast as possible), pausing at
// most maxIdle between events (0: no cap). It stops when ctx ends.
func Play(ctx context.Context, in io.Reader, w io.Writer, speed float64, maxIdle time.Duration) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	if !sc.Scan() {
		return errors.New("recording: empty recording")
	}
	var hdr Header
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 {
		return errors.New("recording: not an asciicast v2 recording")
	}
	last := 0.0
	for sc.Scan() {
		var raw []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil || len(raw) != 3 {
			return errors.New("recording: malformed event line")
		}
		var t float64
		var code, data string
		json.Unmarshal(raw[0], &t)
		json.Unmarshal(raw[1], &code)
		json.Unmarshal(raw[2], &data)
		if code != CodeOutput {
			continue
		}
		if speed > 0 {
			d := time.Duration((t - last) / speed * float64(time.Second))
			if maxIdle > 0 && d > maxIdle {
				d = maxIdle
			}
			if d > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		last = t
		if _, err := io.WriteString(w, data); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !strings.Contains(err.Error(), "unexpected EOF") {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}
