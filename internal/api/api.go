// Package api owns Vigil's HTTP API: routing, bearer-token
// authentication, the JSON error format, and the handlers that turn
// requests into calls on the token, policy and audit packages. It makes no
// decision of its own about who may do what beyond "admin only": those
// live in package policy.
package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/breakglass"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/querylog"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/report"
	"github.com/vigil-pam/vigil/internal/retention"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// maxBody bounds a request body; API requests are small.
const maxBody = 64 << 10

// Server is the HTTP API. All fields are required.
type Server struct {
	Verifier    *token.Verifier
	Signer      *token.Signer
	Keyring     *token.Keyring
	Revocations *token.Revocations
	Grants      *policy.Grants
	Vault       *vault.Vault
	Sessions    *session.Store
	Locks       *policy.Locks
	// Live is the registry of live sessions (watch, pause, terminate;
	// locks and revocation end matching ones).
	Live  *session.Registry
	Audit *audit.Log
	// RecordingKeys decrypt recordings for download; where they cannot
	// (recordings encrypted to auditors only) downloads answer 409.
	RecordingKeys *recording.Keys
	// RecordingsDir is where audit verification re-hashes sealed
	// recordings; empty skips them.
	RecordingsDir string
	// ArchiveDir is where audit archives are written.
	ArchiveDir string
	// AuditKeys are the audit public keys trusted to sign checkpoints
	// (audit.TrustedKeys); verification checks against these only.
	AuditKeys map[string]ed25519.PublicKey
	// Retention is the recording retention sweeper and its legal holds.
	Retention *retention.Sweeper
	// Reports runs compliance reports (GET /api/v1/reports/{kind}).
	Reports *report.Reporter
	// Queries is the statement log of database sessions (GET
	// /api/v1/queries); nil answers that endpoint with 404.
	Queries *querylog.Writer
	// Alerts is the alert store (rule hits, monitor findings).
	Alerts *alert.Store
	// BreakGlass is emergency access (POST /api/v1/breakglass, accounts,
	// uses and their review); nil leaves those endpoints out (tests).
	BreakGlass *breakglass.Service
	// Rules is the rules engine; DefaultRulePacks apply to targets that
	// enable none of their own.
	Rules            *rules.Engine
	DefaultRulePacks []string
	// Issuer is Vigil's own "iss", the default issuer of revocations.
	Issuer string
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	Now      func() time.Time
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)

	mux.Handle("GET /api/v1/whoami", s.authed(s.whoami))
	mux.Handle("POST /api/v1/tokens", s.authed(s.issueToken))
	mux.Handle("POST /api/v1/tokens/revoke", s.admin(s.revokeToken))
	mux.Handle("POST /api/v1/tokens/verify", s.admin(s.verifyToken))
	mux.Handle("GET /api/v1/keys", s.admin(s.listKeys))
	mux.Handle("POST /api/v1/keys/rotate", s.admin(s.rotateKey))
	mux.Handle("GET /api/v1/grants", s.admin(s.listGrants))
	mux.Handle("POST /api/v1/grants", s.admin(s.addGrant))
	mux.Handle("DELETE /api/v1/grants/{id}", s.admin(s.removeGrant))
	mux.Handle("GET /api/v1/audit", s.admin(s.searchAudit))
	mux.Handle("GET /api/v1/audit/verify", s.admin(s.verifyAudit))
	mux.Handle("GET /api/v1/audit/export", s.admin(s.exportAudit))
	mux.Handle("POST /api/v1/audit/archive", s.admin(s.archiveAudit))
	mux.Handle("GET /api/v1/audit/archives", s.admin(s.listArchives))
	mux.Handle("GET /api/v1/audit/keys", s.admin(s.auditKeys))
	mux.Handle("GET /api/v1/targets", s.admin(s.listTargets))
	mux.Handle("POST /api/v1/targets", s.admin(s.addTarget))
	mux.Handle("DELETE /api/v1/targets/{name}", s.admin(s.removeTarget))
	mux.Handle("GET /api/v1/locks", s.admin(s.listLocks))
	mux.Handle("POST /api/v1/locks", s.admin(s.addLock))
	mux.Handle("DELETE /api/v1/locks/{id}", s.admin(s.removeLock))
	mux.Handle("GET /api/v1/sessions", s.admin(s.listSessions))
	mux.Handle("GET /api/v1/sessions/{id}", s.admin(s.getSession))
	mux.Handle("GET /api/v1/sessions/{id}/recording", s.admin(s.sessionRecording))
	mux.Handle("GET /api/v1/sessions/{id}/live", s.admin(s.watchSession))
	mux.Handle("GET /api/v1/queries", s.admin(s.searchQueries))
	mux.Handle("GET /api/v1/alerts", s.admin(s.listAlerts))
	mux.Handle("POST /api/v1/alerts/{id}/ack", s.admin(s.ackAlert))
	mux.Handle("GET /api/v1/rules", s.admin(s.listRules))
	mux.Handle("POST /api/v1/rules/test", s.admin(s.testRules))
	mux.Handle("PUT /api/v1/targets/{name}/rules", s.admin(s.setTargetRules))
	mux.Handle("POST /api/v1/sessions/{id}/pause", s.admin(s.pauseSession))
	mux.Handle("POST /api/v1/sessions/{id}/resume", s.admin(s.resumeSession))
	mux.Handle("POST /api/v1/sessions/{id}/terminate", s.admin(s.terminateSession))
	mux.Handle("GET /api/v1/reports/{kind}", s.admin(s.report))
	mux.Handle("GET /api/v1/holds", s.admin(s.listHolds))
	mux.Handle("POST /api/v1/holds", s.admin(s.addHold))
	mux.Handle("DELETE /api/v1/holds/{id}", s.admin(s.releaseHold))
	mux.Handle("POST /api/v1/retention/sweep", s.admin(s.sweepRetention))
	s.breakGlassRoutes(mux)
	return jsonFallback(mux)
}

