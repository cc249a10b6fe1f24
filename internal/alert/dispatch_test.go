package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startDispatcher runs a Dispatcher over sinks with short timings until the
// returned stop is called (or the test ends); stop returns once Run has.
func startDispatcher(t *testing.T, st *Store, reg prometheus.Registerer, sinks ...Sink) (stop func()) {
	t.Helper()
	d, err := NewDispatcher(st, sinks, slog.New(slog.NewTextHandler(testLog{t}, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	d.backoff, d.maxBackoff, d.poll = 5*time.Millisecond, 40*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	// A new sink starts at the alerts raised after its cursor exists.
	for _, sk := range sinks {
		waitFor(t, "cursor of "+sk.Name(), func() bool { _, ok := cursorOf(t, st, sk.Name()); return ok })
	}
	return stop
}

// testLog writes the dispatcher's log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// cursorOf reads a sink's stored cursor.
func cursorOf(t *testing.T, st *Store, name string) (int64, bool) {
	t.Helper()
	var c int64
	err := st.db.QueryRowContext(context.Background(), `SELECT delivered FROM alert_cursors WHERE sink = $1`, name).Scan(&c)
	return c, err == nil
}

// raiseN raises n distinct alerts of severity sev.
func raiseN(t *testing.T, st *Store, n int, sev Severity) {
	t.Helper()
	for i := range n {
		raise(t, st, Alert{Severity: sev, Kind: "rule", Summary: fmt.Sprintf("alert %d", i)})
	}
}

func TestDispatchThroughFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, _ := newStore(t, reg)
	// Requests 1-3 get a 500, 4-5 a dropped connection, 6 a 500 again;
	// then the receiver is well.
	rcv := newReceiver(t, func(n int) action {
		switch {
		case n <= 3 || n == 6:
			return fail500
		case n <= 5:
			return hangup
		}
		return accept
	})
	stop := startDispatcher(t, st, reg, rcv.webhook("siem", ""))

	raiseN(t, st, 5, Medium)
	// A repeat is merged into alert 1 and not sent again.
	first, _ := raise(t, st, Alert{Severity: High, Kind: "rule", Summary: "dup", DedupKey: "k"})
	for range 3 {
		if _, merged := raise(t, st, Alert{Severity: High, Kind: "rule", Summary: "dup", DedupKey: "k"}); !merged {
			t.Fatal("repeat: got a new alert, want a merge")
		}
	}
	raiseN(t, st, 4, Low)
	want := ids(1, 10)
	if first.ID != 6 {
		t.Fatalf("dedup alert: got id %d, want 6", first.ID)
	}

	waitFor(t, "every alert delivered", func() bool { return len(rcv.received()) >= len(want) })
	waitFor(t, "cursor at 10", func() bool { c, _ := cursorOf(t, st, "siem"); return c == 10 })
	stop()
	if got := rcv.received(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, want := rcv.requestCount(), 16; got != want {
		t.Fatalf("got %d requests, want %d (6 failures, 10 deliveries)", got, want)
	}
	for outcome, want := range map[string]float64{"delivered": 10, "failed": 6, "skipped": 0} {
		if got := counterValue(t, reg, "vigil_alert_deliveries_total", map[string]string{"sink": "siem", "outcome": outcome}); got != want {
			t.Fatalf("%s: got %v, want %v", outcome, got, want)
		}
	}
	if got := counterValue(t, reg, "vigil_alert_sink_backlog", map[string]string{"sink": "siem"}); got != 0 {
		t.Fatalf("backlog: got %v, want 0", got)
	}
}

func TestDispatchRestart(t *testing.T) {
	st, _ := newStore(t, nil)
	rcv := newReceiver(t, nil)
	stop := startDispatcher(t, st, nil, rcv.webhook("siem", ""))
	raiseN(t, st, 3, High)
	waitFor(t, "cursor at 3", func() bool { c, _ := cursorOf(t, st, "siem"); return c == 3 })
	stop()

	// Raised while Vigil is down: delivered after the restart.
	raiseN(t, st, 2, High)
	if got := rcv.received(); !reflect.DeepEqual(got, ids(1, 3)) {
		t.Fatalf("before restart: got %v, want %v", got, ids(1, 3))
	}

	// The restart brings a new sink, which starts at the current alerts
	// rather than receiving the history.
	late := newReceiver(t, nil)
	st2, err := NewStore(st.db, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop = startDispatcher(t, st2, nil, rcv.webhook("siem", ""), late.webhook("late", ""))
	if c, _ := cursorOf(t, st2, "late"); c != 5 {
		t.Fatalf("new sink: got cursor %d, want 5", c)
	}
	raiseN(t, st2, 1, High)
	waitFor(t, "cursor at 6", func() bool {
		a, _ := cursorOf(t, st2, "siem")
		b, _ := cursorOf(t, st2, "late")
		return a == 6 && b == 6
	})
	stop()
	if got := rcv.received(); !reflect.DeepEqual(got, ids(1, 6)) {
		t.Fatalf("siem: got %v, want %v", got, ids(1, 6))
	}
	if got := late.received(); !reflect.DeepEqual(got, []int64{6}) {
		t.Fatalf("late: got %v, want [6]", got)
	}
}

func TestDispatchMinSeverity(t *testing.T) {
	// Subtest names avoid '#' (an empty name becomes "#00"), which the
	// SQLite file: URI would read as a fragment, cutting the path short.
	tests := []struct {
		name        string
		min         Severity
		want        []int64
		wantSkipped float64
	}{
		{"unset", "", ids(1, 5), 0},
		{"low", Low, ids(1, 5), 0},
		{"medium", Medium, []int64{2, 3, 4}, 2},
		{"high", High, []int64{2, 4}, 3},
		{"critical", Critical, []int64{4}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			st, _ := newStore(t, reg)
			rcv := newReceiver(t, nil)
			stop := startDispatcher(t, st, reg, rcv.webhook("siem", tc.min))
			for _, sev := range []Severity{Low, High, Medium, Critical, Low} {
				raise(t, st, Alert{Severity: sev, Kind: "rule", Summary: string(sev)})
			}
			// Skipped alerts move the cursor too.
			waitFor(t, "cursor at 5", func() bool { c, _ := cursorOf(t, st, "siem"); return c == 5 })
			stop()
			if got := rcv.received(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if got := counterValue(t, reg, "vigil_alert_deliveries_total", map[string]string{"sink": "siem", "outcome": "skipped"}); got != tc.wantSkipped {
				t.Fatalf("skipped: got %v, want %v", got, tc.wantSkipped)
			}
		})
	}
}

func TestDispatchSinkDownDoesNotDelayOthers(t *testing.T) {
	st, _ := newStore(t, nil)
	down := newReceiver(t, func(int) action { return hang })
	up := newReceiver(t, nil)
	startDispatcher(t, st, nil, down.webhook("down", ""), up.webhook("up", ""))

	raiseN(t, st, 5, High)
	waitFor(t, "the healthy sink to get everything", func() bool { return len(up.received()) == 5 })
	if got := up.received(); !reflect.DeepEqual(got, ids(1, 5)) {
		t.Fatalf("up: got %v, want %v", got, ids(1, 5))
	}
	if got := down.received(); len(got) != 0 {
		t.Fatalf("down: got %v, want nothing yet", got)
	}
	if c, _ := cursorOf(t, st, "down"); c != 0 {
		t.Fatalf("down: got cursor %d, want 0", c)
	}

	// The sink comes back and catches up, in order.
	down.unblock()
	waitFor(t, "the recovered sink to catch up", func() bool { c, _ := cursorOf(t, st, "down"); return c == 5 })
	if got := down.received(); !reflect.DeepEqual(got, ids(1, 5)) {
		t.Fatalf("down: got %v, want %v", got, ids(1, 5))
	}
}

// flakySink fails its first failures sends, then records what it gets.
type flakySink struct {
	failures int
	calls    chan Alert
}

func (f *flakySink) Name() string          { return "flaky" }
func (f *flakySink) MinSeverity() Severity { return "" }
func (f *flakySink) Send(ctx context.Context, a Alert) error {
	f.calls <- a
	if f.failures > 0 {
		f.failures--
		return errors.New("flaky: down")
	}
	return nil
}

func TestDispatchNeverSkipsAFailingAlert(t *testing.T) {
	st, _ := newStore(t, nil)
	sink := &flakySink{failures: 20, calls: make(chan Alert, 100)}
	startDispatcher(t, st, nil, sink)
	raiseN(t, st, 2, High)
	var got []int64
	for len(got) < 22 {
		select {
		case a := <-sink.calls:
			got = append(got, a.ID)
		case <-time.After(waitDeadline):
			t.Fatalf("timed out; got calls %v", got)
		}
	}
	want := append(slicesRepeat(1, 21), 2)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// slicesRepeat returns n copies of id.
func slicesRepeat(id int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = id
	}
	return out
}

func TestNewDispatcherRejects(t *testing.T) {
	st, _ := newStore(t, nil)
	ok := &Webhook{SinkName: "a", URL: "https://siem.example/", Secret: testSecret}
	tests := []struct {
		name  string
		sinks []Sink
		want  string
	}{
		{"duplicate names", []Sink{ok, &Webhook{SinkName: "a", URL: "https://other.example/", Secret: testSecret}}, "two sinks"},
		{"invalid webhook", []Sink{&Webhook{SinkName: "b", URL: "https://siem.example/"}}, "secret"},
		{"no name", []Sink{&flakySink{}, &namelessSink{}}, "without a name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDispatcher(st, tc.sinks, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewDispatcher(nil, nil, nil, nil); err == nil {
		t.Fatal("no store: got nil error")
	}
	// Two dispatchers may share a registry (a restart in one process).
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := NewDispatcher(st, []Sink{ok}, nil, reg); err != nil {
			t.Fatal(err)
		}
	}
}

// namelessSink is a Sink without a name.
type namelessSink struct{ flakySink }

func (*namelessSink) Name() string { return "" }

func TestDispatchSurvivesCursorWriteFailures(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t, nil)
	rcv := newReceiver(t, nil)
	startDispatcher(t, st, nil, rcv.webhook("siem", ""))

	// With the cursor table gone the first delivery cannot be recorded:
	// the dispatcher must retry the write, not the delivery, and send
	// nothing after it until the write succeeds.
	if _, err := st.db.ExecContext(ctx, `ALTER TABLE alert_cursors RENAME TO alert_cursors_away`); err != nil {
		t.Fatal(err)
	}
	raiseN(t, st, 3, High)
	waitFor(t, "the first delivery", func() bool { return len(rcv.received()) >= 1 })
	if _, err := st.db.ExecContext(ctx, `ALTER TABLE alert_cursors_away RENAME TO alert_cursors`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cursor at 3", func() bool { c, _ := cursorOf(t, st, "siem"); return c == 3 })
	if got := rcv.received(); !reflect.DeepEqual(got, ids(1, 3)) {
		t.Fatalf("got %v, want %v", got, ids(1, 3))
	}
}
