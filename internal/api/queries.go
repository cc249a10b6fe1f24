package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/querylog"
)

// QueryPage is the body of GET /api/v1/queries: a page of the statement
// log, and the cursor that continues it (after=NEXT, with the same
// filters), absent on the last page.
type QueryPage struct {
	Queries []querylog.Stored `json:"queries"`
	Next    int64             `json:"next,omitempty"`
}

// queryLogQuery reads the statement log filters: session, user, target,
// source, since, until (durations back from now, days or RFC 3339), q
// (full text), outcome, after (cursor), desc (true|false) and limit.
func (s *Server) queryLogQuery(q url.Values) (querylog.Query, error) {
	qq := querylog.Query{Session: q.Get("session"), User: q.Get("user"), Target: q.Get("target"), Source: q.Get("source"),
		Text: q.Get("q"), Outcome: q.Get("outcome")}
	now := s.Now()
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &qq.Since}, {"until", &qq.Until}} {
		if v := q.Get(f.name); v != "" {
			t, err := parseSince(v, now)
			if err != nil {
				return qq, fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = t
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return qq, errors.New("after must be a statement id (a non-negative integer), the next of the previous page")
		}
		qq.After = n
	}
	if v := q.Get("desc"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return qq, errors.New("desc must be true or false")
		}
		qq.Desc = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > querylog.MaxLimit {
			return qq, fmt.Errorf("limit must be 1..%d", querylog.MaxLimit)
		}
		qq.Limit = n
	}
	return qq, nil
}

// searchQueries answers GET /api/v1/queries with a QueryPage: the SQL
// statements database sessions sent, oldest first (newest with
// desc=true). Like audit searches, each search is itself audited
// (queries.search) before it runs.
func (s *Server) searchQueries(w http.ResponseWriter, r *http.Request) {
	if s.Queries == nil {
		writeError(w, http.StatusNotFound, "not_configured", "this server keeps no statement log")
		return
	}
	qq, err := s.queryLogQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !s.recordEvent(w, r, audit.Event{Type: "queries.search", Target: qq.Target, Session: qq.Session,
		Data: map[string]any{"query": r.URL.RawQuery}}) {
		return
	}
	res, err := s.Queries.Search(r.Context(), qq)
	if errors.Is(err, querylog.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		s.Log.Error("query log search", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "statement log search failed")
		return
	}
	page := QueryPage{Queries: res.Entries, Next: res.Next}
	if page.Queries == nil {
		page.Queries = []querylog.Stored{}
	}
	writeJSON(w, http.StatusOK, page)
}
