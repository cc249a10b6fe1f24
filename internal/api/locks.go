package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/session"
)

// LockRequest is the body of POST /api/v1/locks.
type LockRequest struct {
	User   string `json:"user,omitempty"`
	Target string `json:"target,omitempty"`
	Reason string `json:"reason"`
	// TTL is a Go duration; empty means until removed.
	TTL string `json:"ttl,omitempty"`
}

// LockResponse is the answer to POST /api/v1/locks.
type LockResponse struct {
	policy.Lock
	// Ended counts the live sessions the lock ended.
	Ended int `json:"ended_sessions"`
}

func (s *Server) addLock(w http.ResponseWriter, r *http.Request) {
	var in LockRequest
	if !decode(w, r, &in) {
		return
	}
	var ttl time.Duration
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "ttl must be a positive duration such as 1h")
			return
		}
		ttl = d
	}
	actor := identity(r).Claims.Subject
	l, err := s.Locks.Add(r.Context(), policy.Lock{Subject: in.User, Target: in.Target, Reason: in.Reason, CreatedBy: actor}, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !s.record(w, r, "lock.add", l.Target, map[string]any{"lock": l}) {
		return
	}
	// New sessions are refused from now on; live ones that match end.
	ended := 0
	if s.Live != nil {
		ended = s.Live.EndMatching(func(ls *session.Live) bool { return l.Matches(ls.Info.User, ls.Info.Target) }, actor, "locked: "+l.Reason)
	}
	writeJSON(w, http.StatusCreated, LockResponse{Lock: l, Ended: ended})
}

func (s *Server) listLocks(w http.ResponseWriter, r *http.Request) {
	ls, err := s.Locks.Active(r.Context())
	if err != nil {
		s.Log.Error("list locks", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "locks unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"locks": ls})
}

func (s *Server) removeLock(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.Locks.Remove(r.Context(), id)
	if errors.Is(err, policy.ErrNoLock) {
		writeError(w, http.StatusNotFound, "not_found", "no such lock")
		return
	}
	if err != nil {
		s.Log.Error("remove lock", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "lock could not be removed")
		return
	}
	if !s.record(w, r, "lock.remove", "", map[string]any{"id": id}) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}
