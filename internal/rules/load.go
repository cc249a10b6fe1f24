package rules

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// The rules file holds custom packs:
//
//	packs:
//	  - name: prod-guard
//	    description: Extra guards for production
//	    rules:
//	      - id: no-touch-forbidden
//	        kind: command          # command | output | sql (default command)
//	        pattern: '\btouch\s+\S*forbidden'
//	        unless: ''             # optional
//	        action: block          # alert | pause | block | terminate
//	        severity: high         # low | medium | high | critical (default medium)
//	        description: Creating forbidden files is not allowed
//
// It is walked as a yaml.Node tree rather than decoded into structs so
// that every error can name its line.

// validName is what pack names and rule IDs may look like: a spec
// "PACK=ACTION" must split unambiguously.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// yamlLine picks the line out of a YAML syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// loader reads one rules file.
type loader struct {
	path   string
	packs  map[string]bool   // pack names taken -> whether built-in
	ruleID map[string]string // rule IDs taken -> their pack
}

// loadFile returns the custom packs of the rules file at path, compiled.
// builtin are the built-in packs and ids the rule IDs they use; ids is
// extended with the file's.
func loadFile(path string, builtin []Pack, ids map[string]string) ([]Pack, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: read rules file: %w", err)
	}
	l := &loader{path: path, packs: make(map[string]bool), ruleID: ids}
	for _, p := range builtin {
		l.packs[p.Name] = true
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("rules: %s:%s: %s", path, m[1], m[2])
		}
		return nil, fmt.Errorf("rules: %s: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // an empty file has no packs
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, l.errf(root, "want a mapping with key packs")
	}
	var packs []Pack
	err = l.fields(root, "", func(key string, v *yaml.Node) error {
		if key != "packs" {
			return l.errf(v, "unknown key %q (want packs)", key)
		}
		if isNull(v) {
			return nil
		}
		if v.Kind != yaml.SequenceNode {
			return l.errf(v, "packs: want a list of packs")
		}
		for _, n := range v.Content {
			p, err := l.pack(n)
			if err != nil {
				return err
			}
			packs = append(packs, p)
		}
		return nil
	})
	return packs, err
}

// errf returns an error at n's line.
func (l *loader) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("rules: %s:%d: "+format, append([]any{l.path, n.Line}, args...)...)
}

// fields calls fn for each key of the mapping n in order, refusing
// duplicate keys and keys that are not strings. what prefixes errors.
func (l *loader) fields(n *yaml.Node, what string, fn func(key string, v *yaml.Node) error) error {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return l.errf(k, "%swant a string key", what)
		}
		if seen[k.Value] {
			return l.errf(k, "%sduplicate key %q", what, k.Value)
		}
		seen[k.Value] = true
		if err := fn(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// str returns the string value of the scalar n.
func (l *loader) str(n *yaml.Node, what, key string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", l.errf(n, "%s%s: want a string", what, key)
	}
	if isNull(n) {
		return "", nil
	}
	return n.Value, nil
}

