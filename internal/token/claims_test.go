package token

import (
	"slices"
	"testing"
)

// TestQueryAccess checks that read-only restricts the query action only
// when every grant allowing it carries read-only, and is no action itself.
func TestQueryAccess(t *testing.T) {
	g := func(target, login string, actions ...string) Grant {
		return Grant{Target: target, Login: login, Actions: actions}
	}
	tests := []struct {
		name         string
		grants       []Grant
		wantAllowed  bool
		wantReadOnly bool
	}{
		{"none", nil, false, false},
		{"unrestricted", []Grant{g("db1", "app", "query")}, true, false},
		{"read-only", []Grant{g("db1", "app", "query", "read-only")}, true, true},
		{"read-only and unrestricted", []Grant{g("db1", "app", "query", "read-only"), g("db1", "app", "query")}, true, false},
		{"unrestricted and read-only", []Grant{g("db1", "app", "query"), g("db1", "app", "read-only", "query")}, true, false},
		{"unrestricted on another login", []Grant{g("db1", "app", "query", "read-only"), g("db1", "admin", "query")}, true, true},
		{"unrestricted on another target", []Grant{g("db1", "app", "query", "read-only"), g("db2", "app", "query")}, true, true},
		{"read-only without query", []Grant{g("db1", "app", "read-only")}, false, false},
		{"shell only", []Grant{g("db1", "app", "shell")}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allowed, ro := QueryAccess(tc.grants, "db1", "app")
			if allowed != tc.wantAllowed || ro != tc.wantReadOnly {
				t.Fatalf("got allowed %v read-only %v, want allowed %v read-only %v", allowed, ro, tc.wantAllowed, tc.wantReadOnly)
			}
		})
	}
}

// TestGrantAllowsReadOnly checks that read-only, a restriction, is never
// reported as an action a grant allows.
func TestGrantAllowsReadOnly(t *testing.T) {
	g := Grant{Target: "db1", Login: "app", Actions: []string{ActionQuery, ActionReadOnly}}
	if g.Allows("db1", "app", ActionReadOnly) {
		t.Fatalf("got Allows(read-only) true, want false")
	}
	if !g.Allows("db1", "app", ActionQuery) || !g.ReadOnly() {
		t.Fatalf("got Allows(query) %v ReadOnly %v, want true true", g.Allows("db1", "app", ActionQuery), g.ReadOnly())
	}
}

func TestCombined(t *testing.T) {
	g := func(target, login string, actions ...string) Grant {
		return Grant{Target: target, Login: login, Actions: actions}
	}
	tests := []struct {
		name   string
		grants []Grant
		want   []string
	}{
		{"none", []Grant{g("db2", "app", ActionQuery), g("web1", "admin", ActionShell)}, nil},
		{"one", []Grant{g("web1", "root", ActionExec, ActionShell)}, []string{ActionExec, ActionShell}},
		{"two add up", []Grant{g("web1", "root", ActionExec), g("web1", "admin", ActionSFTP), g("web1", "root", ActionSFTP, ActionExec)},
			[]string{ActionExec, ActionSFTP}},
		{"read-only when every query grant is", []Grant{g("web1", "root", ActionQuery, ActionReadOnly), g("web1", "root", ActionExec)},
			[]string{ActionQuery, ActionExec, ActionReadOnly}},
		{"read-only lifted by another grant", []Grant{g("web1", "root", ActionQuery, ActionReadOnly), g("web1", "root", ActionQuery)},
			[]string{ActionQuery}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Combined(tc.grants, "web1", "root")
			if got.Target != "web1" || got.Login != "root" || !slices.Equal(got.Actions, tc.want) {
				t.Errorf("got %+v, want actions %v", got, tc.want)
			}
		})
	}
}
