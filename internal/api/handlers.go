package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
)

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	b, err := s.Keyring.JWKS()
	if err != nil {
		s.Log.Error("jwks", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "cannot build the key set")
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(b)
}

// WhoAmI is the body of GET /api/v1/whoami.
type WhoAmI struct {
	Claims   token.Claims `json:"claims"`
	Roles    []string     `json:"roles,omitempty"`
	Admin    bool         `json:"admin"`
	External bool         `json:"external"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	id := identity(r)
	writeJSON(w, http.StatusOK, WhoAmI{Claims: id.Claims, Roles: id.Roles, Admin: id.Admin, External: id.External})
}

// IssueRequest is the body of POST /api/v1/tokens.
type IssueRequest struct {
	Subject string        `json:"sub"`
	Grants  []token.Grant `json:"grants,omitempty"`
	Src     []string      `json:"src,omitempty"`
	Roles   []string      `json:"roles,omitempty"`
	// TTL is a Go duration ("15m"); empty for the default.
	TTL string `json:"ttl,omitempty"`
}

// IssueResponse is the answer to POST /api/v1/tokens.
type IssueResponse struct {
	Token     string       `json:"token"`
	JTI       string       `json:"jti"`
	ExpiresAt time.Time    `json:"expires_at"`
	Claims    token.Claims `json:"claims"`
}

func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	var in IssueRequest
	if !decode(w, r, &in) {
		return
	}
	req := token.Request{Subject: in.Subject, Grants: in.Grants, Src: in.Src, Roles: in.Roles}
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "ttl must be a positive duration such as 15m")
			return
		}
		req.TTL = d
	}
	caller := identity(r)
	if caller.Claims.BreakGlass {
		// A break-glass token is the emergency itself: it may not mint
		// ordinary tokens that would outlive its revocation unflagged.
		if !s.record(w, r, "token.issue_denied", "", map[string]any{"reason": "break-glass tokens cannot issue tokens", "jti": caller.Claims.ID}) {
			return
		}
		writeError(w, http.StatusForbidden, "forbidden", "a break-glass token cannot issue tokens")
		return
	}
	var stored []policy.Grant
	if !caller.Admin {
		var err error
		if stored, err = s.Grants.ForIdentity(r.Context(), caller.Claims.Subject, caller.Roles); err != nil {
			s.Log.Error("load grants", "err", err)
			writeError(w, http.StatusServiceUnavailable, "unavailable", "grants unavailable")
			return
		}
	}
	req, err := policy.AuthorizeIssue(caller, req, stored, s.Now(), s.Signer.MaxTTL())
	if err != nil {
		if !s.record(w, r, "token.issue_denied", req.Subject, map[string]any{"reason": err.Error()}) {
			return
		}
		var denied *policy.DeniedError
		if errors.As(err, &denied) {
			writeError(w, http.StatusForbidden, "forbidden", err.Error())
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		}
		return
	}
	raw, claims, err := s.Signer.Issue(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !s.record(w, r, "token.issue", claims.Subject, map[string]any{
		"jti": claims.ID, "sub": claims.Subject, "grants": claims.Grants, "roles": claims.Roles,
		"src": claims.Src, "exp": claims.ExpiresAt.Unix(), "ttl": req.TTL.String(),
	}) {
		return
	}
	writeJSON(w, http.StatusCreated, IssueResponse{Token: raw, JTI: claims.ID, ExpiresAt: claims.ExpiresAt.Time, Claims: *claims})
}

// RevokeRequest is the body of POST /api/v1/tokens/revoke.
type RevokeRequest struct {
	JTI string `json:"jti"`
	// Issuer defaults to Vigil's own.
	Issuer string `json:"issuer,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	var in RevokeRequest
	if !decode(w, r, &in) {
		return
	}
	if in.JTI == "" || len(in.JTI) > 256 {
		writeError(w, http.StatusBadRequest, "bad_request", "jti is required (at most 256 bytes)")
		return
	}
	if in.Issuer == "" {
		in.Issuer = s.Issuer
	}
	// Keep the entry until every token that can carry this jti has
	// expired: Vigil's own live at most max_ttl from now; external ones
	// at most a day (the external lifetime cap).
	keep := s.Signer.MaxTTL()
	if in.Issuer != s.Issuer {
		keep = token.DefaultExternalLifetime
	}
	now := s.Now()
	rev := token.Revocation{Issuer: in.Issuer, JTI: in.JTI, RevokedAt: now, ExpiresAt: now.Add(keep + token.Leeway),
		RevokedBy: identity(r).Claims.Subject, Reason: in.Reason}
	if err := s.Revocations.Revoke(r.Context(), rev); err != nil {
		s.Log.Error("revoke", "jti", in.JTI, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "revocation could not be stored")
		return
	}
	if !s.record(w, r, "token.revoke", "", map[string]any{"jti": in.JTI, "iss": in.Issuer, "reason": in.Reason}) {
		return
	}
	// Live sessions opened with the token end now.
	if s.Live != nil {
		reason := "the token was revoked"
		if in.Reason != "" {
			reason += ": " + in.Reason
		}
		s.Live.EndMatching(func(l *session.Live) bool { return l.Issuer == in.Issuer && l.Info.JTI == in.JTI }, rev.RevokedBy, reason)
	}
	writeJSON(w, http.StatusOK, rev)
}

