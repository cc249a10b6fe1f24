package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/store"
)

// t0 is the test clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// openDB opens a fresh migrated SQLite database in a temporary directory.
func openDB(t *testing.T) *store.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vigil.db")
	// store.Open builds a SQLite file: URI from the path without escaping
	// it, so these would open some other file; t.TempDir keeps '#' and '%'
	// from the test's name.
	if strings.ContainsAny(path, "#?%") {
		t.Fatalf("test name gives database path %q, which SQLite would misread", path)
	}
	db, err := store.Open(context.Background(), "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newStore returns a store on a fresh database with a test clock at t0
// and a five-minute window.
func newStore(t *testing.T, reg prometheus.Registerer) (*Store, *clock) {
	t.Helper()
	c := &clock{t: t0}
	s, err := NewStore(openDB(t), c.now, 0, reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// raise raises a and fails the test on error.
func raise(t *testing.T, s *Store, a Alert) (Alert, bool) {
	t.Helper()
	got, merged, err := s.Raise(context.Background(), a)
	if err != nil {
		t.Fatalf("raise %+v: %v", a, err)
	}
	return got, merged
}

func TestParseSeverity(t *testing.T) {
	tests := []struct {
		in      string
		want    Severity
		rank    int
		wantErr bool
	}{
		{"low", Low, 1, false},
		{"medium", Medium, 2, false},
		{" High ", High, 3, false},
		{"CRITICAL", Critical, 4, false},
		{"", "", 0, true},
		{"severe", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSeverity(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want || got.Rank() != tc.rank {
				t.Fatalf("got %q rank %d, want %q rank %d", got, got.Rank(), tc.want, tc.rank)
			}
		})
	}
}

func TestNewStoreRejects(t *testing.T) {
	if _, err := NewStore(nil, nil, 0, nil); err == nil {
		t.Fatal("nil database: got nil error")
	}
	if _, err := NewStore(openDB(t), nil, -time.Second, nil); err == nil {
		t.Fatal("negative window: got nil error")
	}
}

func TestRaiseRejectsBadInput(t *testing.T) {
	s, _ := newStore(t, nil)
	good := Alert{Severity: High, Kind: "rule", Summary: "sudo su"}
	tests := []struct {
		name   string
		modify func(*Alert)
		want   string
	}{
		{"no kind", func(a *Alert) { a.Kind = "" }, "needs a kind"},
		{"no summary", func(a *Alert) { a.Summary = "" }, "needs a summary"},
		{"no severity", func(a *Alert) { a.Severity = "" }, "unknown severity"},
		{"unknown severity", func(a *Alert) { a.Severity = "urgent" }, "unknown severity"},
		{"unencodable data", func(a *Alert) { a.Data = map[string]any{"ch": make(chan int)} }, "data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.modify(&a)
			_, _, err := s.Raise(context.Background(), a)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "alert: ") {
				t.Fatalf("got %v, want an alert: error containing %q", err, tc.want)
			}
		})
	}
	if got, err := s.List(context.Background(), Filter{}); err != nil || len(got) != 0 {
		t.Fatalf("after bad input: got %d alerts (err %v), want 0", len(got), err)
	}
}

func TestRaiseStoresAndGetReadsBack(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, nil)
	in := Alert{
		Time: t0.Add(-time.Minute).In(time.FixedZone("X", 3600)), Severity: Critical, Kind: "breakglass",
		Rule: "bg-1", Actor: "alice", Target: "db1", Session: "s_1", Source: "10.0.0.1", Summary: "break-glass used",
		Data: map[string]any{"reason": "outage", "n": 3, "nested": map[string]any{"ok": true, "list": []any{"a", 1.5}}},
		// Ignored on Raise:
		ID: 99, Count: 7, AckedBy: "mallory", AckedAt: t0, AckNote: "pre-acked",
	}
	got, merged := raise(t, s, in)
	if merged {
		t.Fatal("first raise: got merged, want new")
	}
	if got.ID != 1 || got.Count != 1 || got.Acked() || got.AckedBy != "" || got.AckNote != "" {
		t.Fatalf("got id %d count %d acked %v %q %q, want id 1 count 1 unacknowledged", got.ID, got.Count, got.Acked(), got.AckedBy, got.AckNote)
	}
	if !got.Time.Equal(in.Time) || !got.LastTime.Equal(in.Time) {
		t.Fatalf("got time %v last %v, want both %v", got.Time, got.LastTime, in.Time)
	}
	read, err := s.Get(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(read, got) {
		t.Fatalf("Get: got %+v, want %+v", read, got)
	}
	// The evidence survives the JSON round trip (as JSON types).
	wantData, _ := json.Marshal(in.Data)
	gotData, _ := json.Marshal(read.Data)
	if string(gotData) != string(wantData) {
		t.Fatalf("data: got %s, want %s", gotData, wantData)
	}
	if _, err := s.Get(ctx, 42); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: got %v, want ErrNotFound", err)
	}

	// A zero time means now; no data reads back as nil.
	got, _ = raise(t, s, Alert{Severity: Low, Kind: "monitor", Summary: "idle"})
	if got.ID != 2 || !got.Time.Equal(t0) || got.Data != nil {
		t.Fatalf("got id %d time %v data %v, want 2 %v nil", got.ID, got.Time, got.Data, t0)
	}
	if read, _ := s.Get(ctx, 2); read.Data != nil {
		t.Fatalf("Get: got data %v, want nil", read.Data)
	}
}

