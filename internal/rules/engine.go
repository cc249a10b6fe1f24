package rules

import (
	"fmt"
	"slices"
	"strings"
)

// Engine holds every pack Vigil knows: the built-in ones and the custom
// ones of the rules file. It is immutable after New and safe for
// concurrent use.
type Engine struct {
	packs  []Pack           // sorted by name, rules compiled
	byName map[string]*Pack // into packs
}

// New returns an engine with the built-in packs plus the custom packs of
// the YAML file at path; an empty path means built-in packs only.
//
// Any error in the file is refused, naming the file and line, for
// example
//
//	rules: /etc/vigil/rules.yaml:12: rule "no-drop": pattern: error parsing regexp: missing closing ): `(`
//
// Refused are: YAML syntax errors, unknown keys, a missing id, pattern
// or action, an unknown kind, action or severity, an expression that
// does not compile or matches an empty line, a rule id used twice (in
// any pack, built-in ones included), and a pack named like another pack.
func New(path string) (*Engine, error) {
	packs := builtinPacks()
	seen := make(map[string]string) // rule id -> pack
	for i := range packs {
		p := &packs[i]
		for j := range p.Rules {
			r := &p.Rules[j]
			if err := r.compile(); err != nil {
				return nil, fmt.Errorf("rules: built-in rule %q: %w", r.ID, err)
			}
			if other, dup := seen[r.ID]; dup {
				return nil, fmt.Errorf("rules: built-in rule %q: duplicate id (also in pack %q)", r.ID, other)
			}
			seen[r.ID] = p.Name
		}
	}
	if path != "" {
		custom, err := loadFile(path, packs, seen)
		if err != nil {
			return nil, err
		}
		packs = append(packs, custom...)
	}
	slices.SortFunc(packs, func(a, b Pack) int { return strings.Compare(a.Name, b.Name) })
	e := &Engine{packs: packs, byName: make(map[string]*Pack, len(packs))}
	for i := range e.packs {
		e.byName[e.packs[i].Name] = &e.packs[i]
	}
	return e, nil
}

// Packs returns a copy of every pack, sorted by name.
func (e *Engine) Packs() []Pack {
	out := make([]Pack, len(e.packs))
	for i, p := range e.packs {
		out[i] = p.clone()
	}
	return out
}

// spec is one parsed pack spec.
type spec struct {
	pack     *Pack
	override Action // "" keeps each rule's own action
}

// parseSpecs resolves specs against e's packs.
func (e *Engine) parseSpecs(specs []string) ([]spec, error) {
	out := make([]spec, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		name, act, hasAct := strings.Cut(s, "=")
		name, act = strings.TrimSpace(name), strings.TrimSpace(act)
		if name == "" {
			return nil, fmt.Errorf("rules: pack spec %q: no pack name", s)
		}
		p, ok := e.byName[name]
		if !ok {
			return nil, fmt.Errorf("rules: unknown rule pack %q", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("rules: rule pack %q named twice", name)
		}
		seen[name] = true
		sp := spec{pack: p}
		if hasAct {
			sp.override = Action(act)
			if sp.override.rank() == 0 {
				return nil, fmt.Errorf("rules: pack spec %q: unknown action %q (want alert, pause, block or terminate)", s, act)
			}
		}
		out = append(out, sp)
	}
	return out, nil
}

// ValidateSpecs checks specs as Set would, without building a Set.
func (e *Engine) ValidateSpecs(specs []string) error {
	_, err := e.parseSpecs(specs)
	return err
}

// Set compiles the packs named by specs into the rule set of one target.
// A spec is "PACK" or "PACK=ACTION", where ACTION (alert, pause, block or
// terminate) replaces the action of every rule of the pack. Rules keep
// the order of specs, then of each pack. An unknown pack or action, or a
// pack named twice, is an error naming it. No specs give an empty set.
func (e *Engine) Set(specs []string) (*Set, error) {
	parsed, err := e.parseSpecs(specs)
	if err != nil {
		return nil, err
	}
	s := new(Set)
	for _, sp := range parsed {
		for _, r := range sp.pack.Rules {
			if sp.override != "" {
				r.Action = sp.override
			}
			i := r.Kind.index()
			s.rules[i] = append(s.rules[i], r)
		}
	}
	return s, nil
}

// Set is the compiled rules of one target. It is immutable and safe for
// concurrent use. A nil *Set has no rules and matches nothing.
type Set struct {
	rules [len(kinds)][]Rule // by Kind.index, in order
}

// Has reports whether s has any rule of kind k, so a gateway can skip
// the work of feeding rules it does not have.
func (s *Set) Has(k Kind) bool {
	i := k.index()
	return s != nil && i >= 0 && len(s.rules[i]) > 0
}

// AlertOnly returns a copy of s whose every action is alert, for
// break-glass sessions: rules still report, nothing is stopped. It
// returns nil for a nil s.
func (s *Set) AlertOnly() *Set {
	if s == nil {
		return nil
	}
	out := new(Set)
	for i, rs := range s.rules {
		if rs == nil {
			continue
		}
		out.rules[i] = make([]Rule, len(rs))
		for j, r := range rs {
			r.Action = ActionAlert
			out.rules[i][j] = r
		}
	}
	return out
}

// unit is one piece of text a rule is tried on: a line, or a normalised
// SQL statement.
type unit struct {
	orig  string // as sent, for Hit.Text
	text  string // what the expressions see
	lower string // text lower-cased, for the keyword prefilter
}

// Match returns every rule of kind k that hits text, in rule order, each
// once. For KindCommand and KindOutput each line of text is tried
// separately (a trailing carriage return dropped) and Hit.Text is the
// first line the rule hit; for KindSQL each statement is tried
// separately, normalised (see KindSQL), and Hit.Text is the statement as
// sent.
func (s *Set) Match(k Kind, text string) []Hit {
	i := k.index()
	if s == nil || i < 0 || len(s.rules[i]) == 0 {
		return nil
	}
	var arr [4]unit // most text is one line or statement
	units := arr[:0]
	if k == KindSQL {
		for _, st := range splitSQL(text) {
			units = append(units, unit{orig: st.orig, text: st.norm, lower: st.norm})
		}
	} else {
		for rest := text; ; {
			line, more, found := strings.Cut(rest, "\n")
			line = strings.TrimSuffix(line, "\r")
			if line != "" {
				units = append(units, unit{orig: line, text: line, lower: strings.ToLower(line)})
			}
			if !found {
				break
			}
			rest = more
		}
	}
	var hits []Hit
	for j := range s.rules[i] {
		r := &s.rules[i][j]
		for _, u := range units {
			if r.hits(u.text, u.lower) {
				hits = append(hits, Hit{Rule: *r, Text: u.orig})
				break
			}
		}
	}
	return hits
}
