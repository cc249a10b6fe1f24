package retention

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/config"
)

func TestParsePolicyRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Retention
		want string
	}{
		{"negative default", config.Retention{Default: -time.Hour}, `retention.default -1h0m0s: must not be negative`},
		{"default too short", config.Retention{Default: 90 * time.Second}, `retention.default 1m30s: shorter than the minimum 1h0m0s`},
		{"label without =", config.Retention{Labels: map[string]time.Duration{"prod": day}}, `retention.labels key "prod": want a target label KEY=VALUE`},
		{"label with empty key", config.Retention{Labels: map[string]time.Duration{"=prod": day}}, `retention.labels key "=prod": the label key before '=' is empty`},
		{"label key with a space", config.Retention{Labels: map[string]time.Duration{"my env=prod": day}}, `retention.labels key "my env=prod": a label key has no spaces or commas`},
		{"label key with a comma", config.Retention{Labels: map[string]time.Duration{"a,b=c": day}}, `a label key has no spaces or commas`},
		{"label value padded", config.Retention{Labels: map[string]time.Duration{"env= prod": day}}, `the label value has leading or trailing space`},
		{"negative label", config.Retention{Labels: map[string]time.Duration{"env=prod": -day}}, `retention.labels["env=prod"] -24h0m0s: must not be negative`},
		{"zero label", config.Retention{Labels: map[string]time.Duration{"env=prod": 0}}, `retention.labels["env=prod"]: a retention is required`},
		{"label too short", config.Retention{Labels: map[string]time.Duration{"env=prod": time.Minute}}, `retention.labels["env=prod"] 1m0s: shorter than the minimum`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy(tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "retention: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Retention
		want string
	}{
		{"empty is the default", config.Retention{}, ""},
		{"full", config.Retention{Default: 30 * day, Labels: map[string]time.Duration{"env=prod": 365 * day}, Every: 10 * time.Minute}, ""},
		{"bad policy", config.Retention{Labels: map[string]time.Duration{"prod": day}}, "retention.labels"},
		{"bad every", config.Retention{Every: -time.Hour}, "retention.every"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.cfg)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestParseEvery(t *testing.T) {
	tests := []struct {
		name  string
		every time.Duration
		want  time.Duration
		err   string
	}{
		{"zero is the default", 0, DefaultEvery, ""},
		{"configured", 15 * time.Minute, 15 * time.Minute, ""},
		{"negative", -time.Minute, 0, "retention.every -1m0s: must not be negative"},
		{"too short", time.Second, 0, "retention.every 1s: shorter than the minimum 1m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEvery(tc.every)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestPolicyFor(t *testing.T) {
	p, err := ParsePolicy(config.Retention{Default: 30 * day, Labels: map[string]time.Duration{
		"env=prod": 365 * day, "env=dev": 7 * day, "pci=yes": 2 * 365 * day, "team=a": 365 * day, "team=b": 365 * day, "note=a=b": 10 * day}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		labels map[string]string
		keep   time.Duration
		policy string
	}{
		{"deleted target", nil, 30 * day, "default"},
		{"no labels", map[string]string{}, 30 * day, "default"},
		{"no matching label", map[string]string{"env": "staging"}, 30 * day, "default"},
		{"a key alone does not match", map[string]string{"pci": "no"}, 30 * day, "default"},
		{"shorter than the default", map[string]string{"env": "dev"}, 7 * day, "env=dev"},
		{"longer than the default", map[string]string{"env": "prod"}, 365 * day, "env=prod"},
		{"the longest of several wins", map[string]string{"env": "dev", "pci": "yes"}, 2 * 365 * day, "pci=yes"},
		{"a tie goes to the first label", map[string]string{"env": "prod", "team": "b"}, 365 * day, "env=prod"},
		{"a value with =", map[string]string{"note": "a=b"}, 10 * day, "note=a=b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep, policy := p.For(tc.labels)
			if keep != tc.keep || policy != tc.policy {
				t.Fatalf("got %v %q, want %v %q", keep, policy, tc.keep, tc.policy)
			}
		})
	}
	if got := p.Shortest(); got != 7*day {
		t.Fatalf("shortest: got %v, want %v", got, 7*day)
	}
	if keep, policy := (Policy{}).For(nil); keep != DefaultRetention || policy != DefaultPolicyName {
		t.Fatalf("zero policy: got %v %q, want %v default", keep, policy, DefaultRetention)
	}
}
