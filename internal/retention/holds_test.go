package retention

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/config"
)

func TestHoldsAddRefuses(t *testing.T) {
	e := newEnv(t)
	e.addTarget(t, "web", nil)
	sw := e.sweeper(t, config.Retention{})
	disposed, _ := e.addSession(t, sessionSpec{name: "old", target: "web", age: 100 * day})
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hold Hold
		want string
	}{
		{"nothing named", Hold{Reason: "r", CreatedBy: "legal"}, "name exactly one of session, target and user"},
		{"two named", Hold{Target: "web", Subject: "alice", Reason: "r", CreatedBy: "legal"}, "name exactly one"},
		{"no reason", Hold{Target: "web", CreatedBy: "legal"}, "reason is empty"},
		{"blank reason", Hold{Target: "web", Reason: "  ", CreatedBy: "legal"}, "reason is empty"},
		{"long reason", Hold{Target: "web", Reason: strings.Repeat("r", maxReason+1), CreatedBy: "legal"}, "reason is over"},
		{"control characters", Hold{Subject: "al\nice", Reason: "r", CreatedBy: "legal"}, "user has control characters"},
		{"padded target", Hold{Target: " web", Reason: "r", CreatedBy: "legal"}, "leading or trailing space"},
		{"unknown session", Hold{Session: "s_nope", Reason: "r", CreatedBy: "legal"}, "no session s_nope"},
		{"disposed session", Hold{Session: disposed, Reason: "r", CreatedBy: "legal"}, "already disposed of"},
		{"no author", Hold{Target: "web", Reason: "r"}, "who places the hold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sw.Holds().Add(context.Background(), tc.hold)
			if !errors.Is(err, ErrInvalidHold) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, ErrInvalidHold, tc.want)
			}
		})
	}
}

func TestHoldsLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	holds := NewHolds(e.db, e.clock)
	id, _ := e.addSession(t, sessionSpec{name: "s", target: "web", age: day})
	a, err := holds.Add(ctx, Hold{Session: id, Reason: "case 1", CreatedBy: "legal"})
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Minute)
	// Any target name may be held: the target may have been deleted.
	b, err := holds.Add(ctx, Hold{Target: "gone-long-ago", Reason: "case 2", CreatedBy: "legal"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ID, "h_") || a.ID == b.ID || !a.CreatedAt.Equal(t0) || a.CreatedBy != "legal" || !a.Active() {
		t.Fatalf("added %+v", a)
	}
	e.now = e.now.Add(time.Hour)
	rel, err := holds.Release(ctx, a.ID, "counsel")
	if err != nil || rel.Active() || rel.ReleasedBy != "counsel" || !rel.ReleasedAt.Equal(e.now) {
		t.Fatalf("release: got %+v, %v", rel, err)
	}
	if _, err := holds.Release(ctx, a.ID, "counsel"); !errors.Is(err, ErrReleased) {
		t.Fatalf("second release: got %v, want %v", err, ErrReleased)
	}
	if _, err := holds.Release(ctx, "h_nope", "counsel"); !errors.Is(err, ErrNoHold) {
		t.Fatalf("unknown: got %v, want %v", err, ErrNoHold)
	}
	for _, tc := range []struct {
		all  bool
		want []string
	}{{false, []string{b.ID}}, {true, []string{a.ID, b.ID}}} {
		got, err := holds.List(ctx, tc.all)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range got {
			ids = append(ids, h.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("list(all=%v): got %v, want %v", tc.all, ids, tc.want)
		}
	}
}
