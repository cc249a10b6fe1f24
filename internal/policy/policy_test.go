package policy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

func TestWindow(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// 2026-11-23 is a Monday.
	at := func(day, h, m int, loc *time.Location) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, loc) }
	tests := []struct {
		window  string
		t       time.Time
		open    bool
		wantEnd time.Time
	}{
		{"Mon-Fri 08:00-18:00 Europe/Berlin", at(23, 9, 0, berlin), true, at(23, 18, 0, berlin)},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", at(23, 7, 59, berlin), false, time.Time{}},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", at(23, 18, 0, berlin), false, time.Time{}},
		{"Mon-Fri 08:00-18:00 Europe/Berlin", at(28, 9, 0, berlin), false, time.Time{}}, // Saturday
		{"Mon-Fri 08:00-18:00 Europe/Berlin", at(23, 7, 30, time.UTC), true, at(23, 18, 0, berlin)},
		{"Fri-Mon 22:00-06:00", at(24, 2, 0, time.UTC), true, at(24, 6, 0, time.UTC)},   // Tue 02:00, opened Mon
		{"Fri-Mon 22:00-06:00", at(25, 2, 0, time.UTC), false, time.Time{}},             // Wed 02:00, Tue not a start day
		{"Sat,Sun 00:00-24:00", at(29, 23, 59, time.UTC), true, at(30, 0, 0, time.UTC)}, // Sunday
		{"* 09:00-10:00", at(26, 9, 30, time.UTC), true, at(26, 10, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.window+" "+tc.t.String(), func(t *testing.T) {
			w, err := ParseWindow(tc.window)
			if err != nil {
				t.Fatal(err)
			}
			open, end := w.Open(tc.t)
			if open != tc.open || !end.Equal(tc.wantEnd) {
				t.Fatalf("got %v until %v, want %v until %v", open, end, tc.open, tc.wantEnd)
			}
		})
	}
	for _, bad := range []string{"Mon-Fri", "Mon-Fri 8-18", "Funday 08:00-18:00", "Mon 08:00-25:00", "Mon 08:00-18:00 Mars/Olympus", "Mon 08:00-18:00 UTC extra"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q): got nil error", bad)
		}
	}
}

