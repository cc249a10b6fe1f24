// Package report owns Vigil's compliance reports: who accessed what and
// for how long (access), every use of break-glass access and whether it
// was reviewed (breakglass), rule hits and refused access (violations),
// and standing privilege nobody uses (unused-grants). Each report is a
// list of typed rows with a stable column order, rendered as an aligned
// table, CSV or JSON.
//
// It reads the sessions, grants and audit_events tables and writes
// nothing: sessions, grants and audit events are recorded by packages
// session, policy and audit and the gateways. It does not audit that a
// report was run (the API does), nor decide what is worth reporting
// beyond selecting and joining what was recorded. Events archived and
// pruned from the audit table are not in the reports.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/store"
)

// DefaultSince is how far back a report looks when no since is given, and
// so the idle period after which unused-grants lists a grant.
const DefaultSince = 30 * 24 * time.Hour

// maxSinceDays bounds a since given in days (100 years): more is a typo,
// and far more would overflow a time.Duration.
const maxSinceDays = 36500

// Reporter runs reports over the state database. Create it with New.
type Reporter struct {
	db  *store.DB
	now func() time.Time
}

// New returns a Reporter over db. now is the clock that measures open
// sessions and idle grants; nil means time.Now.
func New(db *store.DB, now func() time.Time) *Reporter {
	if now == nil {
		now = time.Now
	}
	return &Reporter{db: db, now: now}
}

// Table is a report ready to render: its columns, its rows as text cells
// in column order (an empty cell means "none"), and the typed rows the
// cells were made from, which JSON output encodes.
type Table struct {
	// Kind is the report's name ("access", …).
	Kind string
	// Since is the start of the period reported on; zero when unknown.
	Since time.Time
	// Columns are the column headings, in order.
	Columns []string
	// Rows hold one cell per column.
	Rows [][]string
	// Data is the typed rows ([]AccessRow, []BreakglassRow,
	// []ViolationRow or []UnusedGrantRow), never nil.
	Data any
}

// row is a typed report row that renders as cells in its report's
// column order.
type row interface{ cells() []string }

// kind is one report: how to run it and how to rebuild its table from
// JSON (the CLI receives JSON from the API).
type kind struct {
	name    string
	columns []string
	// empty is the line table output prints for no rows, before "since T".
	empty  string
	run    func(*Reporter, context.Context, time.Time) (Table, error)
	decode func([]byte) (Table, error)
}

// define ties a report's typed run function to its generic form.
func define[R row](name, empty string, columns []string, run func(*Reporter, context.Context, time.Time) ([]R, error)) kind {
	return kind{
		name: name, columns: columns, empty: empty,
		run: func(r *Reporter, ctx context.Context, since time.Time) (Table, error) {
			rows, err := run(r, ctx, since)
			if err != nil {
				return Table{}, err
			}
			t := tableOf(name, columns, rows)
			t.Since = since
			return t, nil
		},
		decode: func(b []byte) (Table, error) {
			rows := []R{}
			if err := json.Unmarshal(b, &rows); err != nil {
				return Table{}, fmt.Errorf("report: decode %s rows: %w", name, err)
			}
			if rows == nil { // the JSON was null
				rows = []R{}
			}
			return tableOf(name, columns, rows), nil
		},
	}
}

func tableOf[R row](name string, columns []string, rows []R) Table {
	t := Table{Kind: name, Columns: columns, Rows: make([][]string, 0, len(rows)), Data: rows}
	for _, r := range rows {
		t.Rows = append(t.Rows, r.cells())
	}
	return t
}

// kinds lists the reports in the order help and errors name them.
var kinds = []kind{
	define("access", "no sessions started", accessColumns, (*Reporter).Access),
	define("breakglass", "no break-glass use", breakglassColumns, (*Reporter).Breakglass),
	define("violations", "no rule hits or access denials", violationColumns, (*Reporter).Violations),
	define("unused-grants", "no grants unused in the window", unusedGrantColumns, (*Reporter).UnusedGrants),
}

// Kinds returns the report names: access, breakglass, violations,
// unused-grants.
func Kinds() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	return names
}

// ErrUnknownKind is wrapped by errors for a report name that is not one
// of Kinds.
var ErrUnknownKind = errors.New("report: unknown report")

func lookup(name string) (kind, error) {
	for _, k := range kinds {
		if k.name == name {
			return k, nil
		}
	}
	return kind{}, fmt.Errorf("%w %q; want one of %s", ErrUnknownKind, name, strings.Join(Kinds(), ", "))
}

// Run runs the report named kind over the period from since to now.
func (r *Reporter) Run(ctx context.Context, kind string, since time.Time) (Table, error) {
	k, err := lookup(kind)
	if err != nil {
		return Table{}, err
	}
	return k.run(r, ctx, since)
}

// Decode rebuilds the table of report kind from its JSON rows (what
// GET /api/v1/reports/{kind} returns). Since is left zero.
func Decode(kind string, b []byte) (Table, error) {
	k, err := lookup(kind)
	if err != nil {
		return Table{}, err
	}
	return k.decode(b)
}

// daysPrefix matches a since given in days, with an optional Go duration
// after it ("30d", "1d12h").
var daysPrefix = regexp.MustCompile(`^(\d+)d(.*)$`)

// ParseSince reads the start of a report's period: a duration back from
// now ("72h", "30d", "1d12h") or an RFC 3339 time. Empty means
// DefaultSince back from now. A negative duration or a time after now is
// refused.
func ParseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return now.Add(-DefaultSince), nil
	}
	bad := fmt.Errorf("report: since %q: want a duration back from now (30d, 12h, 1d12h) or an RFC 3339 time", v)
	var d time.Duration
	if m := daysPrefix.FindStringSubmatch(v); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > maxSinceDays {
			return time.Time{}, fmt.Errorf("report: since %q: at most %d days", v, maxSinceDays)
		}
		d = time.Duration(days) * 24 * time.Hour
		if m[2] != "" {
			rest, err := time.ParseDuration(m[2])
			if err != nil || rest < 0 {
				return time.Time{}, bad
			}
			d += rest
		}
	} else if pd, err := time.ParseDuration(v); err == nil {
		if pd < 0 {
			return time.Time{}, fmt.Errorf("report: since %q: a duration back from now must not be negative", v)
		}
		d = pd
	} else {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, bad
		}
		if t.After(now) {
			return time.Time{}, fmt.Errorf("report: since %s is in the future", t.Format(time.RFC3339))
		}
		return t.UTC(), nil
	}
	return now.Add(-d).UTC(), nil
}
