package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/vigil-pam/vigil/internal/alert"
)

// AckRequest is the body of POST /api/v1/alerts/{id}/ack (optional).
type AckRequest struct {
	Note string `json:"note,omitempty"`
}

// listAlerts serves GET /api/v1/alerts?since=&severity=&kind=&session=&unacked=&before=&limit=.
// since is a duration back from now (24h) or an RFC 3339 time.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f alert.Filter
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "bad_request", msg) }
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, s.Now())
		if err != nil {
			bad(err.Error())
			return
		}
		f.Since = t
	}
	if v := q.Get("severity"); v != "" {
		sev, err := alert.ParseSeverity(v)
		if err != nil {
			bad(err.Error())
			return
		}
		f.MinSeverity = sev
	}
	f.Kind, f.Session = q.Get("kind"), q.Get("session")
	if v := q.Get("unacked"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("unacked: want true or false")
			return
		}
		f.Unacked = b
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			bad("before: want an alert id")
			return
		}
		f.BeforeID = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			bad("limit: want 0 to 1000")
			return
		}
		f.Limit = n
	}
	as, err := s.Alerts.List(r.Context(), f)
	if err != nil {
		s.Log.Error("list alerts", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "alerts unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": as})
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "no such alert")
		return
	}
	var in AckRequest
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return
	}
	a, err := s.Alerts.Get(r.Context(), id)
	if errors.Is(err, alert.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such alert")
		return
	}
	if err != nil {
		s.Log.Error("get alert", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "alerts unavailable")
		return
	}
	if a.Acked() {
		writeError(w, http.StatusConflict, "already_acked", "the alert was already acknowledged by "+a.AckedBy)
		return
	}
	if a.Rule == "breakglass.use" {
		// Acknowledged only by the post-incident review (by someone
		// other than the user), so an unreviewed use stays visible.
		writeError(w, http.StatusConflict, "needs_review", "a break-glass use is acknowledged by its review: vigil breakglass review JTI --note TEXT")
		return
	}
	if !s.record(w, r, "alert.ack", a.Target, map[string]any{"alert": id, "note": in.Note}) {
		return
	}
	a, err = s.Alerts.Ack(r.Context(), id, identity(r).Claims.Subject, in.Note)
	switch {
	case errors.Is(err, alert.ErrAcked):
		writeError(w, http.StatusConflict, "already_acked", "the alert was already acknowledged by "+a.AckedBy)
	case err != nil:
		s.Log.Error("ack alert", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the alert could not be acknowledged")
	default:
		writeJSON(w, http.StatusOK, a)
	}
}
