package recording

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// testKeys returns keys with a fresh identity that encrypt to it and can
// decrypt.
func testKeys(t testing.TB) *Keys {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return NewKeys([]age.Recipient{id.Recipient()}, []age.Identity{id})
}

func readAll(t *testing.T, path string, keys *Keys) (Header, []Event) {
	t.Helper()
	r, err := Open(path, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var evs []Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r.Header, evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	dir := t.TempDir()
	start := time.Unix(1700000000, 0)
	keys := testKeys(t)
	w, err := Create(dir, "s1", Header{Width: 80, Height: 24, Title: "alice@web1"}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	w.Output(at(10), []byte("hello \"world\"\r\n\x1b[1mbold\x1b[0m\t\x00"))
	w.Input(at(20), []byte("ls\r"))
	w.Resize(at(30), 120, 40)
	w.Marker(at(40), "exec: uname -a")
	w.Output(at(50), []byte{0xc3})      // first half of é
	w.Output(at(60), []byte{0xa9, '!'}) // second half
	w.Output(at(70), []byte{0xff, 'x'}) // invalid UTF-8
	w.Output(at(80), []byte("end\u2028"))
	sum, err := w.Close(at(90))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, "s1", Header{}, start, keys); err == nil {
		t.Fatal("a second recording with the same id was created")
	}
	fi, _ := os.Stat(sum.Path)
	if fi.Mode().Perm() != 0o600 || fi.Size() != sum.Size {
		t.Fatalf("file mode %o size %d, summary size %d", fi.Mode().Perm(), fi.Size(), sum.Size)
	}
	b, _ := os.ReadFile(sum.Path)
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum.Digest {
		t.Fatal("digest does not match the file")
	}
	hdr, evs := readAll(t, sum.Path, keys)
	if hdr.Version != 2 || hdr.Width != 80 || hdr.Timestamp != start.Unix() || hdr.Title != "alice@web1" {
		t.Fatalf("header %+v", hdr)
	}
	want := []Event{
		{0.01, "o", "hello \"world\"\r\n\x1b[1mbold\x1b[0m\t\x00"},
		{0.02, "i", "ls\r"},
		{0.03, "r", "120x40"},
		{0.04, "m", "exec: uname -a"},
		{0.06, "o", "é!"},
		{0.07, "o", "\ufffdx"},
		{0.08, "o", "end\u2028"},
	}
	if len(evs) != len(want) || int64(len(want)) != sum.Events {
		t.Fatalf("got %d events (%d counted), want %d: %+v", len(evs), sum.Events, len(want), evs)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, evs[i], want[i])
		}
	}
	var plain bytes.Buffer
	if err := Export(sum.Path, keys, &plain); err != nil || !strings.HasPrefix(plain.String(), `{"version":2,`) {
		t.Fatalf("export: %v %q", err, plain.String()[:20])
	}
	var out bytes.Buffer
	if err := Play(t.Context(), &plain, &out, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "hello") || strings.Contains(out.String(), "ls\r") {
		t.Fatalf("play wrote %q (output only, no input)", out.String())
	}
}

// TestWriterCrashLeavesReadablePrefix: what was flushed before a crash
// (no Close) reads back, ending with the last flushed event.
func TestWriterCrashLeavesReadablePrefix(t *testing.T) {
	keys := testKeys(t)
	w, err := Create(t.TempDir(), "s2", Header{Width: 80, Height: 24}, time.Now(), keys)
	if err != nil {
		t.Fatal(err)
	}
	w.Output(time.Now(), []byte("before the crash"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(w.Path(), keys)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ev, err := r.Next()
	if err != nil || ev.Data != "before the crash" {
		t.Fatalf("got %q %v", ev.Data, err)
	}
	w.Close(time.Now())
}

// TestWriterFailure: once the disk fails, every call reports it.
func TestWriterFailure(t *testing.T) {
	keys := testKeys(t)
	w, err := Create(t.TempDir(), "s3", Header{}, time.Now(), keys)
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the disk goes away under the writer
	// Output reaches the file when its frame ends: at this flush, or at
	// the next periodic one, at most FlushInterval later.
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	w.Output(time.Now(), noise)
	if err := w.Flush(); err == nil {
		t.Fatal("flush to a closed file returned nil")
	}
	if err := w.Output(time.Now(), []byte("y")); err == nil {
		t.Fatal("write after the file failed returned nil")
	}
	if w.Err() == nil {
		t.Fatal("Err() is nil after a failure")
	}
	if _, err := w.Close(time.Now()); err == nil {
		t.Fatal("Close after a failure returned nil")
	}
	if _, err := Create("/nonexistent/dir", "s4", Header{}, time.Now(), keys); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

// TestWriterBoundedMemory: recording is streamed; 64 MiB of output does
// not grow the heap by anything like its size.
func TestWriterBoundedMemory(t *testing.T) {
	w, err := Create(t.TempDir(), "big", Header{}, time.Now(), testKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef\r\n"), 32<<10/18)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for n := 0; n < 64<<20; n += len(chunk) {
		if err := w.Output(time.Now(), chunk); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
		t.Fatalf("heap grew by %d bytes while recording 64 MiB", grew)
	}
	if _, err := w.Close(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkWriterOutput measures recording terminal-like output (base64
// text) in 32 KiB chunks, the relay's chunk size.
func BenchmarkWriterOutput(b *testing.B) {
	raw := make([]byte, 24<<10)
	rand.Read(raw)
	chunk := []byte(base64.StdEncoding.EncodeToString(raw))
	w, err := Create(b.TempDir(), "bench", Header{}, time.Now(), testKeys(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if err := w.Output(time.Now(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	w.Close(time.Now())
}

// BenchmarkFrame measures what one frame costs beyond its data: a new age
// file (its key wrapped for each recipient) and a gzip member, for a
// small burst as an interactive session writes between flushes.
func BenchmarkFrame(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			var rs []age.Recipient
			for range n {
				id, _ := age.GenerateX25519Identity()
				rs = append(rs, id.Recipient())
			}
			w := &Writer{keys: NewKeys(rs, nil), counter: &countingWriter{w: io.Discard, h: sha256.New()}}
			line := []byte("[1.000000, \"o\", \"$ ls -l\\r\\n\"]\n")
			var stored int64
			for b.Loop() {
				if _, err := (gzSink{w}).Write(line); err != nil {
					b.Fatal(err)
				}
				if err := w.endFrame(); err != nil {
					b.Fatal(err)
				}
				stored = w.counter.n
			}
			b.ReportMetric(float64(stored)/float64(b.N), "stored-B/frame")
		})
	}
}

// TestWriterIdleMembers: an idle recording ends its frame and gives back
// its compressor; the file, several frames long, reads as one.
func TestWriterIdleMembers(t *testing.T) {
	start := time.Now()
	keys := testKeys(t)
	w, err := Create(t.TempDir(), "members", Header{}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		w.Output(start, []byte(fmt.Sprintf("burst %d\r\n", i)))
		if err := w.request(true); err != nil { // as after an idle interval
			t.Fatal(err)
		}
	}
	sum, err := w.Close(start)
	if err != nil {
		t.Fatal(err)
	}
	// The header's frame, then one per burst.
	if n := len(frames(t, sum.Path)); n != 4 {
		t.Fatalf("got %d frames, want 4", n)
	}
	_, evs := readAll(t, sum.Path, keys)
	if len(evs) != 3 || evs[2].Data != "burst 2\r\n" {
		t.Fatalf("events across members: %+v", evs)
	}
}