func TestRaiseMerges(t *testing.T) {
	ctx := context.Background()
	base := Alert{Severity: Medium, Kind: "rule", Rule: "r1", Summary: "rm -rf", DedupKey: "r1|alice|db1"}
	type step struct {
		at         time.Duration // after t0
		severity   Severity      // "" means base's
		key        string        // "" means base's
		ackFirst   int64         // ack this id before raising
		wantID     int64
		wantMerged bool
		wantCount  int64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"repeat within the window", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: time.Minute, wantID: 1, wantMerged: true, wantCount: 2},
			{at: 5 * time.Minute, wantID: 1, wantMerged: true, wantCount: 3},
		}},
		{"window slides with the last occurrence", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: 4 * time.Minute, wantID: 1, wantMerged: true, wantCount: 2},
			{at: 8 * time.Minute, wantID: 1, wantMerged: true, wantCount: 3},
		}},
		{"after the window", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: 5*time.Minute + time.Nanosecond, wantID: 2, wantCount: 1},
			{at: 6 * time.Minute, wantID: 2, wantMerged: true, wantCount: 2},
		}},
		{"after an ack", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: time.Minute, ackFirst: 1, wantID: 2, wantCount: 1},
			{at: 2 * time.Minute, wantID: 2, wantMerged: true, wantCount: 2},
		}},
		{"other key", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: time.Minute, key: "other", wantID: 2, wantCount: 1},
		}},
		{"no key never merges", []step{
			{at: 0, key: "-", wantID: 1, wantCount: 1},
			{at: 0, key: "-", wantID: 2, wantCount: 1},
		}},
		{"less severe merges, more severe is raised", []step{
			{at: 0, wantID: 1, wantCount: 1},
			{at: time.Minute, severity: Low, wantID: 1, wantMerged: true, wantCount: 2},
			{at: 2 * time.Minute, severity: Critical, wantID: 2, wantCount: 1},
			{at: 3 * time.Minute, severity: Medium, wantID: 2, wantMerged: true, wantCount: 2},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newStore(t, nil)
			for i, st := range tc.steps {
				if st.ackFirst != 0 {
					if _, err := s.Ack(ctx, st.ackFirst, "bob", ""); err != nil {
						t.Fatal(err)
					}
				}
				c.set(t0.Add(st.at))
				a := base
				if st.severity != "" {
					a.Severity = st.severity
				}
				switch st.key {
				case "":
				case "-":
					a.DedupKey = ""
				default:
					a.DedupKey = st.key
				}
				a.Summary = fmt.Sprintf("occurrence %d", i)
				got, merged := raise(t, s, a)
				if got.ID != st.wantID || merged != st.wantMerged || got.Count != st.wantCount {
					t.Fatalf("step %d: got id %d merged %v count %d, want id %d merged %v count %d",
						i, got.ID, merged, got.Count, st.wantID, st.wantMerged, st.wantCount)
				}
				if !got.LastTime.Equal(t0.Add(st.at)) {
					t.Fatalf("step %d: got last time %v, want %v", i, got.LastTime, t0.Add(st.at))
				}
				if merged && got.Summary == a.Summary {
					t.Fatalf("step %d: merge replaced the summary with %q", i, got.Summary)
				}
				if read, _ := s.Get(ctx, got.ID); !reflect.DeepEqual(read, got) {
					t.Fatalf("step %d: Get: got %+v, want %+v", i, read, got)
				}
			}
		})
	}
}

