// Package alert owns Vigil's alerts: findings worth a human's attention
// (a rule hit, a monitor detection, a break-glass use). It stores them in
// the alerts table, merges repeats of the same finding (deduplication),
// records acknowledgements, and delivers every alert to the configured
// sinks (signed webhooks) exactly once and in order, across restarts, with
// a persistent per-sink cursor in the alert_cursors table.
//
// It does not decide what is alert-worthy (the rules engine and the
// monitors do), does not write the audit trail (callers audit an
// acknowledgement), and does not serve HTTP (package api does).
package alert

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Severity ranks an alert: low, medium, high or critical. The empty
// Severity is not valid for an alert; as a filter or a sink minimum it
// means "everything".
type Severity string

// Severities, lowest first.
const (
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// severities lists every valid Severity, lowest first.
var severities = []Severity{Low, Medium, High, Critical}

// ParseSeverity parses a severity name, ignoring case and surrounding
// space. The empty string is an error.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(strings.ToLower(strings.TrimSpace(s)))
	if sev.Rank() == 0 {
		return "", fmt.Errorf("alert: unknown severity %q (want low, medium, high or critical)", s)
	}
	return sev, nil
}

// Rank orders severities: 1 for low up to 4 for critical, and 0 for the
// empty or an unknown severity (so a zero minimum admits everything).
func (s Severity) Rank() int {
	switch s {
	case Low:
		return 1
	case Medium:
		return 2
	case High:
		return 3
	case Critical:
		return 4
	}
	return 0
}

// atLeast returns the severities ranked at or above min, for an SQL IN
// list; for a zero minimum that is all of them.
func atLeast(min Severity) []Severity {
	var out []Severity
	for _, s := range severities {
		if s.Rank() >= min.Rank() {
			out = append(out, s)
		}
	}
	return out
}

// Alert is one finding: a rule hit, a monitor detection, a break-glass use.
// ID, LastTime, Count and the acknowledgement fields are assigned by the
// Store; a caller of Raise sets the rest.
type Alert struct {
	ID int64 `json:"id"`
	// Time is the first occurrence; zero in Raise means now.
	Time time.Time `json:"time"`
	// LastTime is the latest occurrence merged into the alert.
	LastTime time.Time `json:"last_time"`
	Severity Severity  `json:"severity"`
	// Kind says what raised it: "rule", "monitor", "breakglass", ...
	Kind string `json:"kind"`
	// Rule is the rule or detector id, if any.
	Rule string `json:"rule,omitempty"`
	// Actor, Target, Session and Source say who did it, where, in which
	// session and from which address, as far as known.
	Actor   string `json:"actor,omitempty"`
	Target  string `json:"target,omitempty"`
	Session string `json:"session,omitempty"`
	Source  string `json:"source,omitempty"`
	// Summary is one human-readable line.
	Summary string `json:"summary"`
	// Data is the evidence. It is stored as JSON, so it reads back as
	// JSON types (numbers as float64). Callers never put secrets here:
	// it is sent to every sink.
	Data map[string]any `json:"data,omitempty"`
	// DedupKey merges repeats: an unacknowledged alert with the same key,
	// at least as severe, whose last occurrence is within the dedup window
	// is counted instead of raised again. Empty means never merged.
	DedupKey string `json:"dedup_key,omitempty"`
	// Count is the number of occurrences merged (1 = just this one).
	Count int64 `json:"count"`
	// AckedBy, AckedAt and AckNote record the acknowledgement; AckedAt is
	// zero while the alert is unacknowledged.
	AckedBy string    `json:"acked_by,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`
	AckNote string    `json:"ack_note,omitempty"`
}

// Acked reports whether the alert has been acknowledged.
func (a *Alert) Acked() bool { return !a.AckedAt.IsZero() }

// validate checks what a caller of Raise must supply.
func (a *Alert) validate() error {
	switch {
	case a.Kind == "":
		return errors.New("alert: an alert needs a kind")
	case a.Summary == "":
		return errors.New("alert: an alert needs a summary")
	case a.Severity.Rank() == 0:
		return fmt.Errorf("alert: unknown severity %q (want low, medium, high or critical)", a.Severity)
	}
	return nil
}
