package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
)

// EventSuppressed is the audit event that counts the events a Throttle
// held back from one source in one window.
const EventSuppressed = "audit.suppressed"

// otherSources is the Throttle's key for sources beyond its table.
const otherSources = "(other sources)"

// ThrottleOptions bound what a Throttle lets through per window.
type ThrottleOptions struct {
	// Window is the period the limits count over; 0 means one minute.
	Window time.Duration
	// PerSource is how many events of one source go through per window;
	// 0 means 60.
	PerSource int
	// Total is how many events of all sources go through per window; 0
	// means 1000.
	Total int
	// MaxSources bounds the sources counted one by one; beyond it, new
	// sources share one count. 0 means 10000.
	MaxSources int
}

// Throttle is an audit.Sink for the events of connections that have not
// logged in (garbage, refused logins, stray cancel requests): anyone who
// can reach a gateway can cause them, as fast as they can connect, and
// must not be able to fill the audit log. Up to PerSource events per
// source, and Total in all, go through per window; the rest are counted
// by source and type, and each window's counts are written as one
// EventSuppressed event per source (Flush, Run), so the log still says
// how many there were, from where and of what type. Events of logged-in
// sessions must not go through a Throttle.
type Throttle struct {
	sink audit.Sink
	opts ThrottleOptions

	mu         sync.Mutex
	start      time.Time // of the window
	total      int
	passed     map[string]int
	suppressed map[string]map[string]int // source -> type -> count
}

// NewThrottle returns a Throttle in front of sink.
func NewThrottle(sink audit.Sink, opts ThrottleOptions) *Throttle {
	if opts.Window <= 0 {
		opts.Window = time.Minute
	}
	if opts.PerSource <= 0 {
		opts.PerSource = 60
	}
	if opts.Total <= 0 {
		opts.Total = 1000
	}
	if opts.MaxSources <= 0 {
		opts.MaxSources = 10000
	}
	return &Throttle{sink: sink, opts: opts, start: time.Now(), passed: map[string]int{}, suppressed: map[string]map[string]int{}}
}

// Append passes e to the sink, or counts it when its source, or all
// sources, are over their limit for the window (and returns nil: the
// count is written by the next Flush).
func (t *Throttle) Append(ctx context.Context, e audit.Event) error {
	t.mu.Lock()
	key := e.Source
	if _, ok := t.passed[key]; !ok && len(t.passed) >= t.opts.MaxSources {
		key = otherSources
	}
	if t.total < t.opts.Total && t.passed[key] < t.opts.PerSource {
		t.total++
		t.passed[key]++
		t.mu.Unlock()
		return t.sink.Append(ctx, e)
	}
	if _, ok := t.suppressed[key]; !ok && len(t.suppressed) >= t.opts.MaxSources {
		key = otherSources
	}
	byType := t.suppressed[key]
	if byType == nil {
		byType = map[string]int{}
		t.suppressed[key] = byType
	}
	byType[e.Type]++
	t.mu.Unlock()
	return nil
}

// Flush starts a new window and writes an EventSuppressed event for
// each source with events held back in the one that ended. It returns
// the first write error (the counts of that source are then lost, and
// the error says how many).
func (t *Throttle) Flush(ctx context.Context) error {
	t.mu.Lock()
	start, suppressed := t.start, t.suppressed
	t.start, t.total = time.Now(), 0
	t.passed, t.suppressed = map[string]int{}, map[string]map[string]int{}
	t.mu.Unlock()
	var first error
	for source, byType := range suppressed {
		n := 0
		events := make(map[string]any, len(byType))
		for typ, c := range byType {
			n += c
			events[typ] = c
		}
		data := map[string]any{
			"reason": "too many events from connections that did not log in",
			"events": events, "total": n, "since": start.UTC().Format(time.RFC3339),
			"per_source_limit": t.opts.PerSource, "total_limit": t.opts.Total,
		}
		src := source
		if src == otherSources {
			// Sources beyond the table, counted together.
			src, data["other_sources"] = "", true
		}
		if err := t.sink.Append(ctx, audit.Event{Type: EventSuppressed, Source: src, Data: data}); err != nil && first == nil {
			first = fmt.Errorf("gateway: %d suppressed events of %s not counted in the audit log: %w", n, source, err)
		}
	}
	return first
}

// Run flushes every window until ctx ends, then once more.
func (t *Throttle) Run(ctx context.Context, onError func(error)) {
	tick := time.NewTicker(t.opts.Window)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := t.Flush(ctx); err != nil {
				onError(err)
			}
		case <-ctx.Done():
			if err := t.Flush(context.WithoutCancel(ctx)); err != nil {
				onError(err)
			}
			return
		}
	}
}
