package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"", now.Add(-30 * day), ""},
		{"30d", now.Add(-30 * day), ""},
		{"1d12h", now.Add(-36 * time.Hour), ""},
		{"0d", now, ""},
		{"90m", now.Add(-90 * time.Minute), ""},
		{"2025-06-01T00:00:00Z", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), ""},
		{"2025-06-01T02:00:00+02:00", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), ""},
		{"-5h", time.Time{}, "must not be negative"},
		{"1d-5h", time.Time{}, "want a duration"},
		{"yesterday", time.Time{}, "want a duration"},
		{"99999999999999999999d", time.Time{}, "at most 36500 days"},
		{"40000d", time.Time{}, "at most 36500 days"},
		{"2025-07-01T00:00:00Z", time.Time{}, "in the future"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSince(tc.in, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "report: ") {
					t.Fatalf("got %v, %v, want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("got %v, %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestRunUnknownKind(t *testing.T) {
	r := New(openDB(t), nil)
	_, err := r.Run(context.Background(), "logins", now)
	if !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("got %v, want ErrUnknownKind", err)
	}
	want := `report: unknown report "logins"; want one of access, breakglass, violations, unused-grants`
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	if _, err := Decode("logins", []byte("[]")); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("decode: got %v, want ErrUnknownKind", err)
	}
}

// TestEmpty: every report over nothing renders as a header-only CSV, []
// and a line saying there is nothing.
func TestEmpty(t *testing.T) {
	r := New(openDB(t), func() time.Time { return now })
	since := now.Add(-day)
	tests := []struct {
		kind, text string
	}{
		{"access", "no sessions started since 2025-06-29T12:00:00Z\n"},
		{"breakglass", "no break-glass use since 2025-06-29T12:00:00Z\n"},
		{"violations", "no rule hits or access denials since 2025-06-29T12:00:00Z\n"},
		{"unused-grants", "no grants unused in the window since 2025-06-29T12:00:00Z\n"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			tbl, err := r.Run(context.Background(), tc.kind, since)
			if err != nil {
				t.Fatal(err)
			}
			var text, js, cs bytes.Buffer
			if err := tbl.Write(&text, FormatTable); err != nil {
				t.Fatal(err)
			}
			if err := tbl.Write(&js, FormatJSON); err != nil {
				t.Fatal(err)
			}
			if err := tbl.Write(&cs, FormatCSV); err != nil {
				t.Fatal(err)
			}
			if text.String() != tc.text {
				t.Fatalf("table: got %q, want %q", text.String(), tc.text)
			}
			if js.String() != "[]\n" {
				t.Fatalf("json: got %q, want %q", js.String(), "[]\n")
			}
			recs, err := csv.NewReader(&cs).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || !reflect.DeepEqual(recs[0], tbl.Columns) {
				t.Fatalf("csv: got %q, want only the header %q", recs, tbl.Columns)
			}
		})
	}
}

// TestRender checks each report's table through every format against
// its typed rows, and that the JSON round-trips (what the CLI does).
func TestRender(t *testing.T) {
	r := seeded(t)
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			tbl, err := r.Run(context.Background(), kind, window)
			if err != nil {
				t.Fatal(err)
			}
			if len(tbl.Rows) == 0 {
				t.Fatal("no rows: the seed should give every report some")
			}
			for i, row := range tbl.Rows {
				if len(row) != len(tbl.Columns) {
					t.Fatalf("row %d: got %d cells, want %d", i, len(row), len(tbl.Columns))
				}
			}
			var cs bytes.Buffer
			if err := tbl.Write(&cs, FormatCSV); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(&cs).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(recs, append([][]string{tbl.Columns}, tbl.Rows...)) {
				t.Fatalf("csv: got %q, want header and rows %q", recs, tbl.Rows)
			}

			var js bytes.Buffer
			if err := tbl.Write(&js, FormatJSON); err != nil {
				t.Fatal(err)
			}
			var objs []map[string]any
			if err := json.Unmarshal(js.Bytes(), &objs); err != nil || len(objs) != len(tbl.Rows) {
				t.Fatalf("json: got %d objects (%v), want %d", len(objs), err, len(tbl.Rows))
			}
			back, err := Decode(kind, js.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Rows, tbl.Rows) || !reflect.DeepEqual(back.Data, tbl.Data) {
				t.Fatalf("decoded: got %q, want %q", back.Rows, tbl.Rows)
			}

			var text bytes.Buffer
			if err := tbl.Write(&text, FormatTable); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(text.String(), "\n"), "\n")
			if len(lines) != len(tbl.Rows)+1 || !strings.HasPrefix(lines[0], tbl.Columns[0]+" ") {
				t.Fatalf("table: got %d lines starting %q, want a heading and %d rows", len(lines), lines[0], len(tbl.Rows))
			}
		})
	}
}

