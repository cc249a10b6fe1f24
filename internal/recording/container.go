package recording

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// The stored container (DIR/ID.cast.age): the line Magic, then frames.
// A frame is a 4-byte big-endian length and that many bytes: one complete
// age file (binary format) whose plaintext is one or more whole gzip
// members (the writer puts one) of whole asciicast lines. Concatenating
// the frames' plaintexts gives a gzip stream of the asciicast v2
// recording; the first frame holds the header line.
//
// A frame ends wherever the writer must put events on disk (a flush, an
// idle interval, Close) or, after a whole line, when it reaches
// maxSegment, and it is written with one write call: a crash leaves every
// complete frame readable, and readers ignore a torn last frame. Each frame has its own age header, so
// its file key is wrapped anew for every recipient (one X25519 operation
// each): at most once per FlushInterval for a session that is not busy.
// Old recordings (ID.cast.gz, plain gzip, no encryption) are still read.
const (
	// Magic is the first line of a stored container.
	Magic = "vigil-recording-v1\n"
	// frameLenSize is the size of a frame's length prefix.
	frameLenSize = 4
	// MaxFrame bounds a frame's length when reading: the writer never
	// writes one near it, and garbage cannot make a reader allocate more.
	MaxFrame = 64 << 20
	// maxSegment is the ciphertext size at which the writer ends a frame
	// before the next flush, so a busy session holds at most this much
	// in memory (and a frame's key work is spread over a MiB).
	maxSegment = 1 << 20
)

// gzipMagic starts every gzip member (old .cast.gz recordings).
var gzipMagic = []byte{0x1f, 0x8b}

// Errors of the container. Readers wrap them with where they happened.
var (
	// ErrNotRecording is returned for a file that is neither a container
	// nor an old gzip-compressed recording.
	ErrNotRecording = errors.New("recording: not a Vigil recording")
	// ErrBadFrame is returned for a frame whose length is out of bounds
	// or whose content is not an age file this reader can authenticate.
	ErrBadFrame = errors.New("recording: damaged frame")
)

// frameReader yields the concatenated plaintext of a container's frames
// (after Magic), decrypting one frame at a time. A final frame cut short
// (a crash or a write in progress) ends the stream like io.EOF.
type frameReader struct {
	r   io.Reader
	ids []age.Identity
	// n counts the frames opened; off is the offset of the next frame.
	n   int
	off int64
	buf bytes.Buffer // the current frame's ciphertext
	cur io.Reader    // the current frame's plaintext; nil between frames
}

// newFrameReader reads frames from r, which is positioned after Magic.
func newFrameReader(r io.Reader, ids []age.Identity) *frameReader {
	return &frameReader{r: r, ids: ids, off: int64(len(Magic))}
}

// Read reads plaintext, moving on to the next frame as one ends.
func (fr *frameReader) Read(p []byte) (int, error) {
	for {
		if fr.cur != nil {
			n, err := fr.cur.Read(p)
			if err == io.EOF {
				fr.cur = nil
				err = nil
				if n == 0 {
					continue
				}
			}
			if err != nil {
				return n, fmt.Errorf("%w %d: %w", ErrBadFrame, fr.n, err)
			}
			return n, nil
		}
		if err := fr.next(); err != nil {
			return 0, err
		}
	}
}

// next opens the next complete frame; io.EOF at the end or a torn frame.
func (fr *frameReader) next() error {
	var l [frameLenSize]byte
	if _, err := io.ReadFull(fr.r, l[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return io.EOF
		}
		return fmt.Errorf("recording: read frame %d: %w", fr.n+1, err)
	}
	size := binary.BigEndian.Uint32(l[:])
	if size == 0 || size > MaxFrame {
		return fmt.Errorf("%w %d at offset %d: length %d is not in 1..%d", ErrBadFrame, fr.n+1, fr.off, size, MaxFrame)
	}
	// Read what is there rather than allocate size up front: a garbage
	// length costs no more memory than the bytes the file really holds.
	fr.buf.Reset()
	got, err := fr.buf.ReadFrom(io.LimitReader(fr.r, int64(size)))
	if err != nil {
		return fmt.Errorf("recording: read frame %d: %w", fr.n+1, err)
	}
	if got < int64(size) {
		return io.EOF // torn: everything before it has been read
	}
	fr.n++
	fr.off += frameLenSize + int64(size)
	dec, err := age.Decrypt(bytes.NewReader(fr.buf.Bytes()), fr.ids...)
	if err != nil {
		if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
			return ErrNoIdentity
		}
		return fmt.Errorf("%w %d: %w", ErrBadFrame, fr.n, err)
	}
	fr.cur = dec
	return nil
}

// format is how a stored recording is encoded.
type format int

const (
	formatContainer format = iota // Magic, then age frames
	formatGzip                    // an old .cast.gz: plain gzip
)

// sniff tells a container from an old gzip recording by their first bytes
// and consumes Magic.
func sniff(br *bufio.Reader) (format, error) {
	head, err := br.Peek(len(Magic))
	switch {
	case bytes.Equal(head, []byte(Magic)):
		br.Discard(len(Magic))
		return formatContainer, nil
	case bytes.HasPrefix(head, gzipMagic):
		return formatGzip, nil
	case len(head) == 0 && err == io.EOF:
		return 0, errors.New("recording: empty file")
	}
	return 0, ErrNotRecording
}
