// Package retention owns how long session recordings are kept: the
// retention policy (a default and per-target-label periods), legal holds
// that keep recordings past their retention, and the sweeper that deletes
// expired recordings and audits each disposal.
//
// It does not write or read recordings (package recording), own the
// sessions table (package session) or the targets (package vault); it
// reads them to decide, deletes the recording file named by the session,
// and marks the session's recording disposed.
package retention

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/config"
)

// Policy defaults and bounds.
const (
	// DefaultRetention is how long recordings are kept when the
	// configuration does not say (retention.default: 0).
	DefaultRetention = 90 * 24 * time.Hour
	// DefaultEvery is how often the sweeper runs when the configuration
	// does not say (retention.every: 0).
	DefaultEvery = time.Hour
	// MinRetention is the shortest retention accepted: anything shorter is
	// taken for a unit mistake ("90s" for 90 days) rather than a policy,
	// since it would delete recordings moments after their session ends.
	MinRetention = time.Hour
	// MinEvery is the shortest sweep interval accepted.
	MinEvery = time.Minute
)

// DefaultPolicyName is the Policy name reported when no label policy
// matched a target (or the target no longer exists).
const DefaultPolicyName = "default"

// Policy says how long a target's recordings are kept. The zero value
// keeps every recording for DefaultRetention.
type Policy struct {
	// Default applies to targets no label policy matches, and to sessions
	// whose target has since been deleted; zero means DefaultRetention.
	Default time.Duration
	// labels are the label policies, sorted by label.
	labels []labelPolicy
}

// labelPolicy is one "key=value" entry of retention.labels.
type labelPolicy struct {
	label, key, value string
	keep              time.Duration
}

// ParsePolicy validates the retention configuration and returns its
// policy. Errors name the configuration key at fault.
func ParsePolicy(c config.Retention) (Policy, error) {
	p := Policy{Default: c.Default}
	switch {
	case c.Default < 0:
		return Policy{}, fmt.Errorf("retention: retention.default %s: must not be negative (0 means %s)", c.Default, DefaultRetention)
	case c.Default == 0:
		p.Default = DefaultRetention
	case c.Default < MinRetention:
		return Policy{}, fmt.Errorf("retention: retention.default %s: shorter than the minimum %s (90 days is \"2160h\")", c.Default, MinRetention)
	}
	for label, keep := range c.Labels {
		key, value, ok := strings.Cut(label, "=")
		switch {
		case !ok:
			return Policy{}, fmt.Errorf("retention: retention.labels key %q: want a target label KEY=VALUE, such as \"env=prod\"", label)
		case key == "":
			return Policy{}, fmt.Errorf("retention: retention.labels key %q: the label key before '=' is empty", label)
		case strings.ContainsAny(key, ", \t\r\n"):
			// The same rule as target label keys (package vault).
			return Policy{}, fmt.Errorf("retention: retention.labels key %q: a label key has no spaces or commas", label)
		case value != strings.TrimSpace(value):
			return Policy{}, fmt.Errorf("retention: retention.labels key %q: the label value has leading or trailing space", label)
		case keep < 0:
			return Policy{}, fmt.Errorf("retention: retention.labels[%q] %s: must not be negative", label, keep)
		case keep == 0:
			return Policy{}, fmt.Errorf("retention: retention.labels[%q]: a retention is required (such as \"720h\"); remove the entry to use the default", label)
		case keep < MinRetention:
			return Policy{}, fmt.Errorf("retention: retention.labels[%q] %s: shorter than the minimum %s", label, keep, MinRetention)
		}
		p.labels = append(p.labels, labelPolicy{label: label, key: key, value: value, keep: keep})
	}
	slices.SortFunc(p.labels, func(a, b labelPolicy) int { return cmp.Compare(a.label, b.label) })
	return p, nil
}

// For returns how long recordings of a target with labels are kept, and
// the name of the policy that decided it: a label ("env=prod") or
// DefaultPolicyName. When several label policies match, the longest
// retention wins (a recording is kept as long as any policy that applies
// to it asks; ties go to the label that sorts first). Labels nil (a
// deleted target) or matching no label policy get the default.
func (p Policy) For(labels map[string]string) (time.Duration, string) {
	keep, name := p.defaultKeep(), DefaultPolicyName
	matched := false
	for _, lp := range p.labels {
		v, ok := labels[lp.key]
		if !ok || v != lp.value {
			continue
		}
		if !matched || lp.keep > keep {
			keep, name, matched = lp.keep, lp.label, true
		}
	}
	return keep, name
}

// Shortest returns the shortest retention any target can get: no
// recording younger than it is ever expired.
func (p Policy) Shortest() time.Duration {
	short := p.defaultKeep()
	for _, lp := range p.labels {
		short = min(short, lp.keep)
	}
	return short
}

func (p Policy) defaultKeep() time.Duration {
	if p.Default == 0 {
		return DefaultRetention
	}
	return p.Default
}

// Validate checks the whole retention configuration (policy and sweep
// interval), for use at start-up before anything else is set up; New
// checks the same.
func Validate(c config.Retention) error {
	if _, err := ParsePolicy(c); err != nil {
		return err
	}
	_, err := parseEvery(c.Every)
	return err
}

// parseEvery validates retention.every; zero means DefaultEvery.
func parseEvery(every time.Duration) (time.Duration, error) {
	switch {
	case every < 0:
		return 0, fmt.Errorf("retention: retention.every %s: must not be negative (0 means %s)", every, DefaultEvery)
	case every == 0:
		return DefaultEvery, nil
	case every < MinEvery:
		return 0, fmt.Errorf("retention: retention.every %s: shorter than the minimum %s", every, MinEvery)
	}
	return every, nil
}
