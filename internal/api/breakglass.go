package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/breakglass"
	"github.com/vigil-pam/vigil/internal/token"
)

// maxBreakGlassBody bounds the body of the unauthenticated exchange: a
// name, two secrets, a target, a reason and a TTL fit in far less.
const maxBreakGlassBody = 8 << 10

// breakGlassRoutes adds the break-glass endpoints to mux, unless
// s.BreakGlass is nil (then they answer 404). The exchange is
// unauthenticated: the secrets are the credential.
func (s *Server) breakGlassRoutes(mux *http.ServeMux) {
	if s.BreakGlass == nil {
		return
	}
	mux.HandleFunc("POST /api/v1/breakglass", s.breakGlassExchange)
	mux.Handle("GET /api/v1/breakglass/accounts", s.admin(s.listBreakGlassAccounts))
	mux.Handle("POST /api/v1/breakglass/accounts", s.admin(s.initBreakGlass))
	mux.Handle("DELETE /api/v1/breakglass/accounts/{name}", s.admin(s.removeBreakGlass))
	mux.Handle("GET /api/v1/breakglass/uses", s.admin(s.listBreakGlassUses))
	mux.Handle("POST /api/v1/breakglass/uses/{jti}/review", s.admin(s.reviewBreakGlass))
}

// BreakGlassRequest is the body of POST /api/v1/breakglass.
type BreakGlassRequest struct {
	// Account is the break-glass account's name.
	Account string `json:"account"`
	// Secrets are its secret, or both under the two-person rule.
	Secrets []string `json:"secrets"`
	// User is who is using it: the token's subject.
	User   string `json:"user"`
	Target string `json:"target"`
	// Reason is mandatory.
	Reason string `json:"reason"`
	// TTL is a Go duration ("30m"); empty for the default (30m, or the
	// account's cap if shorter).
	TTL string `json:"ttl,omitempty"`
}

// BreakGlassResponse is the answer to POST /api/v1/breakglass.
type BreakGlassResponse struct {
	Token     string       `json:"token"`
	JTI       string       `json:"jti"`
	ExpiresAt time.Time    `json:"expires_at"`
	Claims    token.Claims `json:"claims"`
	// Account, Target and Login say what the token is for.
	Account string `json:"account"`
	Target  string `json:"target"`
	Login   string `json:"login"`
}

// breakGlassExchange serves POST /api/v1/breakglass. A wrong secret or an
// unknown account gets one generic answer; the reason is in the audit log.
func (s *Server) breakGlassExchange(w http.ResponseWriter, r *http.Request) {
	var in BreakGlassRequest
	if !decodeLimited(w, r, &in, maxBreakGlassBody) {
		return
	}
	req := breakglass.ExchangeRequest{Account: in.Account, Secrets: in.Secrets, User: in.User, Target: in.Target,
		Reason: in.Reason, Source: sourceAddr(r)}
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "ttl must be a positive duration such as 30m")
			return
		}
		req.TTL = d
	}
	iss, err := s.BreakGlass.Exchange(r.Context(), req)
	if err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, BreakGlassResponse{Token: iss.Token, JTI: iss.Claims.ID, ExpiresAt: iss.Claims.ExpiresAt.Time,
		Claims: *iss.Claims, Account: iss.Use.Account, Target: iss.Use.Target, Login: iss.Use.Login})
}

