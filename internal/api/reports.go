package api

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/report"
)

// ReportSinceHeader carries the start of a report's period (RFC 3339) on
// GET /api/v1/reports/{kind}, so a client can say what it covers.
const ReportSinceHeader = "Vigil-Report-Since"

// report serves GET /api/v1/reports/{kind}?since=30d&format=json|csv:
// kind is one of report.Kinds; since is a duration back from now (Go
// syntax or Nd days) or an RFC 3339 time, default 30 days; format json
// (an array of objects, the default) or csv (with a header row). Every
// run is audited as report.run before anything is sent: a report that
// cannot be audited is not given out.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	q := r.URL.Query()
	format := q.Get("format")
	switch format {
	case "":
		format = report.FormatJSON
	case report.FormatJSON, report.FormatCSV:
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "format must be json or csv")
		return
	}
	since, err := report.ParseSince(q.Get("since"), s.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), "report: "))
		return
	}
	if s.Reports == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "reports are not available")
		return
	}
	t, err := s.Reports.Run(r.Context(), kind, since)
	if errors.Is(err, report.ErrUnknownKind) {
		writeError(w, http.StatusNotFound, "not_found", strings.TrimPrefix(err.Error(), "report: "))
		return
	}
	if err != nil {
		s.Log.Error("report", "kind", kind, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the report could not be run")
		return
	}
	// Rendered before it is audited, so the event does not claim a
	// report that then failed to render.
	var body bytes.Buffer
	if err := t.Write(&body, format); err != nil {
		s.Log.Error("report render", "kind", kind, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the report could not be rendered")
		return
	}
	if !s.record(w, r, "report.run", "", map[string]any{"kind": kind, "since": since.Format(time.RFC3339Nano),
		"format": format, "rows": len(t.Rows)}) {
		return
	}
	h := w.Header()
	h.Set(ReportSinceHeader, since.Format(time.RFC3339Nano))
	h.Set("Cache-Control", "no-store")
	if format == report.FormatCSV {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="vigil-`+kind+`-`+s.Now().UTC().Format("20060102T150405Z")+`.csv"`)
	} else {
		h.Set("Content-Type", "application/json")
	}
	w.WriteHeader(http.StatusOK)
	body.WriteTo(w)
}
