package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-pam/vigil/internal/audit"
)

// memSink keeps the events appended to it; it fails while fail is set.
type memSink struct {
	mu     sync.Mutex
	events []audit.Event
	fail   bool
}

func (m *memSink) Append(_ context.Context, e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.events = append(m.events, e)
	return nil
}

func (m *memSink) take() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.events
	m.events = nil
	return out
}

func TestThrottle(t *testing.T) {
	type burst struct {
		source string
		n      int
	}
	tests := []struct {
		name   string
		opts   ThrottleOptions
		bursts []burst
		passed map[string]int // events through, by source
		counts map[string]int // suppressed, by source of the summary ("" for other sources)
	}{
		{"under the limits", ThrottleOptions{PerSource: 5, Total: 100},
			[]burst{{"10.0.0.1", 5}, {"10.0.0.2", 3}},
			map[string]int{"10.0.0.1": 5, "10.0.0.2": 3}, map[string]int{}},
		{"one source over its limit", ThrottleOptions{PerSource: 5, Total: 100},
			[]burst{{"10.0.0.1", 12}, {"10.0.0.2", 2}},
			map[string]int{"10.0.0.1": 5, "10.0.0.2": 2}, map[string]int{"10.0.0.1": 7}},
		{"all sources over the total", ThrottleOptions{PerSource: 5, Total: 6},
			[]burst{{"10.0.0.1", 4}, {"10.0.0.2", 4}},
			map[string]int{"10.0.0.1": 4, "10.0.0.2": 2}, map[string]int{"10.0.0.2": 2}},
		{"sources beyond the table share a count", ThrottleOptions{PerSource: 2, Total: 100, MaxSources: 2},
			[]burst{{"10.0.0.1", 3}, {"10.0.0.2", 1}, {"10.0.0.3", 1}, {"10.0.0.4", 1}, {"10.0.0.5", 1}},
			map[string]int{"10.0.0.1": 2, "10.0.0.2": 1, "10.0.0.3": 1, "10.0.0.4": 1},
			map[string]int{"10.0.0.1": 1, "": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			th := NewThrottle(sink, tc.opts)
			ctx := context.Background()
			for _, b := range tc.bursts {
				for i := range b.n {
					if err := th.Append(ctx, audit.Event{Type: "db.auth", Source: b.source, Data: map[string]any{"i": i}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			passed := map[string]int{}
			for _, e := range sink.take() {
				passed[e.Source]++
			}
			if fmt.Sprint(passed) != fmt.Sprint(tc.passed) {
				t.Errorf("passed %v, want %v", passed, tc.passed)
			}
			if err := th.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for _, e := range sink.take() {
				if e.Type != EventSuppressed {
					t.Fatalf("flush wrote %s", e.Type)
				}
				counts[e.Source] += e.Data["total"].(int)
				if e.Data["events"].(map[string]any)["db.auth"] != e.Data["total"] {
					t.Errorf("summary %v: counts by type do not add up", e.Data)
				}
				if _, other := e.Data["other_sources"]; other != (e.Source == "") {
					t.Errorf("summary for %q: other_sources %v", e.Source, other)
				}
			}
			if fmt.Sprint(counts) != fmt.Sprint(tc.counts) {
				t.Errorf("suppressed %v, want %v", counts, tc.counts)
			}
			// A new window: the source goes through again, and a flush
			// with nothing held back writes nothing.
			if err := th.Append(ctx, audit.Event{Type: "db.auth", Source: "10.0.0.1"}); err != nil {
				t.Fatal(err)
			}
			if err := th.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := sink.take(); len(got) != 1 || got[0].Type != "db.auth" {
				t.Errorf("next window: %v", got)
			}
		})
	}
}

// TestThrottleFlushFailure: a summary that cannot be written is an
// error saying how many events it counted.
func TestThrottleFlushFailure(t *testing.T) {
	sink := &memSink{}
	th := NewThrottle(sink, ThrottleOptions{PerSource: 1})
	ctx := context.Background()
	for range 4 {
		th.Append(ctx, audit.Event{Type: "ssh.auth", Source: "10.0.0.9"})
	}
	sink.fail = true
	err := th.Flush(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 suppressed events of 10.0.0.9") {
		t.Errorf("got %v", err)
	}
}

// TestThrottleRun: Run writes the counts when its context ends.
func TestThrottleRun(t *testing.T) {
	sink := &memSink{}
	th := NewThrottle(sink, ThrottleOptions{PerSource: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		th.Run(ctx, func(err error) { t.Error(err) })
	}()
	for range 3 {
		th.Append(context.Background(), audit.Event{Type: "db.startup_failed", Source: "10.0.0.7"})
	}
	cancel()
	<-done
	got := sink.take()
	if len(got) != 2 || got[1].Type != EventSuppressed || got[1].Data["total"] != 2 {
		t.Errorf("got %v", got)
	}
}