// VerifyRequest is the body of POST /api/v1/tokens/verify.
type VerifyRequest struct {
	Token string `json:"token"`
}

// VerifyResponse is the answer to POST /api/v1/tokens/verify. Only admins
// may ask, so the reason of a failure is given.
type VerifyResponse struct {
	Valid  bool          `json:"valid"`
	Reason string        `json:"reason"`
	Detail string        `json:"detail,omitempty"`
	Claims *token.Claims `json:"claims,omitempty"`
	Roles  []string      `json:"roles,omitempty"`
	Admin  bool          `json:"admin,omitempty"`
}

func (s *Server) verifyToken(w http.ResponseWriter, r *http.Request) {
	var in VerifyRequest
	if !decode(w, r, &in) {
		return
	}
	// Judged as if presented from the caller's address: a token bound to
	// other networks reports source_not_allowed.
	id, err := s.Verifier.Verify(r.Context(), in.Token, sourceAddr(r))
	if err != nil {
		var ve *token.VerifyError
		if !errors.As(err, &ve) {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "service unavailable")
			return
		}
		writeJSON(w, http.StatusOK, VerifyResponse{Reason: string(ve.Reason), Detail: ve.Detail})
		return
	}
	writeJSON(w, http.StatusOK, VerifyResponse{Valid: true, Reason: string(token.ReasonOK), Claims: &id.Claims, Roles: id.Roles, Admin: id.Admin})
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.Keyring.List()})
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	info, err := s.Keyring.Rotate(r.Context())
	if err != nil {
		s.Log.Error("rotate", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "key rotation failed")
		return
	}
	if !s.record(w, r, "key.rotate", info.KID, map[string]any{"kid": info.KID, "alg": info.Alg}) {
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// GrantRequest is the body of POST /api/v1/grants.
type GrantRequest struct {
	User    string   `json:"user,omitempty"`
	Role    string   `json:"role,omitempty"`
	Target  string   `json:"target"`
	Login   string   `json:"login"`
	Actions []string `json:"actions"`
	MaxTTL  string   `json:"max_ttl,omitempty"`
	Window  string   `json:"window,omitempty"`
	From    []string `json:"from,omitempty"`
}

func (s *Server) addGrant(w http.ResponseWriter, r *http.Request) {
	var in GrantRequest
	if !decode(w, r, &in) {
		return
	}
	g := policy.Grant{Subject: in.User, Role: in.Role, Target: in.Target, Login: in.Login, Actions: in.Actions,
		Window: in.Window, From: in.From, CreatedBy: identity(r).Claims.Subject}
	if in.MaxTTL != "" {
		d, err := time.ParseDuration(in.MaxTTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "max_ttl must be a positive duration such as 8h")
			return
		}
		g.MaxTTL = d
	}
	if err := g.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	added, err := s.Grants.Add(r.Context(), g)
	if err != nil {
		s.Log.Error("add grant", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "grant could not be stored")
		return
	}
	if !s.record(w, r, "grant.add", added.Target, map[string]any{"grant": added}) {
		return
	}
	writeJSON(w, http.StatusCreated, added)
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) {
	gs, err := s.Grants.List(r.Context(), r.URL.Query().Get("user"), r.URL.Query().Get("role"))
	if err != nil {
		s.Log.Error("list grants", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "grants unavailable")
		return
	}
	if gs == nil {
		gs = []policy.Grant{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"grants": gs})
}

func (s *Server) removeGrant(w http.ResponseWriter, r *http.Request) {
	g, err := s.Grants.Remove(r.Context(), r.PathValue("id"))
	if errors.Is(err, policy.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such grant")
		return
	}
	if err != nil {
		s.Log.Error("remove grant", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "grant could not be removed")
		return
	}
	if !s.record(w, r, "grant.remove", g.Target, map[string]any{"grant": g}) {
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// parseSince accepts an RFC 3339 time, a duration back from now ("24h")
// or a number of days back from now ("7d").
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && days <= 100000 {
			return now.AddDate(0, 0, -days), nil
		}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q must be a duration (24h), a number of days (7d) or an RFC 3339 time", v)
	}
	return t, nil
}
