package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vigil-pam/vigil/internal/token"
)

// DeniedError is a request the caller is not entitled to. Its message is
// safe to show the caller: it names only what they asked for.
type DeniedError struct{ Reason string }

func (e *DeniedError) Error() string { return "policy: " + e.Reason }

func deny(format string, args ...any) error {
	return &DeniedError{Reason: fmt.Sprintf(format, args...)}
}

// AuthorizeIssue is the one place that decides whether caller may have req
// signed, given the caller's stored grants (of their user and roles) and
// the signer's maximum lifetime. It returns the request to sign, with the
// subject, lifetime and source networks settled.
//
// An admin may have any token issued within maxTTL. Anyone else may only
// have a token issued for themselves, carrying a subset of their stored
// grants — and, when they present a Vigil token rather than an identity
// provider's, a subset of that token's grants too, so a narrow token handed
// to a script cannot mint a broader one — that are open now (time window),
// no longer than the shortest max_ttl among the grants used, ending within
// the current window, never outliving the token they present, and
// restricted to the grants' source networks and their own token's.
//
// Read-only (token.ActionReadOnly) is a restriction, never a permission:
// asking for it needs nothing beyond the query action it qualifies, and a
// requested query grant that only read-only grants cover (every open
// stored grant allowing query on that target as that login carries it, or
// every such grant of the presented Vigil token does) is issued with
// read-only added, so the signed token keeps the restriction. Where an
// unrestricted stored grant covers the query too, it is the grant used
// (its max_ttl, window and source networks apply) and the token is not
// restricted.
func AuthorizeIssue(caller *token.Identity, req token.Request, stored []Grant, now time.Time, maxTTL time.Duration) (token.Request, error) {
	if caller.Admin {
		if req.Subject == "" {
			return req, errors.New("policy: a subject (user) is required")
		}
		return req, nil
	}
	sub := caller.Claims.Subject
	if req.Subject != "" && req.Subject != sub {
		return req, deny("only an admin may issue tokens for another user")
	}
	req.Subject = sub
	if len(req.Roles) > 0 || req.BreakGlass {
		return req, deny("only an admin may issue tokens with roles or break-glass")
	}
	if len(req.Grants) == 0 {
		return req, deny("request at least one grant")
	}

	// The lifetime limit: explicit requests beyond it are refused, the
	// default is shortened to fit.
	limit := maxTTL
	var limitWhy string
	if left := caller.Claims.ExpiresAt.Sub(now); left < limit {
		limit, limitWhy = left, "the presented token expires sooner"
	}
	var from []string
	fromSet := false
	issued := make([]token.Grant, 0, len(req.Grants))
	for _, want := range req.Grants {
		// Validate before the loop below, which skips read-only: a grant of
		// read-only alone would otherwise need no entitlement at all.
		if err := want.Validate(); err != nil {
			return req, fmt.Errorf("policy: requested %w", err)
		}
		readOnly := want.ReadOnly()
		for _, action := range want.Actions {
			if action == token.ActionReadOnly {
				continue // a restriction: there is nothing to be entitled to
			}
			if !caller.External {
				if !carries(caller.Claims.Grants, want.Target, want.Login, action) {
					return req, deny("the presented token does not carry %s on %s as %s; a Vigil token can only be narrowed", action, want.Target, want.Login)
				}
				if action == token.ActionQuery {
					if _, ro := token.QueryAccess(caller.Claims.Grants, want.Target, want.Login); ro {
						readOnly = true
					}
				}
			}
			g, openUntil, why := findGrant(stored, want.Target, want.Login, action, now, !readOnly)
			if g == nil {
				return req, deny("no grant allows %s on %s as %s%s", action, want.Target, want.Login, why)
			}
			if action == token.ActionQuery && slices.Contains(g.Actions, token.ActionReadOnly) {
				readOnly = true
			}
			if g.MaxTTL > 0 && g.MaxTTL < limit {
				limit, limitWhy = g.MaxTTL, fmt.Sprintf("grant %s has max_ttl %s", g.ID, g.MaxTTL)
			}
			if !openUntil.IsZero() && openUntil.Sub(now) < limit {
				limit, limitWhy = openUntil.Sub(now), fmt.Sprintf("grant %s's window closes at %s", g.ID, openUntil.Format(time.RFC3339))
			}
			if !fromSet {
				from, fromSet = g.From, true
			} else if !sameSet(from, g.From) {
				return req, deny("the requested grants have different source networks; request them in separate tokens")
			}
		}
		g := token.Grant{Target: want.Target, Login: want.Login, Actions: slices.Clone(want.Actions)}
		if readOnly && !g.ReadOnly() {
			g.Actions = append(g.Actions, token.ActionReadOnly)
		}
		issued = append(issued, g)
	}
	req.Grants = issued
	switch {
	case req.TTL == 0:
		req.TTL = min(token.DefaultTTL, limit).Truncate(time.Second)
	case req.TTL > limit:
		return req, deny("ttl %s exceeds what is allowed: %s", req.TTL, limitWhy)
	}
	if req.TTL < time.Second {
		return req, deny("no lifetime left: %s", limitWhy)
	}
	src, err := narrowSources(from, req.Src)
	if err != nil {
		return req, err
	}
	if req.Src, err = narrowSources(caller.Claims.Src, src); err != nil {
		return req, err
	}
	return req, nil
}

// carries reports whether grants allow action on target as login.
func carries(grants []token.Grant, target, login, action string) bool {
	for _, g := range grants {
		if g.Allows(target, login, action) {
			return true
		}
	}
	return false
}

// findGrant returns a stored grant allowing action on target as login that
// is open at now, with the end of its current window (zero: no window).
// For the query action with unrestricted set, an open grant without
// read-only is preferred and a read-only one returned only when there is
// no other: the caller must then carry read-only onto the issued grant.
// Either way the grant returned is the one that entitles, whose limits
// apply. When none is found, why explains a near miss.
func findGrant(stored []Grant, target, login, action string, now time.Time, unrestricted bool) (*Grant, time.Time, string) {
	why := ""
	var restricted *Grant
	var restrictedUntil time.Time
	for i := range stored {
		g := &stored[i]
		tg := token.Grant{Target: g.Target, Login: g.Login, Actions: g.Actions}
		if !tg.Allows(target, login, action) {
			continue
		}
		open, until := g.OpenAt(now)
		if !open {
			why = " at this time (window " + g.Window + ")"
			continue
		}
		if unrestricted && action == token.ActionQuery && tg.ReadOnly() {
			if restricted == nil {
				restricted, restrictedUntil = g, until
			}
			continue
		}
		return g, until, ""
	}
	if restricted != nil {
		return restricted, restrictedUntil, ""
	}
	return nil, time.Time{}, why
}

// narrowSources returns requested when it lies within allowed (empty
// allowed: anything), allowed when nothing is requested.
func narrowSources(allowed, requested []string) ([]string, error) {
	if len(allowed) == 0 {
		return requested, nil
	}
	if len(requested) == 0 {
		return allowed, nil
	}
	for _, r := range requested {
		rp, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, deny("src %q is not a CIDR", r)
		}
		inside := false
		for _, a := range allowed {
			ap, err := netip.ParsePrefix(a)
			if err == nil && ap.Bits() <= rp.Bits() && ap.Contains(rp.Addr()) {
				inside = true
				break
			}
		}
		if !inside {
			return nil, deny("src %s is outside the allowed networks %v", r, allowed)
		}
	}
	return requested, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
