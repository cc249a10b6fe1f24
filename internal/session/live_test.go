package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-pam/vigil/internal/recording"
)

// ctlLog records the calls a gateway would get.
type ctlLog struct {
	mu    sync.Mutex
	calls []string
}

func (c *ctlLog) add(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}
func (c *ctlLog) Paused(by, reason string)    { c.add("paused " + by + ": " + reason) }
func (c *ctlLog) Resumed(by string)           { c.add("resumed " + by) }
func (c *ctlLog) Terminate(by, reason string) { c.add("terminate " + by + ": " + reason) }

// newLive registers a session recorded with keys that can decrypt it.
func newLive(t *testing.T) (*Registry, *Live, *recording.Writer, *ctlLog) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return newLiveWithKeys(t, recording.NewKeys([]age.Recipient{id.Recipient()}, []age.Identity{id}))
}

// newLiveWithKeys registers a session recorded with keys.
func newLiveWithKeys(t *testing.T, keys *recording.Keys) (*Registry, *Live, *recording.Writer, *ctlLog) {
	t.Helper()
	w, err := recording.Create(t.TempDir(), "s_test", recording.Header{Width: 80, Height: 24}, time.Now(), keys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(time.Now()) })
	ctl := &ctlLog{}
	r := NewRegistry(nil)
	l := r.Register(Session{ID: "s_test", User: "alice", Target: "web1"}, "vigil", w, ctl)
	w.SetTap(l.Publish)
	return r, l, w, ctl
}

func TestLiveControls(t *testing.T) {
	r, l, _, ctl := newLive(t)
	ctx := context.Background()
	if err := l.Wait(ctx); err != nil {
		t.Fatalf("wait on a running session: %v", err)
	}
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"resume a running session", func() error { return l.Resume("bob") }, ErrNotPaused},
		{"pause", func() error { return l.Pause("bob", "look\x1b[2J here") }, nil},
		{"pause twice", func() error { return l.Pause("bob", "again") }, ErrPaused},
		{"resume", func() error { return l.Resume("bob") }, nil},
		{"terminate", func() error { return l.Terminate("bob", "done") }, nil},
		{"terminate twice", func() error { return l.Terminate("bob", "done") }, ErrNotLive},
		{"pause an ending session", func() error { return l.Pause("bob", "late") }, ErrNotLive},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
		}
	}
	want := []string{"paused bob: look?[2J here", "resumed bob", "terminate bob: done"}
	if fmt.Sprint(ctl.calls) != fmt.Sprint(want) {
		t.Fatalf("got calls %q, want %q", ctl.calls, want)
	}
	r.Remove(l, "gone")
	if _, ok := r.Get("s_test"); ok {
		t.Fatal("removed session still listed")
	}
}

func TestWaitBlocksWhilePaused(t *testing.T) {
	r, l, _, _ := newLive(t)
	l.Pause("bob", "check")
	released := make(chan error, 1)
	go func() { released <- l.Wait(context.Background()) }()
	select {
	case err := <-released:
		t.Fatalf("wait returned while paused: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.Resume("bob")
	if err := <-released; err != nil {
		t.Fatalf("wait after resume: %v", err)
	}

	// A paused session that ends releases its waiters; a cancelled
	// waiter returns the cause.
	l.Pause("bob", "again")
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("terminated")
	go func() { released <- l.Wait(ctx) }()
	cancel(cause)
	if err := <-released; !errors.Is(err, cause) {
		t.Fatalf("got %v, want the cause", err)
	}
	go func() { released <- l.Wait(context.Background()) }()
	r.Remove(l, "ended")
	if err := <-released; err != nil {
		t.Fatalf("wait after end: %v", err)
	}
}

func TestWatcherCatchUpThenLive(t *testing.T) {
	r, l, w, _ := newLive(t)
	now := time.Now()
	for i := range 100 {
		w.Output(now, fmt.Appendf(nil, "before %d\n", i))
	}
	wt, err := l.Watch(1000)
	if err != nil {
		t.Fatal(err)
	}
	// Events written concurrently with the catch-up are neither lost nor
	// doubled.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			w.Output(now, fmt.Appendf(nil, "after %d\n", i))
		}
	}()
	var got []string
	noHeader := func(recording.Header) error { return nil }
	if err := wt.CatchUp(noHeader, func(line []byte) error { got = append(got, eventData(t, line)); return nil }); err != nil {
		t.Fatal(err)
	}
	<-done
	r.Remove(l, "bye")
	for line := range wt.C {
		got = append(got, eventData(t, line))
	}
	if len(got) != 200 {
		t.Fatalf("got %d events, want 200", len(got))
	}
	for i, s := range got {
		want := fmt.Sprintf("before %d\n", i)
		if i >= 100 {
			want = fmt.Sprintf("after %d\n", i-100)
		}
		if s != want {
			t.Fatalf("event %d: got %q, want %q", i, s, want)
		}
	}
	if wt.Reason() != "session ended: bye" {
		t.Fatalf("got reason %q", wt.Reason())
	}
	if _, err := l.Watch(1); !errors.Is(err, ErrNotLive) {
		t.Fatalf("watch an ended session: got %v, want ErrNotLive", err)
	}
}

