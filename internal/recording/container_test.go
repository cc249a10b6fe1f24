package recording

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// frames returns the [start, end) offsets of the complete frames of the
// container at path (length prefix included).
func frames(t *testing.T, path string) [][2]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(Magic)) {
		t.Fatalf("%s does not start with the magic line", path)
	}
	var out [][2]int
	for off := len(Magic); off+frameLenSize <= len(b); {
		end := off + frameLenSize + int(binary.BigEndian.Uint32(b[off:]))
		if end > len(b) {
			break
		}
		out = append(out, [2]int{off, end})
		off = end
	}
	return out
}

// writeFrames records one output event per frame ("event 0", "event
// 1", …) and returns the closed recording's path.
func writeFrames(t *testing.T, keys *Keys, n int) string {
	t.Helper()
	start := time.Now()
	w, err := Create(t.TempDir(), "frames", Header{Width: 80, Height: 24}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		w.Output(start, fmt.Appendf(nil, "event %d", i))
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.Close(start)
	if err != nil {
		t.Fatal(err)
	}
	return sum.Path
}

// readEvents reads every event of the recording at path, or fails.
func readEvents(path string, keys *Keys) ([]Event, error) {
	r, err := Open(path, keys)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var evs []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// TestRecordingHasNoPlaintext: nothing the session printed or typed, nor
// its header, is in the stored bytes; the file is not gzip either, and it
// plays back with the identity.
func TestRecordingHasNoPlaintext(t *testing.T) {
	keys := testKeys(t)
	start := time.Now()
	secrets := []string{"alice@db-prod-7", "SELECT card_number FROM payments", "hunter2-typed-password", "uname -a marker", "LANG_SECRET"}
	w, err := Create(t.TempDir(), "secret", Header{Width: 80, Height: 24, Title: secrets[0], Env: map[string]string{"X": secrets[4]}}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	w.Output(start, []byte(secrets[1]+"\r\n"))
	w.Input(start, []byte(secrets[2]))
	w.Marker(start, secrets[3])
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Output(start, bytes.Repeat([]byte(secrets[1]), 1000)) // compressible: gzip would show a copy
	sum, err := w.Close(start)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(sum.Path) != ".age" {
		t.Errorf("got file %s, want a .cast.age", sum.Path)
	}
	raw, err := os.ReadFile(sum.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(secrets, "version", "hunter2", "card_number") {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the stored file contains %q", s)
		}
	}
	if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil {
		if _, err := io.ReadAll(zr); err == nil {
			t.Error("the stored file gunzips")
		}
	}
	evs, err := readEvents(sum.Path, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[2].Data != secrets[3] {
		t.Fatalf("got events %+v, want the 4 written", evs)
	}
}

// TestTornRecording: a recording cut anywhere (a crash mid-write) reads
// back every event of its complete frames and nothing else.
func TestTornRecording(t *testing.T) {
	keys := testKeys(t)
	const n = 4
	path := writeFrames(t, keys, n)
	full, _ := os.ReadFile(path)
	fs := frames(t, path)
	if len(fs) != n+1 { // the header's frame, then one per event
		t.Fatalf("got %d frames, want %d", len(fs), n+1)
	}
	if end := fs[len(fs)-1][1]; end != len(full) {
		t.Fatalf("frames end at %d, file at %d", end, len(full))
	}
	// Cut at and around every boundary, inside every length prefix and
	// in the middle of every frame.
	cuts := map[int]bool{len(Magic): true}
	for _, f := range fs {
		for _, c := range []int{f[0] + 1, f[0] + 3, f[0] + frameLenSize, (f[0] + f[1]) / 2, f[1] - 1, f[1]} {
			cuts[c] = true
		}
	}
	for cut := range cuts {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cut.cast.age")
			if err := os.WriteFile(p, full[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			complete := 0
			for _, f := range fs {
				if f[1] <= cut {
					complete++
				}
			}
			evs, err := readEvents(p, keys)
			if complete == 0 {
				if err == nil {
					t.Fatal("a file without the header's frame opened")
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want the events of %d complete frames", err, complete)
			}
			if len(evs) != complete-1 {
				t.Fatalf("got %d events, want %d", len(evs), complete-1)
			}
			for i, ev := range evs {
				if want := fmt.Sprintf("event %d", i); ev.Data != want {
					t.Errorf("event %d: got %q, want %q", i, ev.Data, want)
				}
			}
			var out bytes.Buffer
			if err := Export(p, keys, &out); err != nil || strings.Count(out.String(), "\n") != complete {
				t.Fatalf("export: got %v and %q, want %d lines", err, out.String(), complete)
			}
		})
	}
}

// TestTornBusyRecording: a busy session's frames end at maxSegment, each
// after a whole event: cut after any frame, the recording reads back
// every event of its complete frames, without error.
func TestTornBusyRecording(t *testing.T) {
	keys := testKeys(t)
	start := time.Now()
	w, err := Create(t.TempDir(), "busy", Header{}, start, keys)
	if err != nil {
		t.Fatal(err)
	}
	// Lines of 4 KiB and a bit: they do not line up with the writer's
	// buffers, so only care keeps frames from ending inside one.
	noise := make([]byte, 3<<10)
	const n = 1500 // about 6 MiB stored: several frames end on size
	for i := range n {
		rand.Read(noise)
		w.Output(start, fmt.Appendf([]byte(base64.StdEncoding.EncodeToString(noise)), " %d", i))
	}
	sum, err := w.Close(start)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(sum.Path)
	fs := frames(t, sum.Path)
	if len(fs) < 4 {
		t.Fatalf("got %d frames, want several ended on size", len(fs))
	}
	last := -1 // the last event read so far
	for i, f := range fs {
		for _, cut := range []int{f[1], (f[0] + f[1]) / 2} {
			if i == 0 && cut < f[1] {
				continue // no header yet: TestTornRecording
			}
			p := filepath.Join(t.TempDir(), "cut.cast.age")
			os.WriteFile(p, full[:cut], 0o600)
			evs, err := readEvents(p, keys)
			if err != nil {
				t.Fatalf("cut at %d (frame %d): got %v, want no error", cut, i, err)
			}
			for j, ev := range evs {
				if !strings.HasSuffix(ev.Data, fmt.Sprintf(" %d", j)) {
					t.Fatalf("cut at %d: event %d is not whole", cut, j)
				}
			}
			if cut == f[1] {
				if len(evs) < last+1 {
					t.Fatalf("cut after frame %d: got %d events, fewer than before", i, len(evs))
				}
				last = len(evs) - 1
			}
		}
	}
	if last != n-1 {
		t.Fatalf("got %d events in all, want %d", last+1, n)
	}
}

// TestDamagedRecording: garbage is reported as such, without a panic or
// an allocation of the size a garbage length claims.
func TestDamagedRecording(t *testing.T) {
	keys := testKeys(t)
	goodPath := writeFrames(t, keys, 2)
	good, _ := os.ReadFile(goodPath)
	fs := frames(t, goodPath)
	length := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flipped := bytes.Clone(good)
	flipped[(fs[2][0]+fs[2][1])/2] ^= 1 // inside the second event's frame
	tests := []struct {
		name    string
		file    []byte
		openErr error // from Open; nil: Open succeeds
		readErr error // from reading the events after a successful Open
	}{
		{name: "empty", file: nil, openErr: errAny},
		{name: "not a recording", file: []byte("hello world, this is not a recording\n"), openErr: ErrNotRecording},
		{name: "magic only", file: []byte(Magic), openErr: errAny},
		{name: "zero length", file: cat([]byte(Magic), length(0), []byte("x")), openErr: ErrBadFrame},
		{name: "oversized length", file: cat([]byte(Magic), length(0xffffffff), bytes.Repeat([]byte{1}, 100)), openErr: ErrBadFrame},
		{name: "length just over the bound", file: cat([]byte(Magic), length(MaxFrame+1)), openErr: ErrBadFrame},
		{name: "huge length, short file", file: cat([]byte(Magic), length(MaxFrame), []byte("garbage")), openErr: errAny},
		{name: "garbage frame", file: cat([]byte(Magic), length(16), []byte("0123456789abcdef")), openErr: ErrBadFrame},
		{name: "garbage after good frames", file: cat(good, length(16), []byte("0123456789abcdef")), readErr: ErrBadFrame},
		{name: "oversized length after good frames", file: cat(good, length(0x7fffffff)), readErr: ErrBadFrame},
		{name: "a flipped bit", file: flipped, readErr: ErrBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.cast.age")
			if err := os.WriteFile(p, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := readEvents(p, keys)
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
				t.Errorf("reading allocated %d bytes", grew)
			}
			want := tc.openErr
			if want == nil {
				want = tc.readErr
			}
			switch {
			case err == nil:
				t.Fatalf("got no error, want %v", want)
			case want != errAny && !errors.Is(err, want):
				t.Fatalf("got %v, want %v", err, want)
			}
			if tc.openErr == nil {
				// The good frames before the damage were readable.
				if _, oerr := Open(p, keys); oerr != nil {
					t.Fatalf("open: got %v, want the good frames readable", oerr)
				}
			}
			if errors.Is(err, ErrNoIdentity) {
				t.Fatalf("got %v: damage is not a missing identity", err)
			}
		})
	}
}

// errAny stands for any error in TestDamagedRecording.
var errAny = errors.New("any error")

// TestRecordingKeys: only an identity of a recipient reads a recording;
// keys with recipients only write but do not read.
func TestRecordingKeys(t *testing.T) {
	auditor1, _ := age.GenerateX25519Identity()
	auditor2, _ := age.GenerateX25519Identity()
	stranger, _ := age.GenerateX25519Identity()
	writeOnly := NewKeys([]age.Recipient{auditor1.Recipient(), auditor2.Recipient()}, nil)
	if writeOnly.CanDecrypt() || !writeOnly.CanEncrypt() {
		t.Fatalf("recipients-only keys: CanDecrypt %v CanEncrypt %v, want false true", writeOnly.CanDecrypt(), writeOnly.CanEncrypt())
	}
	path := writeFrames(t, writeOnly, 2)
	tests := []struct {
		name string
		keys *Keys
		ok   bool
	}{
		{"first auditor", NewKeys(nil, []age.Identity{auditor1}), true},
		{"second auditor", NewKeys(nil, []age.Identity{auditor2}), true},
		{"stranger and auditor", NewKeys(nil, []age.Identity{stranger, auditor2}), true},
		{"stranger", NewKeys(nil, []age.Identity{stranger}), false},
		{"recipients only", writeOnly, false},
		{"nil keys", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := readEvents(path, tc.keys)
			if tc.ok {
				if err != nil || len(evs) != 2 {
					t.Fatalf("got %d events, %v; want 2, nil", len(evs), err)
				}
				return
			}
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("open: got %v, want ErrNoIdentity", err)
			}
			var out bytes.Buffer
			if err := Export(path, tc.keys, &out); !errors.Is(err, ErrNoIdentity) || out.Len() != 0 {
				t.Fatalf("export: got %v and %d bytes, want ErrNoIdentity and none", err, out.Len())
			}
			err = ReadEvents(path, tc.keys, 1, func(Header) error { t.Error("header read"); return nil }, func(Event) error { return nil })
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("read events: got %v, want ErrNoIdentity", err)
			}
		})
	}
	for _, keys := range []*Keys{nil, NewKeys(nil, []age.Identity{auditor1})} {
		if _, err := Create(t.TempDir(), "x", Header{}, time.Now(), keys); err == nil {
			t.Errorf("Create with keys %v without recipients succeeded", keys)
		}
	}
}

// TestOldGzipRecording: recordings written before encryption (.cast.gz,
// gzip members of plain asciicast) still read, with any keys.
func TestOldGzipRecording(t *testing.T) {
	var b bytes.Buffer
	for _, part := range []string{"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1700000000}\n[0.5, \"o\", \"old\"]\n", "[1.000000, \"m\", \"member two\"]\n"} {
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(part))
		zw.Close()
	}
	path := filepath.Join(t.TempDir(), "old.cast.gz")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, keys := range []*Keys{nil, testKeys(t), NewKeys(testKeys(t).recipients, nil)} {
		evs, err := readEvents(path, keys)
		if err != nil || len(evs) != 2 || evs[0].Data != "old" || evs[1].Data != "member two" {
			t.Fatalf("got %+v, %v; want the 2 old events", evs, err)
		}
		var out bytes.Buffer
		if err := Export(path, keys, &out); err != nil || !strings.HasPrefix(out.String(), `{"version":2`) {
			t.Fatalf("export: got %v %q", err, out.String())
		}
	}
}