func TestRaiseConcurrent(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s, _ := newStore(t, reg)
	const workers, each = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Distinct alerts, and repeats of a single one.
				if _, _, err := s.Raise(ctx, Alert{Severity: Low, Kind: "monitor", Summary: fmt.Sprintf("w%d i%d", w, i)}); err != nil {
					errs <- err
				}
				if _, _, err := s.Raise(ctx, Alert{Severity: High, Kind: "rule", Summary: "shared", DedupKey: "shared"}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := s.List(ctx, Filter{Limit: maxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(all), workers*each+1; got != want {
		t.Fatalf("got %d alerts, want %d", got, want)
	}
	var shared int64
	for i, a := range all {
		if want := int64(len(all) - i); a.ID != want {
			t.Fatalf("got id %d at position %d, want %d (ids dense, newest first)", a.ID, i, want)
		}
		if a.DedupKey == "shared" {
			shared = a.Count
		}
	}
	if shared != workers*each {
		t.Fatalf("shared alert: got count %d, want %d", shared, workers*each)
	}
	if got := counterValue(t, reg, "vigil_alerts_raised_total", map[string]string{"kind": "monitor", "severity": "low"}); got != workers*each {
		t.Fatalf("raised metric: got %v, want %v", got, workers*each)
	}
	if got := counterValue(t, reg, "vigil_alerts_merged_total", map[string]string{"kind": "rule"}); got != workers*each-1 {
		t.Fatalf("merged metric: got %v, want %v", got, workers*each-1)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, nil)
	// id: severity kind session, minutes after t0
	seed := []struct {
		sev     Severity
		kind    string
		session string
		at      time.Duration
	}{
		{Low, "rule", "s1", 0},                        // 1
		{Medium, "monitor", "s1", time.Minute},        // 2
		{High, "rule", "s2", 2 * time.Minute},         // 3
		{Critical, "breakglass", "", 3 * time.Minute}, // 4
		{High, "rule", "s1", 4 * time.Minute},         // 5
	}
	for i, a := range seed {
		c.set(t0.Add(a.at))
		raise(t, s, Alert{Severity: a.sev, Kind: a.kind, Session: a.session, Summary: fmt.Sprintf("alert %d", i+1)})
	}
	if _, err := s.Ack(ctx, 3, "bob", "seen"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all, newest first", Filter{}, []int64{5, 4, 3, 2, 1}},
		{"since", Filter{Since: t0.Add(2 * time.Minute)}, []int64{5, 4, 3}},
		{"min severity", Filter{MinSeverity: High}, []int64{5, 4, 3}},
		{"kind", Filter{Kind: "rule"}, []int64{5, 3, 1}},
		{"session", Filter{Session: "s1"}, []int64{5, 2, 1}},
		{"unacked", Filter{Unacked: true}, []int64{5, 4, 2, 1}},
		{"combined", Filter{Kind: "rule", MinSeverity: Medium, Unacked: true}, []int64{5}},
		{"limit", Filter{Limit: 2}, []int64{5, 4}},
		{"page", Filter{Limit: 2, BeforeID: 4}, []int64{3, 2}},
		{"none", Filter{Kind: "nothing"}, []int64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			ids := []int64{}
			for _, a := range got {
				ids = append(ids, a.ID)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Fatalf("got %v, want %v", ids, tc.want)
			}
		})
	}
	if _, err := s.List(ctx, Filter{MinSeverity: "urgent"}); err == nil {
		t.Fatal("unknown severity filter: got nil error")
	}
}

func TestListLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, nil)
	for i := range maxLimit + 5 {
		raise(t, s, Alert{Severity: Low, Kind: "monitor", Summary: fmt.Sprint(i)})
	}
	tests := []struct {
		limit, want int
	}{{0, defaultLimit}, {-1, defaultLimit}, {7, 7}, {maxLimit + 1, maxLimit}}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			got, err := s.List(ctx, Filter{Limit: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d, want %d", len(got), tc.want)
			}
		})
	}
}

func TestAck(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t, nil)
	raise(t, s, Alert{Severity: High, Kind: "rule", Summary: "x"})
	c.set(t0.Add(time.Hour))

	got, err := s.Ack(ctx, 1, "bob", "investigated")
	if err != nil {
		t.Fatal(err)
	}
	if got.AckedBy != "bob" || got.AckNote != "investigated" || !got.AckedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("got %q %q %v, want bob investigated %v", got.AckedBy, got.AckNote, got.AckedAt, t0.Add(time.Hour))
	}
	if read, _ := s.Get(ctx, 1); !reflect.DeepEqual(read, got) {
		t.Fatalf("Get: got %+v, want %+v", read, got)
	}

	c.set(t0.Add(2 * time.Hour))
	again, err := s.Ack(ctx, 1, "carol", "me too")
	if !errors.Is(err, ErrAcked) {
		t.Fatalf("second ack: got %v, want ErrAcked", err)
	}
	if !reflect.DeepEqual(again, got) {
		t.Fatalf("second ack: got %+v, want the first acknowledgement %+v", again, got)
	}
	if _, err := s.Ack(ctx, 2, "bob", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: got %v, want ErrNotFound", err)
	}
	if _, err := s.Ack(ctx, 1, "", ""); err == nil {
		t.Fatal("ack without who: got nil error")
	}
}

// counterValue returns the value of the metric name with labels in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestStoreGone(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, nil)
	raise(t, s, Alert{Severity: High, Kind: "rule", Summary: "x"})
	s.db.Close()
	tests := []struct {
		name string
		op   func() error
	}{
		{"raise", func() error {
			_, _, err := s.Raise(ctx, Alert{Severity: High, Kind: "rule", Summary: "y"})
			return err
		}},
		{"list", func() error { _, err := s.List(ctx, Filter{}); return err }},
		{"get", func() error { _, err := s.Get(ctx, 1); return err }},
		{"ack", func() error { _, err := s.Ack(ctx, 1, "bob", ""); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if err == nil || !strings.HasPrefix(err.Error(), "alert: ") || errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want an alert: database error", err)
			}
		})
	}
}
