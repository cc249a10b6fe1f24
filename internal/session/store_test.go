package session

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

func TestSessionStore(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := NewStore(db)
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	a := &Session{ID: NewID(), Kind: "ssh", User: "alice", JTI: "j1", Target: "web1", Login: "root", Source: "10.0.0.1", StartedAt: t0, Recording: "/r/a.cast.gz"}
	b := &Session{ID: NewID(), Kind: "ssh", User: "bob", Target: "web2", Login: "root", StartedAt: t0.Add(time.Minute)}
	for _, s := range []*Session{a, b} {
		if err := st.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if a.ID == b.ID {
		t.Fatal("two sessions got one ID")
	}
	a.EndedAt, a.EndReason, a.ExitStatus, a.BytesUp, a.BytesDown, a.Digest = t0.Add(time.Hour), "client disconnected", 3, 10, 20, "abc"
	a.Commands = []string{"exec: uname -a"}
	if err := st.End(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, a.ID)
	if err != nil || got.State != StateEnded || got.ExitStatus != 3 || got.BytesDown != 20 || got.Commands[0] != "exec: uname -a" || !got.EndedAt.Equal(a.EndedAt) {
		t.Fatalf("get: %+v %v", got, err)
	}
	active, _ := st.List(ctx, true)
	if len(active) != 1 || active[0].ID != b.ID {
		t.Fatalf("active: %+v", active)
	}
	all, _ := st.List(ctx, false)
	if len(all) != 2 || all[0].ID != b.ID {
		t.Fatalf("all, newest first: %+v", all)
	}
	// After a crash, the sessions still marked active are interrupted.
	ids, err := st.MarkInterrupted(ctx, t0.Add(2*time.Hour))
	if err != nil || len(ids) != 1 || ids[0] != b.ID {
		t.Fatalf("interrupted: %v %v", ids, err)
	}
	if got, _ := st.Get(ctx, b.ID); got.State != StateInterrupted || got.EndReason == "" {
		t.Fatalf("after interruption: %+v", got)
	}
	if _, err := st.Get(ctx, "s_nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}
