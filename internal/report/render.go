package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// Output formats of Write.
const (
	FormatTable = "table"
	FormatCSV   = "csv"
	FormatJSON  = "json"
)

// Formats lists the output formats Write knows.
var Formats = []string{FormatTable, FormatCSV, FormatJSON}

// Write renders t to w in format: FormatTable (aligned columns, or one
// line saying there are no rows), FormatCSV (a header row, then a record
// per row) or FormatJSON (an array of objects, [] when empty).
func (t *Table) Write(w io.Writer, format string) error {
	switch format {
	case FormatTable:
		return t.WriteText(w)
	case FormatCSV:
		return t.WriteCSV(w)
	case FormatJSON:
		return t.WriteJSON(w)
	default:
		return fmt.Errorf("report: output %q: want one of %s", format, strings.Join(Formats, ", "))
	}
}

// WriteText writes aligned columns with a heading line; an empty cell
// shows as "-" and control characters are escaped (the cells hold what
// users typed). No rows is one line saying so.
func (t *Table) WriteText(w io.Writer) error {
	if len(t.Rows) == 0 {
		msg := "no rows"
		if k, err := lookup(t.Kind); err == nil {
			msg = k.empty
		}
		if !t.Since.IsZero() {
			msg += " since " + cellTime(t.Since)
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.Columns, "\t"))
	line := make([]string, len(t.Columns))
	for _, r := range t.Rows {
		for i := range line {
			line[i] = "-"
			if i < len(r) && r[i] != "" {
				line[i] = printable(r[i])
			}
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// WriteCSV writes RFC 4180 CSV with a header row. A cell a spreadsheet
// would evaluate as a formula (starting with =, +, -, @, tab or carriage
// return) is prefixed with a single quote: the cells hold what users
// typed, and a report is opened by auditors.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Columns); err != nil {
		return fmt.Errorf("report: write csv: %w", err)
	}
	rec := make([]string, len(t.Columns))
	for _, r := range t.Rows {
		for i := range rec {
			rec[i] = ""
			if i < len(r) {
				rec[i] = defuseFormula(r[i])
			}
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("report: write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report: write csv: %w", err)
	}
	return nil
}

// WriteJSON writes the typed rows as an indented JSON array.
func (t *Table) WriteJSON(w io.Writer) error {
	data := t.Data
	if data == nil {
		data = []struct{}{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(data); err != nil {
		return fmt.Errorf("report: write json: %w", err)
	}
	return nil
}

func defuseFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// printable escapes control characters (an escape sequence in a typed
// command must not drive the reader's terminal, a tab or newline must not
// break the columns).
func printable(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func cellTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// cellSeconds renders seconds as a duration rounded to the second.
func cellSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