// breakGlassError answers with err in the JSON error format.
func (s *Server) breakGlassError(w http.ResponseWriter, err error) {
	var invalid *breakglass.InvalidError
	var locked *breakglass.LockedError
	var limited *breakglass.RateLimitedError
	msg := strings.TrimPrefix(err.Error(), "breakglass: ")
	switch {
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, "bad_request", msg)
	case errors.Is(err, breakglass.ErrDenied):
		writeError(w, http.StatusUnauthorized, "denied", "break-glass access denied")
	case errors.As(err, &locked):
		w.Header().Set("Retry-After", strconv.Itoa(max(int(locked.Until.Sub(s.Now()).Seconds()), 1)))
		writeError(w, http.StatusTooManyRequests, "locked", msg)
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(max(int(limited.RetryAfter.Seconds()), 1)))
		writeError(w, http.StatusTooManyRequests, "rate_limited", msg)
	case errors.Is(err, breakglass.ErrReplayed):
		writeError(w, http.StatusConflict, "replayed", msg)
	case errors.Is(err, breakglass.ErrTwoPerson):
		writeError(w, http.StatusUnauthorized, "two_person", msg)
	case errors.Is(err, breakglass.ErrNotFound), errors.Is(err, breakglass.ErrUseNotFound):
		writeError(w, http.StatusNotFound, "not_found", msg)
	case errors.Is(err, breakglass.ErrExists):
		writeError(w, http.StatusConflict, "exists", msg)
	case errors.Is(err, breakglass.ErrSelfReview):
		writeError(w, http.StatusForbidden, "forbidden", msg)
	case errors.Is(err, breakglass.ErrReviewed):
		writeError(w, http.StatusConflict, "already_reviewed", msg)
	default:
		s.Log.Error("break-glass", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "break-glass is unavailable; nothing was granted or changed")
	}
}

// BreakGlassInitRequest is the body of POST /api/v1/breakglass/accounts.
type BreakGlassInitRequest struct {
	Name    string   `json:"name"`
	Targets []string `json:"targets,omitempty"`
	// MaxTTL is a Go duration ("1h"); empty for 1h (new) or unchanged
	// (re-arm).
	MaxTTL    string `json:"max_ttl,omitempty"`
	TwoPerson bool   `json:"two_person,omitempty"`
	// Rearm gives an existing account new secrets.
	Rearm bool `json:"rearm,omitempty"`
}

func (s *Server) initBreakGlass(w http.ResponseWriter, r *http.Request) {
	var in BreakGlassInitRequest
	if !decode(w, r, &in) {
		return
	}
	req := breakglass.InitRequest{Name: in.Name, Targets: in.Targets, TwoPerson: in.TwoPerson, Rearm: in.Rearm,
		By: identity(r).Claims.Subject, Source: sourceAddr(r).String()}
	if in.MaxTTL != "" {
		d, err := time.ParseDuration(in.MaxTTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "max_ttl must be a positive duration such as 1h")
			return
		}
		req.MaxTTL = d
	}
	armed, err := s.BreakGlass.Init(r.Context(), req)
	if err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, armed)
}

func (s *Server) listBreakGlassAccounts(w http.ResponseWriter, r *http.Request) {
	as, err := s.BreakGlass.Accounts(r.Context())
	if err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": as})
}

func (s *Server) removeBreakGlass(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.BreakGlass.Remove(r.Context(), name, identity(r).Claims.Subject, sourceAddr(r).String()); err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
}

// listBreakGlassUses serves GET /api/v1/breakglass/uses?unreviewed=&account=.
func (s *Server) listBreakGlassUses(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := breakglass.UseFilter{Account: q.Get("account")}
	if v := q.Get("unreviewed"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "unreviewed: want true or false")
			return
		}
		f.Unreviewed = b
	}
	uses, err := s.BreakGlass.Uses(r.Context(), f)
	if err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"uses": uses})
}

// BreakGlassReviewRequest is the body of
// POST /api/v1/breakglass/uses/{jti}/review.
type BreakGlassReviewRequest struct {
	Note string `json:"note"`
}

// reviewBreakGlass records the post-incident review of a use, by an admin
// other than the use's user.
func (s *Server) reviewBreakGlass(w http.ResponseWriter, r *http.Request) {
	var in BreakGlassReviewRequest
	if !decode(w, r, &in) {
		return
	}
	u, err := s.BreakGlass.Review(r.Context(), r.PathValue("jti"), identity(r).Claims.Subject, in.Note, sourceAddr(r).String())
	if err != nil {
		s.breakGlassError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// decodeLimited is decode with a smaller body limit.
func decodeLimited(w http.ResponseWriter, r *http.Request, dst any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		}
		return false
	}
	return true
}
