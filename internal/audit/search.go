package audit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-pam/vigil/internal/store"
)

// Limits of search.
const (
	// DefaultLimit is the page size when Query.Limit is zero.
	DefaultLimit = 1000
	// MaxLimit caps Query.Limit.
	MaxLimit = 10000
	// maxTextTerms bounds the words of a full-text query.
	maxTextTerms = 16
	// maxIndexedText bounds what one event contributes to the full-text
	// index (a huge pasted command is indexed by its start).
	maxIndexedText = 8 << 10
)

// ErrBadQuery wraps every error caused by the query itself (as opposed to
// the store), so the API can answer 400.
var ErrBadQuery = errors.New("audit: bad query")

// Query selects events; zero fields do not filter.
type Query struct {
	// Type matches exactly, or as a prefix when it ends in ".*"
	// ("session.*").
	Type    string
	Actor   string
	Target  string
	Session string
	// Source matches the source address exactly, or its host part (an
	// address without a port matches every port).
	Source string
	// Since and Until bound the event time: Since ≤ time < Until.
	Since, Until time.Time
	// Text is a full-text query over the recorded commands, SQL
	// statements, paths, reasons and other text of events: words (all
	// must occur, any order) and "quoted phrases"; a word ending in *
	// matches as a prefix. Case and punctuation are ignored.
	Text string
	// After and Before page by seq (exclusive bounds).
	After, Before int64
	// Desc returns newest first.
	Desc bool
	// Limit caps the result; 0 means DefaultLimit, at most MaxLimit.
	Limit int
}

// searchText is the full-text of an event: its data's string values (in
// key order, nested values included), capped at maxIndexedText.
func searchText(d map[string]any) string {
	if len(d) == 0 {
		return ""
	}
	var b strings.Builder
	appendText(&b, d)
	s := b.String()
	if len(s) > maxIndexedText {
		s = s[:maxIndexedText]
	}
	return strings.TrimSpace(s)
}

func appendText(b *strings.Builder, v any) {
	if b.Len() > maxIndexedText {
		return
	}
	switch v := v.(type) {
	case string:
		b.WriteString(v)
		b.WriteByte('\n')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			appendText(b, v[k])
		}
	case []any:
		for _, e := range v {
			appendText(b, e)
		}
	case []string:
		for _, e := range v {
			appendText(b, e)
		}
	}
}

// ftsQuery is FTSQuery for the audit search.
func ftsQuery(text string) (string, error) { return FTSQuery(text, ErrBadQuery) }

// FTSQuery turns a user's text into an FTS5 query that cannot be a syntax
// error: every word and phrase is quoted (FTS5 operators typed by the user
// are searched as words), a word ending in * is a prefix, and the terms
// are ANDed. Its errors wrap bad, the caller's bad-query error. Every
// full-text search over Vigil's records (audit events, statements) reads
// user text this way.
func FTSQuery(text string, bad error) (string, error) {
	var terms []string
	rest := strings.TrimSpace(text)
	for rest != "" {
		var term string
		prefix := false
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return "", fmt.Errorf("%w: unbalanced quote in %q", bad, text)
			}
			term, rest = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexFunc(rest, unicode.IsSpace)
			if end < 0 {
				end = len(rest)
			}
			term, rest = rest[:end], rest[end:]
			if strings.HasSuffix(term, "*") {
				term, prefix = strings.TrimRight(term, "*"), true
			}
		}
		rest = strings.TrimSpace(rest)
		if !hasWordChar(term) {
			continue // punctuation only: the tokenizer indexes no such word
		}
		q := `"` + strings.ReplaceAll(term, `"`, `""`) + `"`
		if prefix {
			q += "*"
		}
		terms = append(terms, q)
	}
	if len(terms) == 0 {
		return "", fmt.Errorf("%w: %q has no words to search for", bad, text)
	}
	if len(terms) > maxTextTerms {
		return "", fmt.Errorf("%w: at most %d words or phrases", bad, maxTextTerms)
	}
	return strings.Join(terms, " AND "), nil
}

func hasWordChar(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0
}

// Search returns events matching q in seq order (newest first with
// q.Desc). Filters other than Text use indexes; Text uses the full-text
// index. Errors caused by q wrap ErrBadQuery.
func (l *Log) Search(ctx context.Context, q Query) ([]Event, error) {
	return Search(ctx, l.db, q)
}

// Search is Log.Search over db (for readers without a Log).
func Search(ctx context.Context, db *store.DB, q Query) ([]Event, error) {
	switch {
	case q.Limit < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrBadQuery)
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit > MaxLimit:
		q.Limit = MaxLimit
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return nil, fmt.Errorf("%w: until (%s) is not after since (%s)", ErrBadQuery,
			q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if t, ok := strings.CutSuffix(q.Type, ".*"); ok {
		where = append(where, "type >= "+arg(t+".")+" AND type < "+arg(t+"/"))
	} else if q.Type != "" {
		where = append(where, "type = "+arg(q.Type))
	}
	for _, f := range []struct{ col, v string }{{"actor", q.Actor}, {"target", q.Target}, {"session", q.Session}} {
		if f.v != "" {
			where = append(where, f.col+" = "+arg(f.v))
		}
	}
	if q.Source != "" {
		// "10.0.0.5" matches "10.0.0.5:51234"; "[::1]" and "::1" both
		// match "[::1]:22".
		host := strings.TrimSuffix(strings.TrimPrefix(q.Source, "["), "]")
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		where = append(where, "(source = "+arg(q.Source)+" OR (source >= "+arg(host+":")+" AND source < "+arg(host+";")+"))")
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(store.Nanos(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "time < "+arg(store.Nanos(q.Until)))
	}
	if q.After > 0 {
		where = append(where, "seq > "+arg(q.After))
	}
	if q.Before > 0 {
		where = append(where, "seq < "+arg(q.Before))
	}
	if q.Text != "" {
		m, err := ftsQuery(q.Text)
		if err != nil {
			return nil, err
		}
		where = append(where, "seq IN (SELECT rowid FROM audit_fts WHERE audit_fts MATCH "+arg(m)+")")
	}
	sqlText := `SELECT seq, time, type, actor, target, session, source, data, prev_hash, hash FROM audit_events`
	if len(where) > 0 {
		sqlText += " WHERE " + strings.Join(where, " AND ")
	}
	order := " ORDER BY seq"
	if q.Desc {
		order += " DESC"
	}
	rows, err := db.QueryContext(ctx, sqlText+order+" LIMIT "+arg(q.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("audit: search: %w", err)
	}
	return evs, nil
}