func TestGrantStore(t *testing.T) {
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	gs := NewGrants(db, nil)
	a, err := gs.Add(ctx, Grant{Subject: "alice", Target: "web1", Login: "root", Actions: []string{"shell", "exec"}, MaxTTL: time.Hour, From: []string{"10.0.0.0/8"}, Window: "Mon-Fri 08:00-18:00 UTC"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Add(ctx, Grant{Role: "dba", Target: "pg", Login: "postgres", Actions: []string{"query"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Grant{
		{Target: "x", Login: "y", Actions: []string{"shell"}},
		{Subject: "a", Role: "b", Target: "x", Login: "y", Actions: []string{"shell"}},
		{Subject: "a", Target: "x", Login: "y", Actions: []string{"root"}},
		{Subject: "a", Target: "x", Login: "y", Actions: []string{"shell"}, From: []string{"nowhere"}},
		{Subject: "a", Target: "x", Login: "y", Actions: []string{"shell"}, Window: "always"},
	} {
		if _, err := gs.Add(ctx, bad); err == nil {
			t.Errorf("Add(%+v): got nil error", bad)
		}
	}
	mine, err := gs.ForIdentity(ctx, "alice", []string{"dba"})
	if err != nil || len(mine) != 2 {
		t.Fatalf("ForIdentity: got %d grants (%v), want 2", len(mine), err)
	}
	if g := mine[0]; g.MaxTTL != time.Hour || g.From[0] != "10.0.0.0/8" || len(g.Actions) != 2 {
		t.Fatalf("round trip: got %+v", g)
	}
	if other, _ := gs.ForIdentity(ctx, "bob", nil); len(other) != 0 {
		t.Fatalf("bob got %v, want none", other)
	}
	if _, err := gs.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Remove(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: got %v, want ErrNotFound", err)
	}
}

func TestAuthorizeIssue(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // Monday
	// alice presents an identity provider's token: her stored grants decide.
	user := func(src ...string) *token.Identity {
		return &token.Identity{External: true, Claims: token.Claims{Subject: "alice", ExpiresAt: token.NumericDate{Time: now.Add(time.Hour)}, Src: src}, Roles: []string{"ops"}}
	}
	// ... or a Vigil token carrying web1:root:shell,exec only.
	vigilUser := &token.Identity{Claims: token.Claims{Subject: "alice", ExpiresAt: token.NumericDate{Time: now.Add(time.Hour)},
		Grants: []token.Grant{{Target: "web1", Login: "root", Actions: []string{"shell", "exec"}}}}}
	admin := &token.Identity{Admin: true, Claims: token.Claims{Subject: "root", ExpiresAt: token.NumericDate{Time: now.Add(time.Hour)}}}
	stored := []Grant{
		{ID: "g1", Subject: "alice", Target: "web1", Login: "root", Actions: []string{"shell", "exec"}},
		{ID: "g2", Role: "ops", Target: "web2", Login: "deploy", Actions: []string{"exec"}, MaxTTL: 5 * time.Minute},
		{ID: "g3", Subject: "alice", Target: "db", Login: "pg", Actions: []string{"query"}, From: []string{"10.0.0.0/8"}},
		{ID: "g4", Subject: "alice", Target: "night", Login: "ops", Actions: []string{"shell"}, Window: "Mon-Fri 20:00-23:00 UTC"},
		{ID: "g5", Subject: "alice", Target: "soon", Login: "ops", Actions: []string{"shell"}, Window: "Mon-Fri 08:00-10:05 UTC"},
	}
	g := func(target, login string, actions ...string) token.Grant {
		return token.Grant{Target: target, Login: login, Actions: actions}
	}
	tests := []struct {
		name    string
		caller  *token.Identity
		req     token.Request
		wantErr string
		wantTTL time.Duration
		wantSrc []string
	}{
		{"admin anything", admin, token.Request{Subject: "bob", Grants: []token.Grant{g("any", "root", "shell")}}, "", 0, nil},
		{"admin needs a subject", admin, token.Request{}, "subject", 0, nil},
		{"own grant", user(), token.Request{Grants: []token.Grant{g("web1", "root", "shell", "exec")}}, "", token.DefaultTTL, nil},
		{"role grant capped by its max_ttl", user(), token.Request{Grants: []token.Grant{g("web2", "deploy", "exec")}}, "", 5 * time.Minute, nil},
		{"explicit ttl over grant max_ttl", user(), token.Request{TTL: 10 * time.Minute, Grants: []token.Grant{g("web2", "deploy", "exec")}}, "max_ttl", 0, nil},
		{"ttl beyond presented token", user(), token.Request{TTL: 2 * time.Hour, Grants: []token.Grant{g("web1", "root", "shell")}}, "presented token", 0, nil},
		{"action not granted", user(), token.Request{Grants: []token.Grant{g("web1", "root", "forward")}}, "no grant allows forward", 0, nil},
		{"other login", user(), token.Request{Grants: []token.Grant{g("web1", "admin", "shell")}}, "no grant", 0, nil},
		{"for someone else", user(), token.Request{Subject: "bob", Grants: []token.Grant{g("web1", "root", "shell")}}, "another user", 0, nil},
		{"roles", user(), token.Request{Roles: []string{"admin"}, Grants: []token.Grant{g("web1", "root", "shell")}}, "roles", 0, nil},
		{"break-glass", user(), token.Request{BreakGlass: true, Grants: []token.Grant{g("web1", "root", "shell")}}, "break-glass", 0, nil},
		{"no grants", user(), token.Request{}, "at least one", 0, nil},
		{"source from grant", user(), token.Request{Grants: []token.Grant{g("db", "pg", "query")}}, "", token.DefaultTTL, []string{"10.0.0.0/8"}},
		{"narrower source", user(), token.Request{Src: []string{"10.1.0.0/16"}, Grants: []token.Grant{g("db", "pg", "query")}}, "", token.DefaultTTL, []string{"10.1.0.0/16"}},
		{"wider source", user(), token.Request{Src: []string{"0.0.0.0/0"}, Grants: []token.Grant{g("db", "pg", "query")}}, "outside", 0, nil},
		{"mixed sources", user(), token.Request{Grants: []token.Grant{g("db", "pg", "query"), g("web1", "root", "shell")}}, "different source", 0, nil},
		{"caller token source carried", user("192.168.0.0/16"), token.Request{Grants: []token.Grant{g("web1", "root", "shell")}}, "", token.DefaultTTL, []string{"192.168.0.0/16"}},
		{"window closed", user(), token.Request{Grants: []token.Grant{g("night", "ops", "shell")}}, "at this time", 0, nil},
		{"window closing soon", user(), token.Request{Grants: []token.Grant{g("soon", "ops", "shell")}}, "", 5 * time.Minute, nil},
		{"vigil token narrowed", vigilUser, token.Request{Grants: []token.Grant{g("web1", "root", "exec")}}, "", token.DefaultTTL, nil},
		{"vigil token broadened within stored grants", vigilUser, token.Request{Grants: []token.Grant{g("db", "pg", "query")}}, "does not carry query on db", 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AuthorizeIssue(tc.caller, tc.req, stored, now, token.DefaultMaxTTL)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.caller.Admin && got.Subject != "alice" {
				t.Fatalf("got subject %q, want alice", got.Subject)
			}
			if tc.wantTTL != 0 && got.TTL != tc.wantTTL {
				t.Fatalf("got ttl %s, want %s", got.TTL, tc.wantTTL)
			}
			if strings.Join(got.Src, ",") != strings.Join(tc.wantSrc, ",") {
				t.Fatalf("got src %v, want %v", got.Src, tc.wantSrc)
			}
		})
	}
}

func TestLocks(t *testing.T) {
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	ls := NewLocks(db, func() time.Time { return now })
	if _, err := ls.Add(ctx, Lock{Subject: "alice", Reason: "incident"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	perm, err := ls.Add(ctx, Lock{Target: "db1", Reason: "maintenance"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Lock{{Reason: "x"}, {Subject: "a", Target: "b", Reason: "x"}, {Subject: "a"}} {
		if _, err := ls.Add(ctx, bad, 0); err == nil {
			t.Errorf("Add(%+v): got nil error", bad)
		}
	}
	tests := []struct {
		user, target string
		advance      time.Duration
		want         string // reason, "" for none
	}{
		{"alice", "web1", 0, "incident"},
		{"bob", "db1", 0, "maintenance"},
		{"bob", "web1", 0, ""},
		{"alice", "web1", 2 * time.Hour, ""}, // the 1h lock lapsed
		{"bob", "db1", 0, "maintenance"},     // the permanent one did not
	}
	for _, tc := range tests {
		now = now.Add(tc.advance)
		l, err := ls.Locked(ctx, tc.user, tc.target)
		got := ""
		if l != nil {
			got = l.Reason
		}
		if err != nil || got != tc.want {
			t.Errorf("Locked(%s, %s): got %q %v, want %q", tc.user, tc.target, got, err, tc.want)
		}
	}
	if err := ls.Remove(ctx, perm.ID); err != nil {
		t.Fatal(err)
	}
	if err := ls.Remove(ctx, perm.ID); !errors.Is(err, ErrNoLock) {
		t.Fatalf("second remove: %v", err)
	}
}
