// Package policy owns Vigil's authorisation decisions and the stored
// grants they rest on: which user or role may reach which target as which
// login for which actions, for how long, when (time windows) and from
// where (source networks); and who may have which token issued. It does
// not verify tokens (package token) nor enforce decisions on a live
// connection (the gateways).
package policy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
)

// Grant is a stored permission for a user (Subject) or a role.
type Grant struct {
	ID      string   `json:"id"`
	Subject string   `json:"user,omitempty"`
	Role    string   `json:"role,omitempty"`
	Target  string   `json:"target"`
	Login   string   `json:"login"`
	Actions []string `json:"actions"`
	// MaxTTL caps tokens carrying this grant; 0 means the global maximum.
	MaxTTL time.Duration `json:"max_ttl,omitempty"`
	// Window restricts when the grant may be used; empty means always.
	Window string `json:"window,omitempty"`
	// From lists source networks (CIDR); empty means anywhere.
	From      []string  `json:"from,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// Validate checks a grant before it is stored.
func (g *Grant) Validate() error {
	if (g.Subject == "") == (g.Role == "") {
		return errors.New("policy: a grant names exactly one of user and role")
	}
	if err := (token.Grant{Target: g.Target, Login: g.Login, Actions: g.Actions}).Validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if g.MaxTTL < 0 {
		return errors.New("policy: max_ttl must not be negative")
	}
	if _, err := ParseWindow(g.Window); err != nil {
		return err
	}
	for _, c := range g.From {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("policy: from %q is not a CIDR", c)
		}
	}
	return nil
}

// OpenAt reports whether the grant's window is open at now and, if so,
// when the opening ends (zero: no window). A grant whose window does not
// parse is never open (stored grants are validated; this is defence).
func (g *Grant) OpenAt(now time.Time) (bool, time.Time) {
	w, err := ParseWindow(g.Window)
	if err != nil {
		return false, time.Time{}
	}
	return w.Open(now)
}

// AllowsSource reports whether addr lies in the grant's source networks
// (no networks: anywhere).
func (g *Grant) AllowsSource(addr netip.Addr) bool {
	if len(g.From) == 0 {
		return true
	}
	for _, c := range g.From {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// Effective returns the grants a verified identity holds now: a Vigil
// token's own, or for a token of an external issuer (which carries none)
// the stored grants of its subject and roles usable from source at now.
// A nil s (no stored grants) leaves the token's own.
func (s *Grants) Effective(ctx context.Context, id *token.Identity, source netip.Addr, now time.Time) ([]token.Grant, error) {
	if !id.External || s == nil {
		return id.Claims.Grants, nil
	}
	stored, err := s.ForIdentity(ctx, id.Claims.Subject, id.Roles)
	if err != nil {
		return nil, err
	}
	return Usable(stored, source, now), nil
}

// Usable returns, as token grants, the stored grants usable at now from
// source: the grants of an identity provider's user, checked at connection.
func Usable(stored []Grant, source netip.Addr, now time.Time) []token.Grant {
	var out []token.Grant
	for i := range stored {
		g := &stored[i]
		if open, _ := g.OpenAt(now); open && g.AllowsSource(source) {
			out = append(out, token.Grant{Target: g.Target, Login: g.Login, Actions: g.Actions})
		}
	}
	return out
}

// Grants is the grant store.
type Grants struct {
	db  *store.DB
	now func() time.Time
}

// NewGrants returns the store over db; now may be nil.
func NewGrants(db *store.DB, now func() time.Time) *Grants {
	if now == nil {
		now = time.Now
	}
	return &Grants{db: db, now: now}
}

// ErrNotFound is returned for an unknown grant ID.
var ErrNotFound = errors.New("policy: no such grant")

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "g_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Add validates and stores g, returning it with its ID and creation time.
func (s *Grants) Add(ctx context.Context, g Grant) (Grant, error) {
	if err := g.Validate(); err != nil {
		return Grant{}, err
	}
	g.ID, g.CreatedAt = newID(), s.now().UTC()
	_, err := s.db.ExecContext(ctx, `INSERT INTO grants
		(id, subject, role, target, login, actions, max_ttl, time_window, source_cidrs, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		g.ID, g.Subject, g.Role, g.Target, g.Login, strings.Join(g.Actions, ","), int64(g.MaxTTL),
		g.Window, strings.Join(g.From, ","), store.Nanos(g.CreatedAt), g.CreatedBy)
	if err != nil {
		return Grant{}, fmt.Errorf("policy: add grant: %w", err)
	}
	return g, nil
}

// Remove deletes the grant with id and returns it.
func (s *Grants) Remove(ctx context.Context, id string) (Grant, error) {
	gs, err := s.query(ctx, `WHERE id = $1`, id)
	if err != nil {
		return Grant{}, err
	}
	if len(gs) == 0 {
		return Grant{}, ErrNotFound
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM grants WHERE id = $1`, id); err != nil {
		return Grant{}, fmt.Errorf("policy: remove grant %s: %w", id, err)
	}
	return gs[0], nil
}

// List returns grants, filtered by user and role when those are not empty.
func (s *Grants) List(ctx context.Context, user, role string) ([]Grant, error) {
	return s.query(ctx, `WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR role = $2)`, user, role)
}

// ForIdentity returns the grants of sub and of any of roles.
func (s *Grants) ForIdentity(ctx context.Context, sub string, roles []string) ([]Grant, error) {
	all, err := s.query(ctx, `WHERE subject = $1 OR role <> ''`, sub)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, g := range all {
		if g.Subject == sub || (g.Role != "" && slices.Contains(roles, g.Role)) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *Grants) query(ctx context.Context, where string, args ...any) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, subject, role, target, login, actions, max_ttl, time_window,
		source_cidrs, created_at, created_by FROM grants `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("policy: list grants: %w", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		var actions, from string
		var maxTTL, created int64
		if err := rows.Scan(&g.ID, &g.Subject, &g.Role, &g.Target, &g.Login, &actions, &maxTTL, &g.Window,
			&from, &created, &g.CreatedBy); err != nil {
			return nil, fmt.Errorf("policy: list grants: %w", err)
		}
		g.Actions = splitList(actions)
		g.From = splitList(from)
		g.MaxTTL = time.Duration(maxTTL)
		g.CreatedAt = store.Time(created)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policy: list grants: %w", err)
	}
	return out, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
