package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/retention"
)

// HoldRequest is the body of POST /api/v1/holds: exactly one of Session,
// Target and User, and a reason.
type HoldRequest struct {
	Session string `json:"session,omitempty"`
	Target  string `json:"target,omitempty"`
	User    string `json:"user,omitempty"`
	Reason  string `json:"reason"`
}

// addHold places a legal hold. The hold is stored before it is audited:
// if the audit log then fails, the caller is told it is not confirmed,
// and the failure errs on the side of keeping recordings.
func (s *Server) addHold(w http.ResponseWriter, r *http.Request) {
	var in HoldRequest
	if !decode(w, r, &in) {
		return
	}
	h, err := s.Retention.Holds().Add(r.Context(), retention.Hold{Session: in.Session, Target: in.Target, Subject: in.User,
		Reason: in.Reason, CreatedBy: identity(r).Claims.Subject})
	if errors.Is(err, retention.ErrInvalidHold) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		s.Log.Error("add hold", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "hold could not be stored")
		return
	}
	if !s.recordEvent(w, r, audit.Event{Type: "hold.add", Target: h.Target, Session: h.Session, Data: map[string]any{"hold": h}}) {
		return
	}
	writeJSON(w, http.StatusCreated, h)
}

// listHolds lists holds in force; ?all=true includes released ones.
func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) {
	all := false
	if v := r.URL.Query().Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "all must be true or false")
			return
		}
		all = b
	}
	hs, err := s.Retention.Holds().List(r.Context(), all)
	if err != nil {
		s.Log.Error("list holds", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "holds unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"holds": hs})
}

// releaseHold releases a legal hold. Unlike placing one, the release is
// audited before it takes effect: a release lets recordings be deleted,
// so it never happens unrecorded (if the store then fails, the log shows
// a release the hold list does not, and the hold still keeps).
func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	holds := s.Retention.Holds()
	h, err := holds.Get(r.Context(), id)
	switch {
	case errors.Is(err, retention.ErrNoHold):
		writeError(w, http.StatusNotFound, "not_found", "no such hold")
		return
	case err != nil:
		s.Log.Error("get hold", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "holds unavailable")
		return
	case !h.Active():
		writeError(w, http.StatusConflict, "released", fmt.Sprintf("hold %s was already released by %s", id, h.ReleasedBy))
		return
	}
	if !s.recordEvent(w, r, audit.Event{Type: "hold.release", Target: h.Target, Session: h.Session, Data: map[string]any{"hold": h}}) {
		return
	}
	h, err = holds.Release(r.Context(), id, identity(r).Claims.Subject)
	switch {
	case errors.Is(err, retention.ErrReleased):
		writeError(w, http.StatusConflict, "released", fmt.Sprintf("hold %s was already released by %s", id, h.ReleasedBy))
		return
	case err != nil:
		s.Log.Error("release hold", "hold", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "hold could not be released; it is still in force")
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// sweepRetention runs a retention sweep now and returns its result. The
// request is audited (retention.sweep) before the sweep starts, so the
// disposals that follow in the log are attributable to the caller.
func (s *Server) sweepRetention(w http.ResponseWriter, r *http.Request) {
	if !s.record(w, r, "retention.sweep", "", map[string]any{"trigger": "api"}) {
		return
	}
	res, err := s.Retention.Sweep(r.Context())
	if err != nil {
		s.Log.Error("retention sweep", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable",
			fmt.Sprintf("sweep stopped after disposing of %d recordings: %v", len(res.Disposed), err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}