// TestWatcherCatchUpEncrypted: where the server cannot decrypt the
// recording (auditors' keys only, or an identity of none of them), the
// watcher gets the header, a marker saying why the beginning is missing,
// and the live events; never an error, never the earlier output.
func TestWatcherCatchUpEncrypted(t *testing.T) {
	auditor, _ := age.GenerateX25519Identity()
	stranger, _ := age.GenerateX25519Identity()
	tests := []struct {
		name string
		keys *recording.Keys
	}{
		{"recipients only", recording.NewKeys([]age.Recipient{auditor.Recipient()}, nil)},
		{"identity of no recipient", recording.NewKeys([]age.Recipient{auditor.Recipient()}, []age.Identity{stranger})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, l, w, _ := newLiveWithKeys(t, tc.keys)
			w.Output(time.Now(), []byte("secret before\n"))
			wt, err := l.Watch(10)
			if err != nil {
				t.Fatal(err)
			}
			var hdr recording.Header
			var got []string
			err = wt.CatchUp(func(h recording.Header) error { hdr = h; return nil }, func(line []byte) error {
				got = append(got, eventData(t, line))
				return nil
			})
			if err != nil {
				t.Fatalf("catch-up: got %v, want nil", err)
			}
			if hdr.Version != 2 || hdr.Width != 80 {
				t.Fatalf("got header %+v, want the recording's", hdr)
			}
			if len(got) != 1 || !strings.Contains(got[0], "encrypted for the auditors") {
				t.Fatalf("got catch-up %q, want one marker", got)
			}
			w.Output(time.Now(), []byte("live after\n"))
			r.Remove(l, "bye")
			var live []string
			for line := range wt.C {
				live = append(live, eventData(t, line))
			}
			if len(live) != 1 || live[0] != "live after\n" {
				t.Fatalf("got live events %q, want the one after the watch began", live)
			}
		})
	}
}

// eventData returns the data of an asciicast event line.
func eventData(t *testing.T, line []byte) string {
	t.Helper()
	var ev [3]any
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("event line %q: %v", line, err)
	}
	return ev[2].(string)
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	_, l, w, _ := newLive(t)
	slow, _ := l.Watch(2)
	fast, _ := l.Watch(100)
	for i := range 10 {
		// The session never waits for a watcher.
		w.Output(time.Now(), fmt.Appendf(nil, "%d", i))
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != 2 || slow.Reason() != "the watcher fell behind and was cut off" {
		t.Fatalf("slow watcher got %d events, reason %q", n, slow.Reason())
	}
	if len(fast.C) != 10 {
		t.Fatalf("fast watcher got %d events, want 10", len(fast.C))
	}
	// A watcher is bounded in bytes too, however roomy its channel.
	big, _ := l.Watch(1000)
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for range 200 {
		w.Output(time.Now(), chunk)
	}
	if n := len(big.C); n*len(chunk) > watcherBudget+len(chunk) || big.Reason() != "the watcher fell behind and was cut off" {
		t.Fatalf("big watcher holds %d events, reason %q", n, big.Reason())
	}
	fast.Close()
	fast.Close() // twice is harmless
	if l.Status().Watchers != 0 {
		t.Fatalf("got %d watchers, want 0", l.Status().Watchers)
	}
}

func TestEndMatching(t *testing.T) {
	r := NewRegistry(nil)
	var ctls []*ctlLog
	for i, u := range []string{"alice", "bob", "alice"} {
		c := &ctlLog{}
		ctls = append(ctls, c)
		r.Register(Session{ID: fmt.Sprint(i), User: u}, "vigil", nil, c)
	}
	n := r.EndMatching(func(l *Live) bool { return l.Info.User == "alice" }, "admin", "locked")
	if n != 2 || len(ctls[0].calls) != 1 || len(ctls[1].calls) != 0 || len(ctls[2].calls) != 1 {
		t.Fatalf("got %d ended, calls %v %v %v", n, ctls[0].calls, ctls[1].calls, ctls[2].calls)
	}
}
