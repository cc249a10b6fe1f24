package masking

import (
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	if got, want := len(c.Values), len(detectors); got != want {
		t.Errorf("Default() has %d detectors, want %d (all)", got, want)
	}
	c.Columns[0] = "changed"
	if got := Default().Columns[0]; got == "changed" {
		t.Errorf("Default() shares its slices between calls")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		config  Config
		wantErr []string // substrings of the error; none for nil
	}{
		{name: "zero", config: Config{}},
		{name: "globs", config: Config{Columns: []string{"*password*", "ssn", "card_[0-9]", "a?c", `x\*y`}}},
		{name: "detectors", config: Config{Values: []string{"email", "card", "us-ssn", "uk-nino", "iban"}}},
		{name: "bad glob", config: Config{Columns: []string{"ok", "[abc"}}, wantErr: []string{`masking: column pattern "[abc"`, "syntax error"}},
		{name: "bad escape", config: Config{Columns: []string{`pass\`}}, wantErr: []string{`column pattern "pass\\"`}},
		{name: "empty glob", config: Config{Columns: []string{""}}, wantErr: []string{"masking: column pattern is empty"}},
		{name: "unknown detector", config: Config{Values: []string{"email", "phone"}}, wantErr: []string{`masking: unknown value detector "phone"`, "known: email, iban, us-ssn, uk-nino, card"}},
		{name: "detector names are case-sensitive", config: Config{Values: []string{"Email"}}, wantErr: []string{`"Email"`}},
		{name: "every problem reported", config: Config{Columns: []string{"["}, Values: []string{"ssn"}}, wantErr: []string{`"["`, `"ssn"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.config.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want an error containing %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
			if _, nerr := New(tc.config); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New: got %v, want %v", nerr, err)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		name   string
		config Config
		want   bool
	}{
		{"zero", Config{}, false},
		{"empty slices", Config{Columns: []string{}, Values: []string{}}, false},
		{"columns", Config{Columns: []string{"ssn"}}, true},
		{"values", Config{Values: []string{DetectorEmail}}, true},
		{"default", Default(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustNew(t, tc.config)
			if got := m.Enabled(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	var m *Masker
	if m.Enabled() {
		t.Errorf("nil Masker: got Enabled true, want false")
	}
	if p := m.Plan([]string{"password"}, []uint32{oidText}, nil); p.Active() {
		t.Errorf("nil Masker: got an active Plan, want inactive")
	}
}

// mustNew returns a Masker for c or fails the test.
func mustNew(tb testing.TB, c Config) *Masker {
	tb.Helper()
	m, err := New(c)
	if err != nil {
		tb.Fatalf("New(%+v): %v", c, err)
	}
	return m
}
