package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/token"
)

// TestAuthorizeIssueReadOnly checks that read-only stays a restriction
// when a token is issued: a query grant covered only by read-only grants
// (stored or in the presented token) is issued read-only, never without.
func TestAuthorizeIssueReadOnly(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // Monday
	exp := token.NumericDate{Time: now.Add(time.Hour)}
	external := &token.Identity{External: true, Claims: token.Claims{Subject: "alice", ExpiresAt: exp}, Roles: []string{"ops"}}
	vigil := func(grants ...token.Grant) *token.Identity {
		return &token.Identity{Claims: token.Claims{Subject: "alice", ExpiresAt: exp, Grants: grants}}
	}
	admin := &token.Identity{Admin: true, Claims: token.Claims{Subject: "root", ExpiresAt: exp}}
	g := func(target, login string, actions ...string) token.Grant {
		return token.Grant{Target: target, Login: login, Actions: actions}
	}
	stored := []Grant{
		// db1: read-only only.
		{ID: "r1", Subject: "alice", Target: "db1", Login: "app", Actions: []string{"query", "read-only"}},
		// db2: read-only for alice, unrestricted through her role.
		{ID: "r2", Subject: "alice", Target: "db2", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "r3", Role: "ops", Target: "db2", Login: "app", Actions: []string{"query"}},
		// db3: a role's read-only grant.
		{ID: "r4", Role: "ops", Target: "db3", Login: "app", Actions: []string{"query", "read-only"}},
		// db4: the unrestricted grant's window is closed now.
		{ID: "r5", Subject: "alice", Target: "db4", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "r6", Subject: "alice", Target: "db4", Login: "app", Actions: []string{"query"}, Window: "Mon-Fri 20:00-23:00 UTC"},
		// db5: read-only listed first, unrestricted with a short max_ttl.
		{ID: "r7", Subject: "alice", Target: "db5", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "r8", Subject: "alice", Target: "db5", Login: "app", Actions: []string{"query"}, MaxTTL: 5 * time.Minute},
		// db6: unrestricted only.
		{ID: "r9", Subject: "alice", Target: "db6", Login: "app", Actions: []string{"query"}},
		// db7: read-only query and shell on one login.
		{ID: "r10", Subject: "alice", Target: "db7", Login: "app", Actions: []string{"shell", "query", "read-only"}},
		// db1 as another login: unrestricted, which does not lift db1:app.
		{ID: "r11", Subject: "alice", Target: "db1", Login: "admin", Actions: []string{"query"}},
	}
	tests := []struct {
		name        string
		caller      *token.Identity
		req         []token.Grant
		wantActions [][]string // per issued grant; nil with wantErr
		wantTTL     time.Duration
		wantErr     string
	}{
		{name: "query with only a read-only stored grant is issued read-only", caller: external,
			req: []token.Grant{g("db1", "app", "query")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "asking for read-only explicitly", caller: external,
			req: []token.Grant{g("db1", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "read-only and unrestricted stored grants allow unrestricted", caller: external,
			req: []token.Grant{g("db2", "app", "query")}, wantActions: [][]string{{"query"}}},
		{name: "read-only role grant is issued read-only", caller: external,
			req: []token.Grant{g("db3", "app", "query")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "unrestricted grant outside its window does not lift read-only", caller: external,
			req: []token.Grant{g("db4", "app", "query")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "unrestricted query takes the unrestricted grant's max_ttl", caller: external,
			req: []token.Grant{g("db5", "app", "query")}, wantActions: [][]string{{"query"}}, wantTTL: 5 * time.Minute},
		{name: "read-only query may use the read-only grant's limits", caller: external,
			req: []token.Grant{g("db5", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}, wantTTL: token.DefaultTTL},
		{name: "unrestricted stored grant may be narrowed to read-only", caller: external,
			req: []token.Grant{g("db6", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "other actions of a read-only grant are kept", caller: external,
			req: []token.Grant{g("db7", "app", "shell", "query")}, wantActions: [][]string{{"shell", "query", "read-only"}}},
		{name: "shell alone on a read-only grant gains nothing", caller: external,
			req: []token.Grant{g("db7", "app", "shell")}, wantActions: [][]string{{"shell"}}},
		{name: "another login's unrestricted grant does not lift read-only", caller: external,
			req: []token.Grant{g("db1", "app", "query"), g("db1", "admin", "query")}, wantActions: [][]string{{"query", "read-only"}, {"query"}}},
		{name: "read-only without query is refused", caller: external,
			req: []token.Grant{g("db1", "app", "read-only")}, wantErr: "qualifies the query action"},
		{name: "read-only is no permission on its own", caller: external,
			req: []token.Grant{g("web1", "root", "read-only")}, wantErr: "qualifies the query action"},

		{name: "presented read-only token cannot mint unrestricted", caller: vigil(g("db2", "app", "query", "read-only")),
			req: []token.Grant{g("db2", "app", "query")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "presented read-only token narrowed as read-only", caller: vigil(g("db2", "app", "query", "read-only")),
			req: []token.Grant{g("db2", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "presented token with read-only and unrestricted grants", caller: vigil(g("db2", "app", "query", "read-only"), g("db2", "app", "query")),
			req: []token.Grant{g("db2", "app", "query")}, wantActions: [][]string{{"query"}}},
		{name: "presented unrestricted token over read-only stored grant", caller: vigil(g("db1", "app", "query")),
			req: []token.Grant{g("db1", "app", "query")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "presented unrestricted token narrowed to read-only", caller: vigil(g("db6", "app", "query")),
			req: []token.Grant{g("db6", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}},
		{name: "presented read-only token has no other actions", caller: vigil(g("db7", "app", "query", "read-only")),
			req: []token.Grant{g("db7", "app", "shell")}, wantErr: "does not carry shell"},

		{name: "admin unrestricted unchanged", caller: admin,
			req: []token.Grant{g("db1", "app", "query")}, wantActions: [][]string{{"query"}}},
		{name: "admin read-only unchanged", caller: admin,
			req: []token.Grant{g("db1", "app", "query", "read-only")}, wantActions: [][]string{{"query", "read-only"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := token.Request{Grants: tc.req}
			if tc.caller.Admin {
				req.Subject = "alice"
			}
			sent := cloneGrants(tc.req)
			got, err := AuthorizeIssue(tc.caller, req, stored, now, token.DefaultMaxTTL)
			if !grantsEqual(tc.req, sent) {
				t.Fatalf("the caller's request was changed: got %v, want %v", tc.req, sent)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Grants) != len(tc.wantActions) {
				t.Fatalf("got %d grants %v, want %d", len(got.Grants), got.Grants, len(tc.wantActions))
			}
			for i, want := range tc.wantActions {
				if !slices.Equal(got.Grants[i].Actions, want) {
					t.Fatalf("grant %d: got actions %v, want %v", i, got.Grants[i].Actions, want)
				}
				if err := got.Grants[i].Validate(); err != nil {
					t.Fatalf("grant %d: got invalid grant: %v", i, err)
				}
			}
			if tc.wantTTL != 0 && got.TTL != tc.wantTTL {
				t.Fatalf("got ttl %s, want %s", got.TTL, tc.wantTTL)
			}
		})
	}
}

// TestUsableReadOnly checks the external-issuer path: the stored grants
// usable at connection keep read-only apart from unrestricted grants, so
// the gateway's rule (token.QueryAccess) sees a restriction exactly when
// every usable query grant carries it.
func TestUsableReadOnly(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // Monday
	src := netip.MustParseAddr("10.1.2.3")
	stored := []Grant{
		{ID: "a", Subject: "alice", Target: "db1", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "b", Subject: "alice", Target: "db2", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "c", Role: "ops", Target: "db2", Login: "app", Actions: []string{"query"}},
		{ID: "d", Subject: "alice", Target: "db3", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "e", Subject: "alice", Target: "db3", Login: "app", Actions: []string{"query"}, Window: "Mon-Fri 20:00-23:00 UTC"},
		{ID: "f", Subject: "alice", Target: "db4", Login: "app", Actions: []string{"query", "read-only"}},
		{ID: "g", Subject: "alice", Target: "db4", Login: "app", Actions: []string{"query"}, From: []string{"192.168.0.0/16"}},
	}
	usable := Usable(stored, src, now)
	tests := []struct {
		target       string
		wantReadOnly bool
	}{
		{"db1", true},
		{"db2", false},
		{"db3", true}, // the unrestricted grant's window is closed
		{"db4", true}, // the unrestricted grant is for another network
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			allowed, ro := token.QueryAccess(usable, tc.target, "app")
			if !allowed || ro != tc.wantReadOnly {
				t.Fatalf("got allowed %v read-only %v, want allowed true read-only %v", allowed, ro, tc.wantReadOnly)
			}
		})
	}
}

func cloneGrants(gs []token.Grant) []token.Grant {
	out := make([]token.Grant, len(gs))
	for i, g := range gs {
		out[i] = token.Grant{Target: g.Target, Login: g.Login, Actions: slices.Clone(g.Actions)}
	}
	return out
}

func grantsEqual(a, b []token.Grant) bool {
	return slices.EqualFunc(a, b, func(x, y token.Grant) bool {
		return x.Target == y.Target && x.Login == y.Login && slices.Equal(x.Actions, y.Actions)
	})
}
