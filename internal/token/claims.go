package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Actions a grant may allow.
const (
	ActionShell   = "shell"
	ActionExec    = "exec"
	ActionSFTP    = "sftp"
	ActionForward = "forward"
	ActionQuery   = "query"
	// ActionReadOnly is not an action of its own: beside query it
	// restricts the grant to statements that cannot write (the
	// PostgreSQL gateway refuses the others and runs the session with
	// default_transaction_read_only on).
	ActionReadOnly = "read-only"
)

// KnownActions lists every action in a fixed order.
var KnownActions = []string{ActionShell, ActionExec, ActionSFTP, ActionForward, ActionQuery, ActionReadOnly}

// RoleAdmin is the role that lets a Vigil token administer Vigil.
const RoleAdmin = "admin"

// Grant is one permission carried in a token: which target, as which
// login, for which actions.
type Grant struct {
	Target  string   `json:"target"`
	Login   string   `json:"login"`
	Actions []string `json:"actions"`
}

// Validate reports whether g names a target, a login and only known,
// non-repeated actions.
func (g Grant) Validate() error {
	if g.Target == "" || g.Login == "" {
		return errors.New("grant needs a target and a login")
	}
	if len(g.Actions) == 0 {
		return fmt.Errorf("grant %s:%s has no actions", g.Target, g.Login)
	}
	for i, a := range g.Actions {
		if !slices.Contains(KnownActions, a) {
			return fmt.Errorf("grant %s:%s: unknown action %q", g.Target, g.Login, a)
		}
		if slices.Contains(g.Actions[:i], a) {
			return fmt.Errorf("grant %s:%s: action %q repeated", g.Target, g.Login, a)
		}
	}
	if slices.Contains(g.Actions, ActionReadOnly) && !slices.Contains(g.Actions, ActionQuery) {
		return fmt.Errorf("grant %s:%s: %q qualifies the query action and needs it", g.Target, g.Login, ActionReadOnly)
	}
	return nil
}

// Allows reports whether g permits action on target as login. It is false
// for ActionReadOnly, which restricts the query action rather than
// permitting anything: ask ReadOnly, or QueryAccess across several grants.
func (g Grant) Allows(target, login, action string) bool {
	return action != ActionReadOnly && g.Target == target && g.Login == login && slices.Contains(g.Actions, action)
}

// ReadOnly reports whether g carries ActionReadOnly, restricting its query
// action to statements that cannot write.
func (g Grant) ReadOnly() bool { return slices.Contains(g.Actions, ActionReadOnly) }

// QueryAccess reports whether grants allow the query action on target as
// login and, if so, whether only read-only. Read-only is a restriction, so
// it holds only when every grant allowing query there carries it: one
// grant without it lifts the restriction. This is the rule the PostgreSQL
// gateway applies at login and policy applies when a token is narrowed.
func QueryAccess(grants []Grant, target, login string) (allowed, readOnly bool) {
	readOnly = true
	for _, g := range grants {
		if g.Allows(target, login, ActionQuery) {
			allowed = true
			readOnly = readOnly && g.ReadOnly()
		}
	}
	return allowed, allowed && readOnly
}

// Combined returns the one grant that grants give on target as login:
// every action any of them allows there (several roles can each grant
// some), with ActionReadOnly only when QueryAccess says the query action
// is read-only. Its Actions are nil when none of grants is for target and
// login.
func Combined(grants []Grant, target, login string) Grant {
	out := Grant{Target: target, Login: login}
	for _, g := range grants {
		if g.Target != target || g.Login != login {
			continue
		}
		for _, a := range g.Actions {
			if a != ActionReadOnly && !slices.Contains(out.Actions, a) {
				out.Actions = append(out.Actions, a)
			}
		}
	}
	if _, readOnly := QueryAccess(grants, target, login); readOnly {
		out.Actions = append(out.Actions, ActionReadOnly)
	}
	return out
}

// Claims are the claims of a Vigil token. Tokens of external issuers are
// decoded into the same struct; their grants come from Vigil's stored role
// grants, never from the token.
type Claims struct {
	Issuer    string      `json:"iss"`
	Subject   string      `json:"sub"`
	Audience  Audience    `json:"aud"`
	ExpiresAt NumericDate `json:"exp"`
	IssuedAt  NumericDate `json:"iat"`
	NotBefore NumericDate `json:"nbf,omitzero"`
	ID        string      `json:"jti"`
	Grants    []Grant     `json:"grants,omitempty"`
	// Src lists the source networks (CIDR) the token may be used from;
	// empty means anywhere.
	Src []string `json:"src,omitempty"`
	// Roles are Vigil roles; "admin" administers Vigil.
	Roles []string `json:"roles,omitempty"`
	// BreakGlass marks an emergency-access token.
	BreakGlass bool `json:"bg,omitempty"`
}

// HasRole reports whether role is among c.Roles.
func (c *Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// Audience is the "aud" claim: one string or an array of strings.
type Audience []string

// MarshalJSON writes a single audience as a plain string.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or an array of strings, nothing else.
func (a *Audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Audience{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = ss
	return nil
}

// NumericDate is a JWT NumericDate: seconds since the epoch, possibly with
// a fraction. The zero value means absent.
type NumericDate struct{ time.Time }

// NewNumericDate truncates t to whole seconds.
func NewNumericDate(t time.Time) NumericDate { return NumericDate{t.Truncate(time.Second)} }

// MarshalJSON writes whole seconds.
func (d NumericDate) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, d.Unix(), 10), nil
}

// IsZero reports whether the date is absent.
func (d NumericDate) IsZero() bool { return d.Time.IsZero() }

// UnmarshalJSON accepts a JSON number only (no strings, no exponents that
// overflow, no negative or non-finite values).
func (d *NumericDate) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errors.New("date claim must be a number")
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return fmt.Errorf("date claim %s out of range", b)
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

// parseSources parses CIDR strings.
func parseSources(src []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(src))
	for _, s := range src {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("src %q is not a CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// sourceAllowed reports whether addr lies in one of src (empty: anywhere).
func sourceAllowed(src []netip.Prefix, addr netip.Addr) bool {
	if len(src) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range src {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
