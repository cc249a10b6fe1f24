package siem

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
)

// fakeSink records what it is sent; answer decides each call's outcome.
type fakeSink struct {
	name string
	// answer returns how many of events call n (from 1) delivers and
	// the error; nil delivers all.
	answer func(n int, events []audit.Event) (int, error)

	// mu guards calls, got and closed.
	mu     sync.Mutex
	calls  int
	got    []int64
	closed bool
}

func (s *fakeSink) Name() string { return s.name }

func (s *fakeSink) Send(ctx context.Context, events []audit.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	n, err := len(events), error(nil)
	if s.answer != nil {
		n, err = s.answer(s.calls, events)
	}
	for _, ev := range events[:min(n, len(events))] {
		s.got = append(s.got, ev.Seq)
	}
	return n, err
}

func (s *fakeSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeSink) received() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.got...)
}

// TestForwardNeverSkips: failures, partial sends and a sink that is down
// do not lose, reorder or repeat an event, nor hold up another sink.
func TestForwardNeverSkips(t *testing.T) {
	errDown := errors.New("down")
	tests := []struct {
		name   string
		answer func(n int, events []audit.Event) (int, error)
	}{
		{"all at once", nil},
		{"fails three times, then well", func(n int, events []audit.Event) (int, error) {
			if n <= 3 {
				return 0, errDown
			}
			return len(events), nil
		}},
		{"seven at a time", func(n int, events []audit.Event) (int, error) { return min(7, len(events)), nil }},
		{"part, then an error, alternately", func(n int, events []audit.Event) (int, error) {
			if n%2 == 0 {
				return min(3, len(events)), errDown
			}
			return min(5, len(events)), nil
		}},
		{"claims more than it was given", func(n int, events []audit.Event) (int, error) { return len(events) + 10, nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t)
			l := openLog(t, db)
			appendN(t, l, 40, 10)
			sk := &fakeSink{name: "fake", answer: tc.answer}
			down := &fakeSink{name: "down", answer: func(int, []audit.Event) (int, error) { return 0, errDown }}
			reg := prometheus.NewRegistry()
			f, stop := startForwarder(t, db, l, reg, sk, down)
			appendN(t, l, 40, 10)
			waitFor(t, "cursor at 80", func() bool { return cursorOf(t, db, "fake") == 80 })
			checkExactlyOnce(t, sk.received(), 80)
			// The counter moves just after the cursor.
			waitFor(t, "80 forwarded", func() bool { return metricValue(t, reg, "vigil_siem_events_forwarded_total", "fake") == 80 })
			waitFor(t, "the cursor of the sink that is down", func() bool { return f.Backlog("down") >= 0 })
			if c := cursorOf(t, db, "down"); c != 0 {
				t.Fatalf("cursor of the sink that is down: got %d, want 0", c)
			}
			if b := f.Backlog("down"); b != 80 {
				t.Fatalf("backlog of the sink that is down: got %d, want 80", b)
			}
			waitFor(t, "backlog metric", func() bool { return metricValue(t, reg, "vigil_siem_backlog", "down") == 80 })
			stop()
			if !sk.closed || !down.closed {
				t.Fatal("Run returned without closing its sinks")
			}
		})
	}
}

// TestForwardCursorWriteFailure: while the cursor cannot be written the
// forwarder retries the write, not the send, and sends nothing further.
func TestForwardCursorWriteFailure(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	l := openLog(t, db)
	sk := &fakeSink{name: "fake", answer: func(n int, events []audit.Event) (int, error) { return 1, nil }}
	f, _ := startForwarder(t, db, l, nil, sk)
	waitFor(t, "the cursor", func() bool { return f.Backlog("fake") == 0 })
	if _, err := db.ExecContext(ctx, `ALTER TABLE audit_forward_cursors RENAME TO away`); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, 10)
	waitFor(t, "the first send", func() bool { return len(sk.received()) >= 1 })
	if got := sk.received(); len(got) != 1 {
		t.Fatalf("sent %v before the first cursor write, want [1]", got)
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE away RENAME TO audit_forward_cursors`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cursor at 3", func() bool { return cursorOf(t, db, "fake") == 3 })
	checkExactlyOnce(t, sk.received(), 3)
}

// TestForwardExistingCursor: a sink resumes after its stored cursor.
func TestForwardExistingCursor(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	appendN(t, l, 10, 10)
	if _, err := db.ExecContext(context.Background(), `INSERT INTO audit_forward_cursors (sink, seq, updated_at) VALUES ('fake', 6, 0)`); err != nil {
		t.Fatal(err)
	}
	sk := &fakeSink{name: "fake"}
	startForwarder(t, db, l, nil, sk)
	waitFor(t, "cursor at 10", func() bool { return cursorOf(t, db, "fake") == 10 })
	if got, want := sk.received(), seqs(7, 10); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNewForwarderRejects(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	tests := []struct {
		name    string
		sinks   []Sink
		wantErr string
	}{
		{"no name", []Sink{&fakeSink{}}, "siem: a sink without a name"},
		{"two of a name", []Sink{&fakeSink{name: "a"}, &fakeSink{name: "a"}}, `siem: two sinks named "a"`},
		{"invalid syslog", []Sink{&Syslog{SinkName: "s", Addr: "nowhere"}}, `siem: syslog s: address "nowhere" is not HOST:PORT`},
		{"invalid webhook", []Sink{&Webhook{SinkName: "w", URL: "https://x/"}}, "siem: webhook w: no signing secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewForwarder(db, l, tc.sinks, nil, nil)
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := NewForwarder(nil, l, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "needs a store") {
		t.Fatalf("no store: got %v, want an error", err)
	}
}

// TestForwardNoSinks: Run with no sinks returns when its context ends.
func TestForwardNoSinks(t *testing.T) {
	db := openDB(t)
	_, stop := startForwarder(t, db, openLog(t, db), prometheus.NewRegistry())
	stop()
}