// pack reads one pack.
func (l *loader) pack(n *yaml.Node) (Pack, error) {
	if n.Kind != yaml.MappingNode {
		return Pack{}, l.errf(n, "pack: want a mapping with keys name, description, rules")
	}
	p := Pack{}
	var nameNode, rulesNode *yaml.Node
	err := l.fields(n, "pack: ", func(key string, v *yaml.Node) (err error) {
		switch key {
		case "name":
			nameNode = v
			p.Name, err = l.str(v, "pack: ", key)
		case "description":
			p.Description, err = l.str(v, "pack: ", key)
		case "rules":
			rulesNode = v
		default:
			err = l.errf(v, "pack: unknown key %q (want name, description, rules)", key)
		}
		return err
	})
	if err != nil {
		return Pack{}, err
	}
	switch {
	case p.Name == "":
		return Pack{}, l.errf(n, "pack: missing name")
	case !validName.MatchString(p.Name):
		return Pack{}, l.errf(nameNode, "pack %q: name must be letters, digits, '.', '_' or '-'", p.Name)
	}
	if builtin, taken := l.packs[p.Name]; taken {
		if builtin {
			return Pack{}, l.errf(nameNode, "pack %q: name taken by a built-in pack", p.Name)
		}
		return Pack{}, l.errf(nameNode, "pack %q: duplicate pack name", p.Name)
	}
	l.packs[p.Name] = false
	what := fmt.Sprintf("pack %q: ", p.Name)
	if rulesNode == nil || isNull(rulesNode) || rulesNode.Kind == yaml.SequenceNode && len(rulesNode.Content) == 0 {
		return Pack{}, l.errf(n, "%sno rules", what)
	}
	if rulesNode.Kind != yaml.SequenceNode {
		return Pack{}, l.errf(rulesNode, "%srules: want a list of rules", what)
	}
	for i, rn := range rulesNode.Content {
		r, err := l.rule(rn, p.Name, i+1)
		if err != nil {
			return Pack{}, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

// rule reads and compiles the nth rule of pack.
func (l *loader) rule(n *yaml.Node, pack string, nth int) (Rule, error) {
	what := fmt.Sprintf("pack %q: rule %d: ", pack, nth)
	if n.Kind != yaml.MappingNode {
		return Rule{}, l.errf(n, "%swant a mapping", what)
	}
	r := Rule{Pack: pack, Kind: KindCommand, Severity: SeverityMedium}
	nodes := make(map[string]*yaml.Node)
	err := l.fields(n, what, func(key string, v *yaml.Node) error {
		s, err := l.str(v, what, key)
		if err != nil {
			return err
		}
		nodes[key] = v
		switch key {
		case "id":
			r.ID = s
		case "kind":
			if s != "" {
				r.Kind = Kind(s)
			}
		case "pattern":
			r.Pattern = s
		case "unless":
			r.Unless = s
		case "action":
			r.Action = Action(s)
		case "severity":
			if s != "" {
				r.Severity = Severity(s)
			}
		case "description":
			r.Description = s
		default:
			return l.errf(v, "%sunknown key %q (want id, kind, pattern, unless, action, severity, description)", what, key)
		}
		return nil
	})
	if err != nil {
		return Rule{}, err
	}
	if r.ID == "" {
		return Rule{}, l.errf(n, "%smissing id", what)
	}
	what = "rule " + strconv.Quote(r.ID) + ": "
	switch {
	case !validName.MatchString(r.ID):
		return Rule{}, l.errf(nodes["id"], "%sid must be letters, digits, '.', '_' or '-'", what)
	case l.ruleID[r.ID] != "":
		return Rule{}, l.errf(nodes["id"], "%sduplicate id (also in pack %q)", what, l.ruleID[r.ID])
	case r.Kind.index() < 0:
		return Rule{}, l.errf(nodes["kind"], "%sunknown kind %q (want command, output or sql)", what, r.Kind)
	case r.Pattern == "":
		return Rule{}, l.errf(n, "%smissing pattern", what)
	case r.Action == "":
		return Rule{}, l.errf(n, "%smissing action", what)
	case r.Action.rank() == 0:
		return Rule{}, l.errf(nodes["action"], "%sunknown action %q (want alert, pause, block or terminate)", what, r.Action)
	case !r.Severity.valid():
		return Rule{}, l.errf(nodes["severity"], "%sunknown severity %q (want low, medium, high or critical)", what, r.Severity)
	}
	if err := r.compile(); err != nil {
		at := n
		var ce *compileErr
		if errors.As(err, &ce) && nodes[ce.field] != nil {
			at = nodes[ce.field]
		}
		return Rule{}, l.errf(at, "%s%w", what, err)
	}
	l.ruleID[r.ID] = pack
	return r, nil
}
