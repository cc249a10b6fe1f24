package masking

import "strings"

// detectors are the built-in detectors in the order they run on a value.
// E-mail comes first because it masks a whole local part, which may hold
// digits that a number detector would only half mask; IBAN comes before
// card because the digits of a BBAN can pass the Luhn check.
var detectors = [...]*detector{&emailDetector, &ibanDetector, &ssnDetector, &ninoDetector, &cardDetector}

// Masker masks query results as a Config says. It is immutable and safe
// for concurrent use. A nil *Masker masks nothing.
type Masker struct {
	columns   []columnPattern
	detectors []*detector // enabled, in running order
	want      uint8       // the profile bits of the enabled detectors
}

// New returns a Masker for c, or c's Validate error.
func New(c Config) (*Masker, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &Masker{}
	for _, p := range c.Columns {
		m.columns = append(m.columns, newColumnPattern(p))
	}
	for _, d := range detectors {
		for _, name := range c.Values {
			if name == d.name {
				m.detectors = append(m.detectors, d)
				m.want |= d.want
				break
			}
		}
	}
	return m, nil
}

// Enabled reports whether m masks anything at all. When it does not, the
// gateway can skip planning and masking altogether.
func (m *Masker) Enabled() bool {
	return m != nil && (len(m.columns) > 0 || len(m.detectors) > 0)
}

// What a plan does with a column's values.
type action uint8

const (
	actNone  action = iota // pass through
	actScan                // run the value detectors
	actStars               // replace with columnStars
	actNull                // replace with NULL
)

// column is the plan for one column.
type column struct {
	act action
	key string // the counts key for actStars and actNull
}

// Plan masks the rows of one result. A Plan is immutable and safe for
// concurrent use; a nil *Plan masks nothing.
type Plan struct {
	cols      []column // one per column; nil if no column is masked
	detectors []*detector
	want      uint8
	inline    [8]column // cols for the usual result of up to 8 columns
}

// inactive is the Plan of every result with nothing to mask. It is never
// modified.
var inactive = &Plan{}

// columnStars is what a textual column masked by name shows.
var columnStars = [8]byte{'*', '*', '*', '*', '*', '*', '*', '*'}

// Plan returns the plan for the rows of a result described by a
// RowDescription: names are its column names, oids their type OIDs and
// formats the format codes (0 text, 1 binary) of the result, either one
// per column, a single one for all columns, or none for all text.
//
// A column whose name matches a Config.Columns pattern is masked whole:
// textual columns in text format show "********", other columns NULL,
// because a fixed string would not decode as an integer, a date or a
// binary value. Other columns of a textual type (see textual) are
// scanned by the value detectors in either format. A column without an
// OID or a format code (a malformed description) is assumed binary and
// of an unknown type: NULL if masked by name, scanned otherwise.
//
// A result with nothing to mask, such as pgbench's one integer column,
// gets a shared inactive Plan without allocating.
func (m *Masker) Plan(names []string, oids []uint32, formats []int16) *Plan {
	return m.PlanSources(names, nil, oids, formats)
}

// PlanSources is Plan for a result whose columns may come from table
// columns of another name: sources[i], if there is one and it is not
// empty, is the name of the table column that result column i reads
// (`SELECT api_token AS t FROM users` gives names ["t"] and sources
// ["api_token"]). A column is masked whole if its name or its source
// matches a Config.Columns pattern; it is counted under the name that
// matched.
func (m *Masker) PlanSources(names, sources []string, oids []uint32, formats []int16) *Plan {
	if !m.Enabled() {
		return inactive
	}
	var p *Plan
	for i, name := range names {
		if i < len(sources) && sources[i] != "" && !m.matchColumn(name) && m.matchColumn(sources[i]) {
			name = sources[i]
		}
		act, key := m.columnAction(name, i, oids, formats)
		if act == actNone {
			continue
		}
		if p == nil {
			p = &Plan{detectors: m.detectors, want: m.want}
			if len(names) <= len(p.inline) {
				p.cols = p.inline[:len(names)]
			} else {
				p.cols = make([]column, len(names))
			}
		}
		p.cols[i] = column{act: act, key: key}
	}
	if p == nil {
		return inactive
	}
	return p
}

