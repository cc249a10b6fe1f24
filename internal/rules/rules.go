// Package rules owns Vigil's real-time rules engine: the rule and pack
// model, the built-in packs, the loader for custom packs (a YAML file),
// the compiled per-target rule sets that match shell command lines,
// terminal output lines and SQL statements, and the helpers that turn a
// raw session into what rules look at: LineEditor rebuilds the command
// line a user submits from their keystrokes, OutputLines splits terminal
// output into plain lines, and the SQL normaliser strips comments and
// literals and splits statements.
//
// It does not act on a hit: deciding to alert, pause, block or terminate
// a session, and recording that it did, is the gateways' job. Nor does it
// know which packs a target enables; that is configuration.
//
// Rules are regular expressions (Go RE2 syntax, so matching is linear in
// the input) and are a tripwire, not a sandbox: a determined user can
// always write a command no pattern anticipates (a script, an alias, an
// encoded payload). The built-in packs aim to catch the mistakes and the
// obvious misuse without crying wolf on everyday commands.
package rules

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is what a rule looks at.
type Kind string

// Kinds of rule.
const (
	// KindCommand rules look at the command lines a user submits at an
	// interactive shell (or runs with an SSH exec request).
	KindCommand Kind = "command"
	// KindOutput rules look at the lines a session prints.
	KindOutput Kind = "output"
	// KindSQL rules look at the SQL statements a database session sends,
	// normalised: comments removed, the contents of string literals and
	// quoted identifiers removed, lower-cased, whitespace collapsed.
	KindSQL Kind = "sql"
)

// kinds lists every Kind in the order a Set keeps them.
var kinds = [...]Kind{KindCommand, KindOutput, KindSQL}

// index returns k's slot in a Set, or -1 for an unknown kind.
func (k Kind) index() int {
	switch k {
	case KindCommand:
		return 0
	case KindOutput:
		return 1
	case KindSQL:
		return 2
	}
	return -1
}

// Action is what the gateway does when a rule hits.
type Action string

// Actions, weakest first.
const (
	// ActionAlert lets the command through and raises an alert.
	ActionAlert Action = "alert"
	// ActionPause holds the command until an approver lets it through.
	ActionPause Action = "pause"
	// ActionBlock refuses the command; the session goes on.
	ActionBlock Action = "block"
	// ActionTerminate refuses the command and ends the session.
	ActionTerminate Action = "terminate"
)

// rank orders actions by strength; 0 is an unknown action.
func (a Action) rank() int {
	switch a {
	case ActionAlert:
		return 1
	case ActionPause:
		return 2
	case ActionBlock:
		return 3
	case ActionTerminate:
		return 4
	}
	return 0
}

// Stronger reports whether a is stronger than b in the order alert <
// pause < block < terminate. An unknown action is weaker than any known
// one.
func (a Action) Stronger(b Action) bool { return a.rank() > b.rank() }

// Severity is how serious a hit is, for alert routing.
type Severity string

// Severities, least serious first.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

func (s Severity) valid() bool {
	switch s {
	case SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return true
	}
	return false
}

// Rule is one pattern and what to do when it hits. A rule hits a line
// when Pattern matches it and Unless, if set, does not. Pattern and
// Unless are Go RE2 syntax; for KindSQL they are matched
// case-insensitively against normalised SQL (see KindSQL), for the other
// kinds exactly as written.
//
// A Rule obtained from Engine.Packs or a Hit is compiled; a Rule built by
// hand is not and is only useful as data. Built-in rules also carry
// prefilters (keywords, and small expressions that start at a command's
// name) that skip their Pattern on lines it cannot match; they never
// change what a rule hits.
type Rule struct {
	ID          string   `json:"id"`
	Pack        string   `json:"pack"`
	Kind        Kind     `json:"kind"`
	Pattern     string   `json:"pattern"`
	Unless      string   `json:"unless,omitempty"`
	Action      Action   `json:"action"`
	Severity    Severity `json:"severity"`
	Description string   `json:"description"`

	re     *regexp.Regexp // compiled Pattern
	unless *regexp.Regexp // compiled Unless; nil when empty
	// parts are a built-in rule's alternatives, from which its Pattern
	// and quick expressions are built (see part).
	parts []part
	// quick, when set, are cheaper expressions of which one matches
	// every line Pattern matches; a line none matches skips re.
	quick   []string
	quickRe []*regexp.Regexp
	// keywords is a prefilter: when set, the rule can only hit a line
	// whose lower-cased text contains one of them, so the regexps are
	// skipped otherwise. Built-in rules declare them; custom rules have
	// none and always run their regexps.
	keywords []string
}

// compileErr names which expression of a rule failed to compile.
type compileErr struct {
	field string // "pattern" or "unless"
	err   error
}

func (e *compileErr) Error() string { return e.field + ": " + e.err.Error() }
func (e *compileErr) Unwrap() error { return e.err }

// compile compiles r's expressions. The error names the field.
func (r *Rule) compile() error {
	re, err := compileExpr(r.Kind, r.Pattern)
	if err != nil {
		return &compileErr{"pattern", err}
	}
	if re.MatchString("") {
		return &compileErr{"pattern", fmt.Errorf("matches an empty line, so it would hit everything")}
	}
	r.re, r.unless, r.quickRe = re, nil, nil
	for _, q := range r.quick {
		qre, err := regexp.Compile(q)
		if err != nil {
			return &compileErr{"pattern (quick form)", err}
		}
		r.quickRe = append(r.quickRe, qre)
	}
	if r.Unless != "" {
		if r.unless, err = compileExpr(r.Kind, r.Unless); err != nil {
			return &compileErr{"unless", err}
		}
	}
	for i, k := range r.keywords {
		r.keywords[i] = strings.ToLower(k)
	}
	return nil
}

// compileExpr compiles expr as written first, so that an error quotes the
// user's text, then case-insensitively for SQL.
func compileExpr(k Kind, expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil || k != KindSQL {
		return re, err
	}
	return regexp.Compile("(?i)" + expr)
}

// hits reports whether r hits text; lower is text lower-cased, for the
// keyword prefilter.
func (r *Rule) hits(text, lower string) bool {
	if len(r.keywords) > 0 && !containsAny(lower, r.keywords) {
		return false
	}
	if r.quickRe != nil && !matchAny(r.quickRe, text) {
		return false
	}
	if r.re == nil || !r.re.MatchString(text) {
		return false
	}
	return r.unless == nil || !r.unless.MatchString(text)
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// Pack is a named group of rules that targets enable together.
type Pack struct {
	Name string `json:"name"`
	// Builtin is true for the packs that ship with Vigil.
	Builtin     bool   `json:"builtin"`
	Description string `json:"description"`
	Rules       []Rule `json:"rules"`
}

// clone returns a copy of p that shares no slice with it.
func (p Pack) clone() Pack {
	p.Rules = append([]Rule(nil), p.Rules...)
	return p
}

// Hit is a rule that hit and the text it hit.
type Hit struct {
	// Rule is the rule that hit; its Action is the effective action, after
	// the target's override and break-glass.
	Rule Rule `json:"rule"`
	// Text is the line (for KindSQL, the statement) that hit, as the user
	// sent it.
	Text string `json:"text"`
}

// Strongest returns the hit with the strongest action, the first of
// equals; ok is false when hits is empty.
func Strongest(hits []Hit) (h Hit, ok bool) {
	if len(hits) == 0 {
		return Hit{}, false
	}
	h = hits[0]
	for _, x := range hits[1:] {
		if x.Rule.Action.Stronger(h.Rule.Action) {
			h = x
		}
	}
	return h, true
}