// fuzzIdentity is a test-only key, fixed so that fuzzing inputs found
// with it stay meaningful.
const fuzzIdentity = "AGE-SECRET-KEY-13U0DNTPQ3HVG8HFYFGSR82C4EMNQ7VXFZ45DAZJK8ZW88EHQ7RQS0SPX7U"

// FuzzFrameReader: no input makes the reader panic, loop or allocate
// beyond its bounds; whatever reads reads as asciicast events.
func FuzzFrameReader(f *testing.F) {
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		f.Fatal(err)
	}
	keys := NewKeys([]age.Recipient{id.Recipient()}, []age.Identity{id})
	w, err := Create(f.TempDir(), "fuzz", Header{Width: 80, Height: 24}, time.Unix(0, 0), keys)
	if err != nil {
		f.Fatal(err)
	}
	w.Output(time.Unix(1, 0), []byte("hello"))
	w.Flush()
	w.Marker(time.Unix(2, 0), "exec: ls")
	sum, err := w.Close(time.Unix(3, 0))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(sum.Path)
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(append(bytes.Clone(good), 0, 0, 0, 9, 'x'))
	f.Add([]byte(Magic + "\x00\x00\x00\x05hello"))
	f.Add([]byte(Magic + "\xff\xff\xff\xff"))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		gz, err := openGzip(bytes.NewReader(data), keys)
		if err != nil {
			return
		}
		defer gz.Close()
		d, _, err := newDecoder(gz)
		if err != nil {
			return
		}
		for range 1000 {
			if _, err := d.Next(); err != nil {
				return
			}
		}
	})
}
