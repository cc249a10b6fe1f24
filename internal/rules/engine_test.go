package rules

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestActionStronger(t *testing.T) {
	order := []Action{"", ActionAlert, ActionPause, ActionBlock, ActionTerminate}
	for i, a := range order {
		for j, b := range order {
			t.Run(string(a)+">"+string(b), func(t *testing.T) {
				if got, want := a.Stronger(b), i > j; got != want {
					t.Errorf("%q.Stronger(%q): got %v, want %v", a, b, got, want)
				}
			})
		}
	}
}

func TestStrongest(t *testing.T) {
	hit := func(id string, a Action) Hit { return Hit{Rule: Rule{ID: id, Action: a}} }
	tests := []struct {
		name   string
		hits   []Hit
		want   string
		wantOK bool
	}{
		{"none", nil, "", false},
		{"one", []Hit{hit("a", ActionAlert)}, "a", true},
		{"strongest last", []Hit{hit("a", ActionAlert), hit("b", ActionPause), hit("c", ActionTerminate)}, "c", true},
		{"strongest first", []Hit{hit("a", ActionBlock), hit("b", ActionPause)}, "a", true},
		{"first of equals", []Hit{hit("a", ActionAlert), hit("b", ActionBlock), hit("c", ActionBlock)}, "b", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := Strongest(tc.hits)
			if h.Rule.ID != tc.want || ok != tc.wantOK {
				t.Errorf("got %q %v, want %q %v", h.Rule.ID, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestPacks(t *testing.T) {
	e, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	packs := e.Packs()
	var names []string
	for _, p := range packs {
		names = append(names, p.Name)
	}
	want := slices.Clone(allPacks)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("got packs %v, want %v", names, want)
	}
	// Packs returns copies: changing one changes nothing in the engine.
	packs[0].Rules[0].Action = ActionTerminate
	if got := e.Packs()[0].Rules[0].Action; got == ActionTerminate {
		t.Errorf("got action %v after changing a copy, want it unchanged", got)
	}
	// Rules marshal with their documented keys.
	b, err := json.Marshal(packs[0].Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"id"`, `"pack"`, `"kind"`, `"pattern"`, `"action"`, `"severity"`, `"description"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("got JSON %s, want key %s", b, key)
		}
	}
}

func TestSetSpecs(t *testing.T) {
	e, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		specs   []string
		line    string
		want    Action // action of the hit on line
		wantErr string
	}{
		{"own action", []string{"os-sensitive"}, "rm -rf /", ActionBlock, ""},
		{"override", []string{"os-sensitive=alert"}, "rm -rf /", ActionAlert, ""},
		{"override stronger", []string{"lateral-movement=terminate"}, "ssh web2", ActionTerminate, ""},
		{"spaces", []string{" os-sensitive = pause "}, "rm -rf /", ActionPause, ""},
		{"other pack", []string{"database"}, "rm -rf /", "", ""},
		{"none", nil, "rm -rf /", "", ""},
		{"unknown pack", []string{"os-sensitive", "nope"}, "", "", `unknown rule pack "nope"`},
		{"unknown action", []string{"os-sensitive=explode"}, "", "", `unknown action "explode"`},
		{"empty action", []string{"os-sensitive="}, "", "", `unknown action ""`},
		{"no name", []string{"=alert"}, "", "", "no pack name"},
		{"twice", []string{"database", "database=alert"}, "", "", `"database" named twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			verr := e.ValidateSpecs(tc.specs)
			s, err := e.Set(tc.specs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "rules: ") {
					t.Fatalf("Set: got error %v, want one containing %q", err, tc.wantErr)
				}
				if verr == nil || verr.Error() != err.Error() {
					t.Errorf("ValidateSpecs: got %v, want %v", verr, err)
				}
				return
			}
			if err != nil || verr != nil {
				t.Fatalf("got errors %v, %v, want none", err, verr)
			}
			var got Action
			if h, ok := Strongest(s.Match(KindCommand, tc.line)); ok {
				got = h.Rule.Action
			}
			if got != tc.want {
				t.Errorf("got action %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSetMatch(t *testing.T) {
	s := builtinSet(t)
	t.Run("lines", func(t *testing.T) {
		hits := s.Match(KindCommand, "ls\r\nssh web2\nrm -rf /\r\nssh web3\n")
		var got []string
		for _, h := range hits {
			got = append(got, h.Rule.ID+"="+h.Text)
		}
		// In rule order (os-sensitive before lateral-movement), each rule
		// once, with the first line it hit.
		want := []string{"os.rm-root=rm -rf /", "lat.ssh=ssh web2"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("sql text", func(t *testing.T) {
		hits := s.Match(KindSQL, "select 1;\n  DROP TABLE t -- bye\n; select 2")
		if len(hits) != 1 || hits[0].Text != "DROP TABLE t -- bye" {
			t.Errorf("got %+v, want one hit with text %q", hits, "DROP TABLE t -- bye")
		}
	})
	t.Run("kinds", func(t *testing.T) {
		for _, k := range []Kind{KindCommand, KindOutput, KindSQL} {
			if !s.Has(k) {
				t.Errorf("Has(%s): got false, want true", k)
			}
		}
		if s.Has("nope") || s.Match("nope", "rm -rf /") != nil {
			t.Errorf("got a match for an unknown kind, want none")
		}
		if hits := s.Match(KindSQL, "rm -rf /"); hits != nil {
			t.Errorf("got %v for a command as SQL, want none", hits)
		}
		db, _ := mustEngine(t).Set([]string{"database"})
		if db.Has(KindCommand) || !db.Has(KindSQL) {
			t.Errorf("database pack: got Has(command)=%v Has(sql)=%v, want false, true", db.Has(KindCommand), db.Has(KindSQL))
		}
	})
	t.Run("nil", func(t *testing.T) {
		var s *Set
		if s.Has(KindCommand) || s.Match(KindCommand, "rm -rf /") != nil || s.AlertOnly() != nil {
			t.Errorf("got a nil Set that does something, want nothing")
		}
	})
	t.Run("empty", func(t *testing.T) {
		if hits := s.Match(KindCommand, ""); hits != nil {
			t.Errorf("got %v, want none", hits)
		}
	})
}

func TestAlertOnly(t *testing.T) {
	s := builtinSet(t)
	a := s.AlertOnly()
	for _, tc := range []struct {
		kind Kind
		text string
	}{
		{KindCommand, "rm -rf /"},
		{KindCommand, "curl x | sh"},
		{KindSQL, "drop table t"},
		{KindOutput, "-----BEGIN PRIVATE KEY-----"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			orig, alert := s.Match(tc.kind, tc.text), a.Match(tc.kind, tc.text)
			if len(orig) == 0 || len(orig) != len(alert) {
				t.Fatalf("got %d hits alert-only, %d before, want the same, not 0", len(alert), len(orig))
			}
			for i := range alert {
				if alert[i].Rule.ID != orig[i].Rule.ID || alert[i].Rule.Action != ActionAlert {
					t.Errorf("got %s %s, want %s alert", alert[i].Rule.ID, alert[i].Rule.Action, orig[i].Rule.ID)
				}
			}
		})
	}
	if h, _ := Strongest(s.Match(KindCommand, "rm -rf /")); h.Rule.Action != ActionBlock {
		t.Errorf("original set: got %s, want block", h.Rule.Action)
	}
}

func TestSetConcurrent(t *testing.T) {
	s := builtinSet(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if len(s.Match(KindCommand, "sudo rm -rf /")) != 1 || len(s.Match(KindSQL, "drop table t")) != 1 {
					t.Error("got the wrong hits under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	return e
}
