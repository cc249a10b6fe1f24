package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/siem"
)

// auditQuery reads the search filters shared by search and export:
// actor, target, type, session, source, since, until, q, after, before,
// order (asc|desc) and limit.
func (s *Server) auditQuery(q url.Values) (audit.Query, error) {
	aq := audit.Query{Type: q.Get("type"), Actor: q.Get("actor"), Target: q.Get("target"),
		Session: q.Get("session"), Source: q.Get("source"), Text: q.Get("q")}
	now := s.Now()
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(f.name); v != "" {
			t, err := parseSince(v, now)
			if err != nil {
				return aq, fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = t
		}
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"after", &aq.After}, {"before", &aq.Before}} {
		if v := q.Get(f.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return aq, fmt.Errorf("%s must be an event seq (a non-negative integer)", f.name)
			}
			*f.dst = n
		}
	}
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		aq.Desc = true
	default:
		return aq, errors.New("order must be asc or desc")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return aq, fmt.Errorf("limit must be 1..%d", audit.MaxLimit)
		}
		aq.Limit = n
	}
	return aq, nil
}

// searchAudit answers GET /api/v1/audit: {"events": [...], "next": SEQ}
// where next, present when the page is full, continues the search
// (after=SEQ, or before=SEQ with order=desc).
func (s *Server) searchAudit(w http.ResponseWriter, r *http.Request) {
	aq, err := s.auditQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// Reading the audit trail is itself audited (PCI DSS 10.2.1.3).
	if !s.record(w, r, "audit.search", aq.Target, map[string]any{"query": r.URL.RawQuery}) {
		return
	}
	evs, err := s.Audit.Search(r.Context(), aq)
	if errors.Is(err, audit.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		s.Log.Error("audit search", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "audit search failed")
		return
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	resp := map[string]any{"events": evs}
	limit := aq.Limit
	if limit == 0 {
		limit = audit.DefaultLimit
	}
	if len(evs) == limit {
		resp["next"] = evs[len(evs)-1].Seq
	}
	writeJSON(w, http.StatusOK, resp)
}

// verifyAudit answers GET /api/v1/audit/verify with the verification
// report (200 whether or not the log is intact: "ok" says which). The run
// and its outcome are audited.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := s.Audit.Verify(r.Context(), audit.VerifyOptions{RecordingsDir: s.RecordingsDir, Now: s.Now, Keys: s.AuditKeys})
	if err != nil {
		s.Log.Error("audit verify", "err", err)
		if r.Context().Err() != nil {
			return // the client went away: nothing was verified
		}
		if !s.record(w, r, "audit.verify", "", map[string]any{"ok": false, "error": err.Error()}) {
			return
		}
		writeError(w, http.StatusServiceUnavailable, "unavailable", "audit verification could not run: "+err.Error())
		return
	}
	data := map[string]any{"ok": rep.OK, "events": rep.Events, "last_seq": rep.LastSeq, "problems": rep.ProblemCount,
		"recordings": rep.Recordings}
	if rep.First != nil {
		data["first_problem"] = rep.First.Message
	}
	if !s.record(w, r, "audit.verify", "", data) {
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// archiveAudit answers POST /api/v1/audit/archive {"before": "365d",
// "through": SEQ}: events older than before (and at most through) move to
// a sealed archive file and are pruned from the database.
func (s *Server) archiveAudit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Before  string `json:"before"`
		Through int64  `json:"through"`
		Force   bool   `json:"force"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Before == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `before is required ("365d", "8760h" or an RFC 3339 time)`)
		return
	}
	before, err := parseSince(req.Before, s.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "before: "+err.Error())
		return
	}
	if req.Through < 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "through must be an event seq")
		return
	}
	if s.ArchiveDir == "" {
		writeError(w, http.StatusConflict, "not_configured", "this server has no archive directory")
		return
	}
	a, err := s.Audit.Archive(r.Context(), s.ArchiveDir, before, req.Through, identity(r).Claims.Subject, req.Force)
	if errors.Is(err, audit.ErrBehindForwarder) {
		writeError(w, http.StatusConflict, "behind_forwarder", err.Error())
		return
	}
	if errors.Is(err, audit.ErrNothingToArchive) {
		writeError(w, http.StatusConflict, "nothing_to_archive", "no events older than "+before.UTC().Format(time.RFC3339)+" are left to archive")
		return
	}
	if err != nil {
		s.Log.Error("audit archive", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// listArchives answers GET /api/v1/audit/archives.
func (s *Server) listArchives(w http.ResponseWriter, r *http.Request) {
	as, err := s.Audit.Archives(r.Context())
	if err != nil {
		s.Log.Error("list archives", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "archives cannot be listed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"archives": as})
}

// exportAudit answers GET /api/v1/audit/export?format=jsonl|cef with the
// events the search filters select (all of them by default), oldest
// first, streamed page by page. An empty selection is a 200 with an empty
// body and X-Vigil-Events: 0. The export is audited before it starts.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = siem.FormatJSONL
	}
	enc, err := siem.Format(format)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	aq, err := s.auditQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if aq.Desc || aq.Limit != 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "export takes no order or limit: it streams every selected event, oldest first")
		return
	}
	aq.Limit = audit.MaxLimit
	page, err := s.Audit.Search(r.Context(), aq)
	if errors.Is(err, audit.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		s.Log.Error("audit export", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "audit export failed")
		return
	}
	if !s.record(w, r, "audit.export", aq.Target, map[string]any{"format": format, "query": r.URL.RawQuery}) {
		return
	}
	if format == siem.FormatCEF {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/jsonl")
	}
	if len(page) == 0 {
		w.Header().Set("X-Vigil-Events", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="vigil-audit.%s"`, format))
	for len(page) > 0 {
		for _, ev := range page {
			if _, err := w.Write(enc(ev)); err != nil {
				return // the client went away
			}
		}
		if len(page) < audit.MaxLimit {
			return
		}
		aq.After = page[len(page)-1].Seq
		if page, err = s.Audit.Search(r.Context(), aq); err != nil {
			// Headers are sent: cut the stream short; the client sees a
			// truncated chunked body, not a complete export.
			s.Log.Error("audit export", "err", err, "after", aq.After)
			panic(http.ErrAbortHandler)
		}
	}
}

// auditKeys answers GET /api/v1/audit/keys: the audit public keys this
// server trusts for checkpoints, to pin when verifying archives offline.
func (s *Server) auditKeys(w http.ResponseWriter, r *http.Request) {
	type key struct {
		KID       string `json:"kid"`
		Alg       string `json:"alg"`
		PublicKey string `json:"public_key"`
	}
	out := []key{}
	for kid, pub := range s.AuditKeys {
		out = append(out, key{KID: kid, Alg: "Ed25519", PublicKey: base64.StdEncoding.EncodeToString(pub)})
	}
	slices.SortFunc(out, func(a, b key) int { return strings.Compare(a.KID, b.KID) })
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
}
