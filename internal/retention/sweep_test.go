package retention

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/session"
)

// holdSpec describes a legal hold to place: on a session (by its spec
// name), a target or a user.
type holdSpec struct {
	session, target, user string
	released              bool
}

// TestSweepDisposesExactlyTheExpiredNonHeldRecordings is the requirement:
// retention deletes exactly the expired, non-held recordings, records
// each disposal, and a second sweep disposes of nothing more.
func TestSweepDisposesExactlyTheExpiredNonHeldRecordings(t *testing.T) {
	tests := []struct {
		name    string
		policy  config.Retention
		targets map[string]map[string]string
		// deleted targets are removed from the vault before the sweep.
		deleted  []string
		sessions []sessionSpec
		holds    []holdSpec
		// want names the sessions whose recordings are disposed of, and
		// the policy each was disposed of under.
		want map[string]string
	}{
		{
			name:    "default 90 days",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "91d", target: "web", age: 91 * day},
				{name: "90d", target: "web", age: 90 * day},
				{name: "89d", target: "web", age: 89 * day},
			},
			want: map[string]string{"91d": "default"},
		},
		{
			name:    "configured default",
			policy:  config.Retention{Default: 30 * day},
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "31d", target: "web", age: 31 * day},
				{name: "29d", target: "web", age: 29 * day},
			},
			want: map[string]string{"31d": "default"},
		},
		{
			name:    "label policy shorter than the default",
			policy:  config.Retention{Labels: map[string]time.Duration{"env=dev": 7 * day}},
			targets: map[string]map[string]string{"dev1": {"env": "dev"}, "web": {"env": "prod"}},
			sessions: []sessionSpec{
				{name: "dev 8d", target: "dev1", age: 8 * day},
				{name: "dev 6d", target: "dev1", age: 6 * day},
				{name: "web 8d", target: "web", age: 8 * day},
			},
			want: map[string]string{"dev 8d": "env=dev"},
		},
		{
			name:    "label policy longer than the default",
			policy:  config.Retention{Labels: map[string]time.Duration{"env=prod": 365 * day}},
			targets: map[string]map[string]string{"db1": {"env": "prod"}, "web": nil},
			sessions: []sessionSpec{
				{name: "prod 366d", target: "db1", age: 366 * day},
				{name: "prod 100d", target: "db1", age: 100 * day},
				{name: "web 100d", target: "web", age: 100 * day},
			},
			want: map[string]string{"prod 366d": "env=prod", "web 100d": "default"},
		},
		{
			name: "the longest matching label retention wins",
			policy: config.Retention{Labels: map[string]time.Duration{
				"env=prod": 30 * day, "pci=yes": 400 * day, "team=db": 10 * day, "env=dev": 1000 * day}},
			targets: map[string]map[string]string{
				"card": {"env": "prod", "pci": "yes", "team": "db"},
				"db1":  {"env": "prod", "team": "db"},
			},
			sessions: []sessionSpec{
				{name: "card 401d", target: "card", age: 401 * day},
				{name: "card 100d", target: "card", age: 100 * day},
				{name: "db1 31d", target: "db1", age: 31 * day},
				{name: "db1 20d", target: "db1", age: 20 * day},
			},
			want: map[string]string{"card 401d": "pci=yes", "db1 31d": "env=prod"},
		},
		{
			name:    "active sessions are never disposed of",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "active 200d", target: "web", age: 200 * day, state: session.StateActive},
				{name: "ended 200d", target: "web", age: 200 * day},
			},
			want: map[string]string{"ended 200d": "default"},
		},
		{
			name:    "interrupted sessions and sessions without an end time",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "interrupted 91d", target: "web", age: 91 * day, state: session.StateInterrupted},
				{name: "interrupted 89d", target: "web", age: 89 * day, state: session.StateInterrupted},
				{name: "no end, started 91d", target: "web", age: 91 * day, noEnd: true},
				{name: "no end, started 89d", target: "web", age: 89 * day, noEnd: true},
			},
			want: map[string]string{"interrupted 91d": "default", "no end, started 91d": "default"},
		},
		{
			name:    "held by session",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "held", target: "web", age: 100 * day},
				{name: "free", target: "web", age: 100 * day},
			},
			holds: []holdSpec{{session: "held"}},
			want:  map[string]string{"free": "default"},
		},
		{
			name:    "held by target, including sessions after the hold",
			targets: map[string]map[string]string{"web": nil, "db1": nil},
			sessions: []sessionSpec{
				{name: "web a", target: "web", age: 100 * day},
				{name: "web b", target: "web", age: 200 * day},
				{name: "db1", target: "db1", age: 100 * day},
			},
			holds: []holdSpec{{target: "web"}},
			want:  map[string]string{"db1": "default"},
		},
		{
			name:    "held by user",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "mallory", target: "web", user: "mallory", age: 100 * day},
				{name: "alice", target: "web", user: "alice", age: 100 * day},
			},
			holds: []holdSpec{{user: "mallory"}},
			want:  map[string]string{"alice": "default"},
		},
		{
			name:    "a released hold no longer protects",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "was held", target: "web", user: "mallory", age: 100 * day},
				{name: "still held", target: "web", user: "bob", age: 100 * day},
			},
			holds: []holdSpec{{user: "mallory", released: true}, {target: "web", released: true}, {user: "bob"}},
			want:  map[string]string{"was held": "default"},
		},
		{
			name:    "a recording within its retention is kept (releasing a hold changes nothing)",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "young", target: "web", age: 10 * day},
			},
			holds: []holdSpec{{session: "young", released: true}},
			want:  map[string]string{},
		},
		{
			name:    "a deleted target gets the default",
			policy:  config.Retention{Labels: map[string]time.Duration{"env=dev": 7 * day}},
			targets: map[string]map[string]string{"dev1": {"env": "dev"}, "dev2": {"env": "dev"}},
			deleted: []string{"dev1"},
			sessions: []sessionSpec{
				{name: "deleted 8d", target: "dev1", age: 8 * day},
				{name: "deleted 91d", target: "dev1", age: 91 * day},
				{name: "live 8d", target: "dev2", age: 8 * day},
			},
			want: map[string]string{"deleted 91d": "default", "live 8d": "env=dev"},
		},
		{
			name:    "a hold on a deleted target's name still holds",
			targets: map[string]map[string]string{"old": nil},
			deleted: []string{"old"},
			sessions: []sessionSpec{
				{name: "old", target: "old", age: 100 * day},
			},
			holds: []holdSpec{{target: "old"}},
			want:  map[string]string{},
		},
		{
			name:    "a file already missing is disposed of and said so",
			targets: map[string]map[string]string{"web": nil},
			sessions: []sessionSpec{
				{name: "gone", target: "web", age: 100 * day, missing: true},
				{name: "there", target: "web", age: 100 * day},
			},
			want: map[string]string{"gone": "default", "there": "default"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			for name, labels := range tc.targets {
				e.addTarget(t, name, labels)
			}
			sw := e.sweeper(t, tc.policy)
			holds := sw.Holds()
			// Target and user holds are placed before the sessions exist
			// (they cover later sessions too); session holds after.
			place := func(h holdSpec, sessionID string) {
				t.Helper()
				got, err := holds.Add(ctx, Hold{Session: sessionID, Target: h.target, Subject: h.user, Reason: "case 42", CreatedBy: "legal"})
				if err != nil {
					t.Fatal(err)
				}
				if h.released {
					if _, err := holds.Release(ctx, got.ID, "legal"); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, h := range tc.holds {
				if h.session == "" {
					place(h, "")
				}
			}
			ids, paths := map[string]string{}, map[string]string{}
			for _, sp := range tc.sessions {
				ids[sp.name], paths[sp.name] = e.addSession(t, sp)
			}
			for _, h := range tc.holds {
				if h.session != "" {
					place(h, ids[h.session])
				}
			}
			for _, name := range tc.deleted {
				if err := e.vault.Remove(ctx, name); err != nil {
					t.Fatal(err)
				}
			}

			res, err := sw.Sweep(ctx)
			if err != nil {
				t.Fatalf("sweep: %v", err)
			}
			got := map[string]string{}
			for _, d := range res.Disposed {
				for name, id := range ids {
					if id == d.Session {
						got[name] = d.Policy
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("disposed of %v, want %v", got, tc.want)
			}
			if len(res.Failed) != 0 {
				t.Fatalf("failures: %+v", res.Failed)
			}
			for _, sp := range tc.sessions {
				id, path := ids[sp.name], paths[sp.name]
				_, disposed := tc.want[sp.name]
				if onDisk, want := exists(t, path), !disposed && !sp.missing; onDisk != want {
					t.Errorf("%s: file on disk %v, want %v", sp.name, onDisk, want)
				}
				if at := e.disposedAt(t, id); at.IsZero() == disposed {
					t.Errorf("%s: disposed_at %v, want set %v", sp.name, at, disposed)
				}
				checkEvents(t, e.sink.ofSession(id), sp, disposed, tc.want[sp.name])
			}

			// A second sweep, even much later for the rest, disposes of
			// nothing already disposed of and records nothing new for it.
			before := len(e.sink.events)
			again, err := sw.Sweep(ctx)
			if err != nil || len(again.Disposed) != 0 || len(e.sink.events) != before {
				t.Fatalf("second sweep: got %d disposed, %d new events, %v; want none", len(again.Disposed), len(e.sink.events)-before, err)
			}
		})
	}
}

// checkEvents checks a session's audit events: for a disposal, exactly a
// recording.dispose (with the decision) then a recording.disposed (with
// the outcome); otherwise none.
func checkEvents(t *testing.T, evs []audit.Event, sp sessionSpec, disposed bool, policy string) {
	t.Helper()
	if !disposed {
		if len(evs) != 0 {
			t.Errorf("%s: got events %v, want none", sp.name, types(evs))
		}
		return
	}
	if got := types(evs); !slices.Equal(got, []string{EventDispose, EventDisposed}) {
		t.Fatalf("%s: got events %v, want [%s %s]", sp.name, got, EventDispose, EventDisposed)
	}
	decision, outcome := evs[0], evs[1]
	for _, ev := range evs {
		if ev.Actor != Actor || ev.Target != sp.target {
			t.Errorf("%s: %s actor %q target %q, want %q %q", sp.name, ev.Type, ev.Actor, ev.Target, Actor, sp.target)
		}
	}
	for _, k := range []string{"path", "digest", "age", "policy", "retention"} {
		if _, ok := decision.Data[k]; !ok {
			t.Errorf("%s: %s data %v lacks %q", sp.name, EventDispose, decision.Data, k)
		}
	}
	if decision.Data["policy"] != policy {
		t.Errorf("%s: policy %v, want %s", sp.name, decision.Data["policy"], policy)
	}
	want := OutcomeDeleted
	if sp.missing {
		want = OutcomeAlreadyMissing
	}
	if outcome.Data["outcome"] != want {
		t.Errorf("%s: outcome %v, want %s", sp.name, outcome.Data["outcome"], want)
	}
}

func types(evs []audit.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// TestSweepAuditFailure: when the audit log cannot record the decision,
// nothing is deleted and the sweep stops with an error; once it is back,
// the next sweep disposes of everything expired.
func TestSweepAuditFailure(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	var ids, paths []string
	for range 3 {
		id, path := e.addSession(t, sessionSpec{name: "old", target: "web", age: 100 * day})
		ids, paths = append(ids, id), append(paths, path)
	}
	e.sink.setFail("*")
	res, err := sw.Sweep(ctx)
	if !errors.Is(err, errAuditDown) || len(res.Disposed) != 0 {
		t.Fatalf("got %d disposed, %v; want none and %v", len(res.Disposed), err, errAuditDown)
	}
	for i, path := range paths {
		if !exists(t, path) || !e.disposedAt(t, ids[i]).IsZero() {
			t.Fatalf("recording %d deleted or marked while the audit log was down", i)
		}
	}
	e.sink.setFail()
	res, err = sw.Sweep(ctx)
	if err != nil || len(res.Disposed) != 3 {
		t.Fatalf("after recovery: got %d disposed, %v; want 3", len(res.Disposed), err)
	}
}

// TestSweepCrashBetweenDeleteAndRecord: the outcome cannot be recorded
// after the file is deleted (as after a crash at that point). The session
// is not marked disposed, the log shows a decision without an outcome, and
// the next sweep finishes the disposal as "already_missing".
func TestSweepCrashBetweenDeleteAndRecord(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	id, path := e.addSession(t, sessionSpec{name: "old", target: "web", age: 100 * day})
	e.sink.setFail(EventDisposed)
	if _, err := sw.Sweep(ctx); !errors.Is(err, errAuditDown) {
		t.Fatalf("got %v, want %v", err, errAuditDown)
	}
	if exists(t, path) || !e.disposedAt(t, id).IsZero() {
		t.Fatalf("after the cut: file on disk %v, disposed_at %v; want deleted, not marked", exists(t, path), e.disposedAt(t, id))
	}
	if got := types(e.sink.ofSession(id)); !slices.Equal(got, []string{EventDispose}) {
		t.Fatalf("after the cut: got events %v, want [%s]", got, EventDispose)
	}
	e.sink.setFail()
	res, err := sw.Sweep(ctx)
	if err != nil || len(res.Disposed) != 1 || res.Disposed[0].Outcome != OutcomeAlreadyMissing {
		t.Fatalf("next sweep: got %+v, %v; want one already_missing", res.Disposed, err)
	}
	evs := e.sink.ofSession(id)
	if got := types(evs); !slices.Equal(got, []string{EventDispose, EventDispose, EventDisposed}) {
		t.Fatalf("got events %v, want a decision, then a decision and its outcome", got)
	}
	if e.disposedAt(t, id).IsZero() {
		t.Fatal("not marked disposed after the second sweep")
	}
}

// TestSweepHoldPlacedDuringSweep: a hold placed after the sweep read the
// holds, but before it reaches the recording, keeps it.
func TestSweepHoldPlacedDuringSweep(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	first, _ := e.addSession(t, sessionSpec{name: "first", target: "web", age: 200 * day})
	second, path := e.addSession(t, sessionSpec{name: "second", target: "web", age: 100 * day})
	e.sink.hook = func(ev audit.Event) {
		if ev.Type == EventDispose && ev.Session == first {
			if _, err := sw.Holds().Add(ctx, Hold{Session: second, Reason: "late hold", CreatedBy: "legal"}); err != nil {
				t.Error(err)
			}
		}
	}
	res, err := sw.Sweep(ctx)
	if err != nil || len(res.Disposed) != 1 || res.Disposed[0].Session != first || res.Held != 1 {
		t.Fatalf("got %+v, %v; want the first disposed of and the second held", res, err)
	}
	if !exists(t, path) {
		t.Fatal("the late-held recording was deleted")
	}
}

// TestSweepPaths: a recording path outside the recordings directory is
// never deleted (a failure, audited); a deletion that fails is a failure
// the next sweep retries; neither stops the sweep.
func TestSweepPaths(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	outside := filepath.Join(t.TempDir(), "not-a-recording")
	if err := os.WriteFile(outside, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray, _ := e.addSession(t, sessionSpec{name: "stray", target: "web", age: 100 * day})
	if _, err := e.db.ExecContext(ctx, `UPDATE sessions SET recording = $2 WHERE id = $1`, stray, outside); err != nil {
		t.Fatal(err)
	}
	// A directory that is not empty cannot be removed as a file.
	stuck, stuckPath := e.addSession(t, sessionSpec{name: "stuck", target: "web", age: 100 * day, missing: true})
	if err := os.MkdirAll(filepath.Join(stuckPath, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	ok, okPath := e.addSession(t, sessionSpec{name: "ok", target: "web", age: 100 * day})

	res, err := sw.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Disposed) != 1 || res.Disposed[0].Session != ok || exists(t, okPath) {
		t.Fatalf("disposed %+v, want only %s", res.Disposed, ok)
	}
	if len(res.Failed) != 2 {
		t.Fatalf("got failures %+v, want 2", res.Failed)
	}
	if !exists(t, outside) || !exists(t, stuckPath) {
		t.Fatal("a file outside the recordings directory, or the stuck one, is gone")
	}
	if got := types(e.sink.ofSession(stray)); !slices.Equal(got, []string{EventDisposeFailed}) {
		t.Fatalf("stray: got events %v, want [%s] (nothing decided)", got, EventDisposeFailed)
	}
	if got := types(e.sink.ofSession(stuck)); !slices.Equal(got, []string{EventDispose, EventDisposeFailed}) {
		t.Fatalf("stuck: got events %v, want [%s %s]", got, EventDispose, EventDisposeFailed)
	}
	for _, id := range []string{stray, stuck} {
		if !e.disposedAt(t, id).IsZero() {
			t.Fatalf("%s marked disposed", id)
		}
	}
	// Once the obstacle is gone, the next sweep finishes the job.
	if err := os.RemoveAll(stuckPath); err != nil {
		t.Fatal(err)
	}
	res, err = sw.Sweep(ctx)
	if err != nil || len(res.Disposed) != 1 || res.Disposed[0].Session != stuck {
		t.Fatalf("retry: got %+v, %v; want %s disposed", res.Disposed, err, stuck)
	}
}

// TestSweepBatches: more candidates than one batch, with held ones among
// them, are all seen, whether the candidate query selects by each
// target's cutoff or (with many targets) by the shortest retention; the
// metric counts each disposal.
func TestSweepBatches(t *testing.T) {
	const n = 2*batchSize + 17
	tests := []struct {
		name             string
		maxCutoffTargets int
		// examined is how many of the n sessions the query returns.
		examined func(dev int) int
	}{
		{"per-target cutoffs", maxCutoffTargets, func(dev int) int { return dev }},
		{"shortest cutoff", 0, func(int) int { return n }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			e.addTarget(t, "dev", map[string]string{"env": "dev"})
			e.addTarget(t, "prod", map[string]string{"env": "prod"})
			reg := prometheus.NewRegistry()
			sw, err := New(Config{Policy: config.Retention{Labels: map[string]time.Duration{"env=dev": day}}, DB: e.db, Targets: e.vault,
				Audit: e.sink, RecordingsDir: e.dir, Now: e.clock, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			sw.maxCutoffTargets = tc.maxCutoffTargets
			dev, held := 0, 0
			var paths []string
			for i := range n {
				target := "prod" // 90 days: kept
				if i%3 != 0 {
					target, dev = "dev", dev+1
				}
				// Interleaved ages, some equal, so the cursor has ties to
				// break.
				id, path := e.addSession(t, sessionSpec{name: fmt.Sprint(i), target: target, age: 2*day + time.Duration(i%7)*time.Hour})
				paths = append(paths, path)
				if target == "dev" && i%5 == 1 {
					if _, err := sw.Holds().Add(ctx, Hold{Session: id, Reason: "case", CreatedBy: "legal"}); err != nil {
						t.Fatal(err)
					}
					held++
				}
			}
			wantGone := dev - held
			res, err := sw.Sweep(ctx)
			if err != nil || len(res.Disposed) != wantGone || res.Held != held || res.Examined != tc.examined(dev) {
				t.Fatalf("got %d disposed, %d held, %d examined, %v; want %d, %d, %d",
					len(res.Disposed), res.Held, res.Examined, err, wantGone, held, tc.examined(dev))
			}
			left := 0
			for _, p := range paths {
				if exists(t, p) {
					left++
				}
			}
			if left != n-wantGone {
				t.Fatalf("got %d files left, want %d", left, n-wantGone)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var got float64
			for _, mf := range mfs {
				if mf.GetName() == "vigil_recordings_disposed_total" {
					got = mf.GetMetric()[0].GetCounter().GetValue()
				}
			}
			if got != float64(wantGone) {
				t.Fatalf("vigil_recordings_disposed_total %v, want %d", got, wantGone)
			}
		})
	}
}

// TestSweepClock: a recording expires when the clock passes its
// retention, not before.
func TestSweepClock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{Default: 10 * day})
	_, path := e.addSession(t, sessionSpec{name: "s", target: "web", age: 9 * day})
	for _, step := range []struct {
		advance time.Duration
		gone    bool
	}{{0, false}, {day, false}, {time.Second, true}} {
		e.now = e.now.Add(step.advance)
		if _, err := sw.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if gone := !exists(t, path); gone != step.gone {
			t.Fatalf("at %s: gone %v, want %v", e.now.Format(time.RFC3339), gone, step.gone)
		}
	}
}

// TestRun: Run sweeps at once, and returns when its context ends.
func TestRun(t *testing.T) {
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	_, path := e.addSession(t, sessionSpec{name: "s", target: "web", age: 100 * day})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sw.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for exists(t, path) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewRequires(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Targets: e.vault, Audit: e.sink}, "needs DB"},
		{"bad policy", Config{DB: e.db, Targets: e.vault, Audit: e.sink, Policy: config.Retention{Default: -day}}, "retention.default"},
		{"bad every", Config{DB: e.db, Targets: e.vault, Audit: e.sink, Policy: config.Retention{Every: time.Second}}, "retention.every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}