// columnAction returns what to do with column i and, for a column masked
// whole, its counts key.
func (m *Masker) columnAction(name string, i int, oids []uint32, formats []int16) (action, string) {
	known := i < len(oids)
	text := known && textual(oids[i])
	if m.matchColumn(name) {
		if text && formatOf(formats, i) == 0 {
			return actStars, ColumnCountPrefix + name
		}
		return actNull, ColumnCountPrefix + name
	}
	if len(m.detectors) > 0 && (text || !known) {
		return actScan, ""
	}
	return actNone, ""
}

// formatOf returns the format code of column i: formats as in Plan, and
// binary (1) for a column beyond a list that has one per column.
func formatOf(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 1
}

// MasksColumns reports whether m masks any column by name: whether
// MatchColumn can ever be true.
func (m *Masker) MasksColumns() bool {
	return m != nil && len(m.columns) > 0
}

// MatchColumn reports whether a column named name is masked whole.
func (m *Masker) MatchColumn(name string) bool {
	return m != nil && m.matchColumn(name)
}

// LikePatterns returns SQL LIKE patterns (escape character '\\', LIKE's
// default) that between them match the database's lower-cased form
// (`lower(name) LIKE ANY (...)`) of at least every column name MatchColumn
// matches, whatever the database's locale and encoding: a database can be
// asked for the columns worth checking with MatchColumn, which alone
// decides. It is nil when m masks no column by name.
func (m *Masker) LikePatterns() []string {
	if !m.MasksColumns() {
		return nil
	}
	out := make([]string, 0, len(m.columns))
	for _, c := range m.columns {
		out = append(out, likePattern(c.glob))
	}
	return out
}

// matchColumn reports whether name matches a column pattern.
func (m *Masker) matchColumn(name string) bool {
	if len(m.columns) == 0 {
		return false
	}
	lower := strings.ToLower(name) // allocates only for names with capitals
	for i := range m.columns {
		if m.columns[i].match(lower) {
			return true
		}
	}
	return false
}

// Active reports whether p can mask any column, whole or by value. When
// it cannot, the caller can relay the result's rows untouched and skip
// Row.
func (p *Plan) Active() bool {
	return p != nil && p.cols != nil
}

// Row masks one DataRow's values, one per column of the description p was
// made for (nil is NULL), and returns how many values and matches it
// masked. It adds the same counts to counts by kind: ColumnCountPrefix +
// the column name for a value masked whole, the detector name (DetectorEmail
// and so on) for each match; counts may be nil.
//
// Row masks in place: it overwrites bytes of a value with '*' where the
// masked form has the same length, so a caller that needs the original
// must copy it first. Where it does not (a value masked whole, an e-mail
// address), it stores a new slice in values; such slices may be shared
// between rows and must not be modified. Row never writes beyond a
// value's length, so values may point into one message buffer. NULL
// stays NULL.
//
// Values beyond the columns of the description are left alone: the
// gateway must reject a DataRow whose field count differs from its
// RowDescription, as the protocol requires them to match.
func (p *Plan) Row(values [][]byte, counts map[string]int) (masked int) {
	if !p.Active() {
		return 0
	}
	for i := range min(len(values), len(p.cols)) {
		c := &p.cols[i]
		if c.act == actNone || values[i] == nil {
			continue
		}
		if c.act == actScan {
			var n int
			values[i], n = p.scan(values[i], counts)
			masked += n
			continue
		}
		if c.act == actStars {
			values[i] = columnStars[:len(columnStars):len(columnStars)]
		} else {
			values[i] = nil
		}
		masked++
		if counts != nil {
			counts[c.key]++
		}
	}
	return masked
}

// scan runs the detectors that v's profile calls for and returns the
// masked value and the number of matches.
func (p *Plan) scan(v []byte, counts map[string]int) ([]byte, int) {
	want := profile(v) & p.want
	if want == 0 {
		return v, 0
	}
	total := 0
	for _, d := range p.detectors {
		if want&d.want == 0 {
			continue
		}
		var n int
		if v, n = d.apply(v); n > 0 {
			total += n
			if counts != nil {
				counts[d.name] += n
			}
		}
	}
	return v, total
}