func TestAccessTableText(t *testing.T) {
	r := seeded(t)
	tbl, err := r.Run(context.Background(), "access", now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tbl.Write(&b, FormatTable); err != nil {
		t.Fatal(err)
	}
	want := "SESSION  USER   TARGET  LOGIN  KIND  SOURCE    STARTED               ENDED  DURATION  STATE   END REASON  EXIT  BYTES UP  BYTES DOWN  RECORDING  DISPOSED  RECORDING SHA256  BREAK-GLASS  JTI\n" +
		"s_live   carol  web1    root   ssh   10.0.0.5  2025-06-30T11:00:00Z  -      1h0m0s    active  -           -     0         0           available  -         -                 yes          j_bg2\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestCellsAreDefused: what users typed cannot run as a spreadsheet
// formula from the CSV, nor drive a terminal or break columns in a table.
func TestCellsAreDefused(t *testing.T) {
	tbl := tableOf("violations", violationColumns, []ViolationRow{{Time: now, Count: 1, Type: "rule.hit",
		Text: "=HYPERLINK(\"http://x\")", Detail: "a\tb\x1b[31mred\nnext"}})
	var cs, text bytes.Buffer
	if err := tbl.Write(&cs, FormatCSV); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := recs[1][11], `'=HYPERLINK("http://x")`; got != want {
		t.Fatalf("csv text: got %q, want %q", got, want)
	}
	if got, want := recs[1][12], "a\tb\x1b[31mred\nnext"; got != want {
		t.Fatalf("csv detail: got %q, want %q (CSV quotes it)", got, want)
	}
	if err := tbl.Write(&text, FormatTable); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), `a\tb\x1b[31mred\nnext`) || strings.Count(text.String(), "\n") != 2 {
		t.Fatalf("table: got %q, want the control characters escaped on one line", text.String())
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	tbl := tableOf("access", accessColumns, []AccessRow{})
	err := tbl.Write(&bytes.Buffer{}, "xml")
	if err == nil || err.Error() != `report: output "xml": want one of table, csv, json` {
		t.Fatalf("got %v, want an error naming the formats", err)
	}
}

func TestStartRoles(t *testing.T) {
	tests := []struct {
		name, data string
		roles      []string
		known      bool
	}{
		{"roles", `{"jti":"j","roles":["dba","ops"]}`, []string{"dba", "ops"}, true},
		{"none, as []", `{"roles":[]}`, []string{}, true},
		{"none, as null", `{"roles":null}`, nil, true},
		{"not recorded", `{"jti":"j"}`, nil, false},
		{"no start event", ``, nil, false},
		{"not a list", `{"roles":"dba"}`, nil, false},
		{"not JSON", `{`, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			roles, known := startRoles(tc.data)
			if !reflect.DeepEqual(roles, tc.roles) || known != tc.known {
				t.Fatalf("got %q, %v, want %q, %v", roles, known, tc.roles, tc.known)
			}
		})
	}
}