// jsonFallback serves mux, answering requests no route takes (404, or 405
// with Allow for a known path and another method) in the JSON error format.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
}

// statusRecorder captures the status and headers a handler would send.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.status = code }

// APIError is the body of every error response:
// {"error":{"code":"…","message":"…"}}.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]APIError{"error": {Code: code, Message: msg}})
}

// decode reads a JSON body strictly: bounded, unknown fields refused.
func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		}
		return false
	}
	return true
}

type ctxKey struct{}

// identity returns the verified caller of an authed handler.
func identity(r *http.Request) *token.Identity {
	id, _ := r.Context().Value(ctxKey{}).(*token.Identity)
	return id
}

func sourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// authed verifies the bearer token. Whatever is wrong with it, the client
// learns only that it is not authenticated; the reason is in the audit log.
func (s *Server) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		id, err := s.Verifier.Verify(r.Context(), raw, sourceAddr(r))
		if err != nil {
			var ve *token.VerifyError
			if !errors.As(err, &ve) {
				s.Log.Error("verification could not be recorded; denying", "err", err)
				writeError(w, http.StatusServiceUnavailable, "unavailable", "service unavailable")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "authentication required")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// admin is authed plus the admin role.
func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return s.authed(func(w http.ResponseWriter, r *http.Request) {
		if !identity(r).Admin {
			writeError(w, http.StatusForbidden, "forbidden", "admin role required")
			return
		}
		h(w, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	raw = strings.TrimSpace(raw)
	return raw, raw != ""
}

// record appends an audit event for an API action; a failure to record
// fails the request (the action has not been confirmed to the caller).
func (s *Server) record(w http.ResponseWriter, r *http.Request, typ, target string, data map[string]any) bool {
	return s.recordEvent(w, r, audit.Event{Type: typ, Target: target, Data: data})
}

// recordEvent is record for an event that names more (a session); the
// actor and source are the caller's.
func (s *Server) recordEvent(w http.ResponseWriter, r *http.Request, ev audit.Event) bool {
	typ := ev.Type
	ev.Actor, ev.Source = identity(r).Claims.Subject, sourceAddr(r).String()
	if err := s.Audit.Append(r.Context(), ev); err != nil {
		s.Log.Error("audit append failed", "type", typ, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "audit log unavailable; action not confirmed")
		return false
	}
	return true
}
