package rules

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRules writes body to a rules file in a temporary directory.
func writeRules(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodRules = `# Custom packs for production.
packs:
  - name: prod-guard
    description: Extra guards for production
    rules:
      - id: no-touch-forbidden
        kind: command
        pattern: '\btouch\s+\S*forbidden'
        unless: 'allowed'
        action: block
        severity: high
        description: Creating forbidden files is not allowed
      - id: no-secret-output
        kind: output
        pattern: 'SECRET=\S+'
        action: alert
      - id: no-pg-sleep
        kind: sql
        pattern: 'PG_SLEEP\s*\('
        action: terminate
        severity: low
  - name: empty-description
    rules:
      - id: no-top
        pattern: '^top$'
        action: pause
`

func TestLoadGood(t *testing.T) {
	e, err := New(writeRules(t, goodRules))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var names []string
	for _, p := range e.Packs() {
		names = append(names, p.Name)
	}
	if got, want := strings.Join(names, ","), "credential-access,database,empty-description,lateral-movement,os-sensitive,prod-guard"; got != want {
		t.Errorf("got packs %s, want %s", got, want)
	}
	s, err := e.Set([]string{"prod-guard", "empty-description=block"})
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	tests := []struct {
		kind Kind
		text string
		want string // ID:action:severity:pack of the hits
	}{
		{KindCommand, "sudo touch /etc/forbidden", "no-touch-forbidden:block:high:prod-guard"},
		{KindCommand, "touch /etc/forbidden # allowed", ""},
		{KindCommand, "touch /etc/ok", ""},
		{KindOutput, "export SECRET=hunter2", "no-secret-output:alert:medium:prod-guard"},
		{KindSQL, "SELECT pg_sleep(10)", "no-pg-sleep:terminate:low:prod-guard"},
		{KindSQL, "SELECT 'pg_sleep(10)'", ""},
		{KindCommand, "top", "no-top:block:medium:empty-description"},
		{KindCommand, "rm -rf /", ""},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			var got []string
			for _, h := range s.Match(tc.kind, tc.text) {
				r := h.Rule
				got = append(got, r.ID+":"+string(r.Action)+":"+string(r.Severity)+":"+r.Pack)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
		})
	}
}

func TestLoadEmpty(t *testing.T) {
	for _, body := range []string{"", "# nothing\n", "packs:\n", "packs: []\n"} {
		t.Run(body, func(t *testing.T) {
			e, err := New(writeRules(t, body))
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if got := len(e.Packs()); got != len(allPacks) {
				t.Errorf("got %d packs, want %d", got, len(allPacks))
			}
		})
	}
}

func TestLoadBad(t *testing.T) {
	// rule wraps one rule's lines (starting at line 4) in a valid file.
	rule := func(lines string) string {
		return "packs:\n  - name: p\n    rules:\n" + lines
	}
	tests := []struct {
		name string
		body string
		want string // the error after "rules: PATH:"
	}{
		{"yaml syntax", "packs:\n  - name: p\n    description: 'abc\n", `3: found unexpected end of stream`},
		{"top not mapping", "- a\n- b\n", `1: want a mapping with key packs`},
		{"unknown top key", "packs: []\nrulez: []\n", `2: unknown key "rulez"`},
		{"packs not list", "packs: {}\n", `1: packs: want a list of packs`},
		{"pack not mapping", "packs:\n  - p\n", `2: pack: want a mapping`},
		{"unknown pack key", "packs:\n  - name: p\n    rule: []\n", `3: pack: unknown key "rule"`},
		{"duplicate key", "packs:\n  - name: p\n    name: q\n", `3: pack: duplicate key "name"`},
		{"missing pack name", "packs:\n  - rules: []\n", `2: pack: missing name`},
		{"bad pack name", "packs:\n  - name: a=b\n", `2: pack "a=b": name must be`},
		{"builtin pack name", "packs:\n  - name: os-sensitive\n    rules: []\n", `2: pack "os-sensitive": name taken by a built-in pack`},
		{"duplicate pack", rule("      - {id: a, pattern: x, action: alert}\n") + "  - name: p\n    rules:\n      - {id: b, pattern: x, action: alert}\n", `5: pack "p": duplicate pack name`},
		{"no rules", "packs:\n  - name: p\n", `2: pack "p": no rules`},
		{"rules not list", "packs:\n  - name: p\n    rules: x\n", `3: pack "p": rules: want a list`},
		{"rule not mapping", rule("      - x\n"), `4: pack "p": rule 1: want a mapping`},
		{"unknown rule key", rule("      - id: a\n        pattern: x\n        action: alert\n        actoin: block\n"), `7: pack "p": rule 1: unknown key "actoin"`},
		{"pack key in rule", rule("      - id: a\n        pack: q\n"), `5: pack "p": rule 1: unknown key "pack"`},
		{"value not string", rule("      - id: a\n        pattern: [x]\n"), `5: pack "p": rule 1: pattern: want a string`},
		{"missing id", rule("      - pattern: x\n        action: alert\n"), `4: pack "p": rule 1: missing id`},
		{"bad id", rule("      - id: 'a b'\n        pattern: x\n        action: alert\n"), `4: rule "a b": id must be`},
		{"duplicate id", rule("      - {id: a, pattern: x, action: alert}\n      - {id: a, pattern: y, action: alert}\n"), `5: rule "a": duplicate id (also in pack "p")`},
		{"builtin id", rule("      - {id: os.rm-root, pattern: x, action: alert}\n"), `4: rule "os.rm-root": duplicate id (also in pack "os-sensitive")`},
		{"missing pattern", rule("      - id: a\n        action: alert\n"), `4: rule "a": missing pattern`},
		{"missing action", rule("      - id: a\n        pattern: x\n"), `4: rule "a": missing action`},
		{"unknown kind", rule("      - id: a\n        kind: stdin\n        pattern: x\n        action: alert\n"), `5: rule "a": unknown kind "stdin"`},
		{"unknown action", rule("      - id: a\n        pattern: x\n        action: kill\n"), `6: rule "a": unknown action "kill"`},
		{"unknown severity", rule("      - id: a\n        pattern: x\n        action: alert\n        severity: dire\n"), `7: rule "a": unknown severity "dire"`},
		{"bad pattern", rule("      - id: no-drop\n        kind: sql\n        action: block\n        pattern: 'drop ('\n"), `7: rule "no-drop": pattern: error parsing regexp: missing closing ): ` + "`drop (`"},
		{"bad unless", rule("      - id: a\n        pattern: x\n        unless: '[z'\n        action: alert\n"), `6: rule "a": unless: error parsing regexp: missing closing ]`},
		{"empty match", rule("      - id: a\n        pattern: 'x*'\n        action: alert\n"), `5: rule "a": pattern: matches an empty line`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeRules(t, tc.body)
			_, err := New(path)
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			if prefix := "rules: " + path + ":" + tc.want; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("got error\n\t%v\nwant it to start\n\t%s", err, prefix)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := New(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "rules: ") {
		t.Errorf("got %v, want a rules: error wrapping fs.ErrNotExist", err)
	}
}
