package masking

import (
	"bytes"
	"maps"
	"testing"
)

// Type OIDs of non-textual types used in tests.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt4        = 23
	oidTimestamptz = 1184
	oidTextArray   = 1009
)

func TestPlanColumnRules(t *testing.T) {
	tests := []struct {
		name    string
		columns []string // nil for Default().Columns
		column  string
		oid     uint32
		format  int16
		value   []byte
		want    []byte
		wantKey string // counts key; "" if nothing is masked
	}{
		{name: "text", column: "password", oid: oidText, value: []byte("hunter2"), want: []byte("********"), wantKey: "column:password"},
		{name: "capitals in name", column: "User_PassWord", oid: oidVarchar, value: []byte("hunter2"), want: []byte("********"), wantKey: "column:User_PassWord"},
		{name: "capitals in pattern", columns: []string{"*Secret*"}, column: "client_secret", oid: oidText, value: []byte("s3cr3t"), want: []byte("********"), wantKey: "column:client_secret"},
		{name: "long value", column: "api_key", oid: oidText, value: bytes.Repeat([]byte("k"), 100), want: []byte("********"), wantKey: "column:api_key"},
		{name: "empty value", column: "cvv", oid: oidBPChar, value: []byte{}, want: []byte("********"), wantKey: "column:cvv"},
		{name: "suffix pattern", column: "customer_ssn", oid: oidText, value: []byte("123-45-6789"), want: []byte("********"), wantKey: "column:customer_ssn"},
		{name: "unspecified type", column: "token", oid: oidUnspecified, value: []byte("abc"), want: []byte("********"), wantKey: "column:token"},
		{name: "slash in name", column: "old/password", oid: oidText, value: []byte("x"), want: []byte("********"), wantKey: "column:old/password"},
		{name: "integer is NULL", column: "ssn", oid: oidInt4, value: []byte("123456789"), want: nil, wantKey: "column:ssn"},
		{name: "bytea is NULL", column: "password_hash", oid: oidBytea, value: []byte(`\x0102`), want: nil, wantKey: "column:password_hash"},
		{name: "text array is NULL", column: "tokens", oid: oidTextArray, value: []byte("{a,b}"), want: nil, wantKey: "column:tokens"},
		{name: "binary text is NULL", column: "api_key", oid: oidText, format: 1, value: []byte("k"), want: nil, wantKey: "column:api_key"},
		{name: "NULL stays NULL", column: "password", oid: oidText, value: nil, want: nil},
		{name: "NULL integer stays NULL", column: "cvv", oid: oidInt4, value: nil, want: nil},
		{name: "exact pattern only", column: "ssn_verified", oid: oidBool, value: []byte("t"), want: []byte("t")},
		{name: "no match", column: "abalance", oid: oidInt4, value: []byte("-4711"), want: []byte("-4711")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Columns: tc.columns}
			if c.Columns == nil {
				c.Columns = Default().Columns
			}
			p := mustNew(t, c).Plan([]string{tc.column}, []uint32{tc.oid}, []int16{tc.format})
			values := [][]byte{tc.value}
			counts := map[string]int{}
			n := p.Row(values, counts)
			if got := values[0]; !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("got %q (nil %v), want %q (nil %v)", got, got == nil, tc.want, tc.want == nil)
			}
			wantN := 0
			if tc.wantKey != "" {
				wantN = 1
			}
			if n != wantN || counts[tc.wantKey] != wantN || len(counts) != wantN {
				t.Errorf("got %d masked, counts %v, want %d under %q", n, counts, wantN, tc.wantKey)
			}
		})
	}
}

func TestPlanActive(t *testing.T) {
	tests := []struct {
		name    string
		config  Config
		names   []string
		oids    []uint32
		formats []int16
		want    bool
	}{
		{"pgbench -S", Default(), []string{"abalance"}, []uint32{oidInt4}, nil, false},
		{"pgbench -S binary", Default(), []string{"abalance"}, []uint32{oidInt4}, []int16{1}, false},
		{"non-textual columns", Default(), []string{"id", "at", "ok"}, []uint32{oidInt4, oidTimestamptz, oidBool}, nil, false},
		{"no columns", Default(), nil, nil, nil, false},
		{"text column scanned", Default(), []string{"id", "note"}, []uint32{oidInt4, oidText}, nil, true},
		{"binary json scanned", Default(), []string{"doc"}, []uint32{oidJSONB}, []int16{1}, true},
		{"integer masked by name", Default(), []string{"id", "cvv"}, []uint32{oidInt4, oidInt4}, nil, true},
		{"missing OID scanned", Default(), []string{"a", "b"}, []uint32{oidInt4}, nil, true},
		{"columns only, text column", Config{Columns: []string{"ssn"}}, []string{"name"}, []uint32{oidText}, nil, false},
		{"columns only, match", Config{Columns: []string{"ssn"}}, []string{"name", "SSN"}, []uint32{oidText, oidInt4}, nil, true},
		{"values only, text", Config{Values: []string{DetectorCard}}, []string{"password"}, []uint32{oidText}, nil, true},
		{"values only, integer", Config{Values: []string{DetectorCard}}, []string{"password"}, []uint32{oidInt4}, nil, false},
		{"zero config", Config{}, []string{"password"}, []uint32{oidText}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, tc.config).Plan(tc.names, tc.oids, tc.formats)
			if got := p.Active(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if !p.Active() {
				values := make([][]byte, len(tc.names))
				for i := range values {
					values[i] = []byte("4111111111111111")
				}
				if n := p.Row(values, nil); n != 0 {
					t.Errorf("inactive Plan: got %d masked, want 0", n)
				}
			}
		})
	}
}

func TestPlanFormats(t *testing.T) {
	m := mustNew(t, Config{Columns: []string{"secret_*"}})
	names := []string{"secret_a", "secret_b", "secret_c"}
	oids := []uint32{oidText, oidText, oidText}
	tests := []struct {
		name    string
		formats []int16
		want    []string // "NULL" for nil
	}{
		{"none means text", nil, []string{"********", "********", "********"}},
		{"one for all, text", []int16{0}, []string{"********", "********", "********"}},
		{"one for all, binary", []int16{1}, []string{"NULL", "NULL", "NULL"}},
		{"per column", []int16{0, 1, 0}, []string{"********", "NULL", "********"}},
		{"missing is binary", []int16{0, 0}, []string{"********", "********", "NULL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			values := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
			m.Plan(names, oids, tc.formats).Row(values, nil)
			checkValues(t, values, tc.want)
		})
	}
}

func TestRowCounts(t *testing.T) {
	m := mustNew(t, Default())
	p := m.Plan(
		[]string{"id", "email", "password", "note", "cvv"},
		[]uint32{oidInt4, oidText, oidText, oidText, oidInt4},
		nil,
	)
	counts := map[string]int{"column:password": 1} // counts add up across rows
	for range 2 {
		values := [][]byte{[]byte("7"), []byte("jane@example.com"), []byte("pw"), []byte("paid 4111111111111111 and 5500000000000004"), []byte("123")}
		if n := p.Row(values, counts); n != 5 {
			t.Errorf("got %d masked, want 5", n)
		}
	}
	want := map[string]int{"column:password": 3, "column:cvv": 2, DetectorEmail: 2, DetectorCard: 4}
	if len(counts) != len(want) {
		t.Errorf("got counts %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("counts[%q]: got %d, want %d", k, counts[k], v)
		}
	}
}

// TestRowStaysInsideValues checks that masking never writes past a
// value's length when the values are slices of one DataRow buffer, as the
// gateway passes them.
func TestRowStaysInsideValues(t *testing.T) {
	m := mustNew(t, Default())
	p := m.Plan([]string{"a", "b", "c", "password"}, []uint32{oidText, oidText, oidText, oidText}, nil)
	buf := []byte("4111111111111111|a@example.com|123-45-6789|pw|tail")
	orig := bytes.Clone(buf)
	values := [][]byte{buf[0:16], buf[17:30], buf[31:42], buf[43:45]}
	if n := p.Row(values, nil); n != 4 {
		t.Errorf("got %d masked, want 4", n)
	}
	want := []string{"************1111", "a*******@example.com", "***-**-6789", "********"}
	for i, v := range values {
		if string(v) != want[i] {
			t.Errorf("value %d: got %q, want %q", i, v, want[i])
		}
	}
	// In place where the length is kept, untouched elsewhere.
	wantBuf := "************1111|a@example.com|***-**-6789|pw|tail"
	if string(buf) != wantBuf {
		t.Errorf("buffer: got %q, want %q (was %q)", buf, wantBuf, orig)
	}
}

func TestRowShortAndLongRows(t *testing.T) {
	p := mustNew(t, Default()).Plan([]string{"a", "b"}, []uint32{oidText, oidText}, nil)
	short := [][]byte{[]byte("4111111111111111")}
	if n := p.Row(short, nil); n != 1 || string(short[0]) != "************1111" {
		t.Errorf("short row: got %d, %q, want 1, masked", n, short[0])
	}
	long := [][]byte{[]byte("x"), []byte("y"), []byte("4111111111111111")}
	if n := p.Row(long, nil); n != 0 || string(long[2]) != "4111111111111111" {
		t.Errorf("long row: got %d, %q, want the extra value untouched", n, long[2])
	}
	var nilPlan *Plan
	if nilPlan.Active() || nilPlan.Row(long, nil) != 0 {
		t.Errorf("nil Plan: got active or masking, want neither")
	}
}

// typicalTextRow is five text values of a typical customer table, none of
// which holds anything to mask.
func typicalTextRow() [][]byte {
	return [][]byte{
		[]byte("Alice Smith"),
		[]byte("active"),
		[]byte("Flat 2, 10 Downing Street, London"),
		[]byte("2024-01-15 10:30:00.123456+00"),
		[]byte(`{"plan":"pro","seats":12,"renewal":"2025-06-30"}`),
	}
}

var typicalTextColumns = []string{"name", "status", "address", "created", "meta"}
var typicalTextOIDs = []uint32{oidText, oidVarchar, oidText, oidText, oidJSONB}

func TestRowAllocations(t *testing.T) {
	m := mustNew(t, Default())
	tests := []struct {
		name   string
		plan   func() *Plan
		values [][]byte
	}{
		{
			name:   "int row",
			plan:   func() *Plan { return m.Plan([]string{"abalance"}, []uint32{oidInt4}, nil) },
			values: [][]byte{[]byte("-4711")},
		},
		{
			name:   "text row without a match",
			plan:   func() *Plan { return m.Plan(typicalTextColumns, typicalTextOIDs, nil) },
			values: typicalTextRow(),
		},
		{
			name:   "text row with in-place matches",
			plan:   func() *Plan { return m.Plan([]string{"a", "b"}, []uint32{oidText, oidText}, nil) },
			values: [][]byte{[]byte("4111111111111111"), []byte("123-45-6789")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan()
			counts := map[string]int{DetectorCard: 0, DetectorUSSSN: 0}
			values := make([][]byte, len(tc.values))
			got := testing.AllocsPerRun(100, func() {
				for i, v := range tc.values {
					values[i] = append(values[i][:0], v...)
				}
				p.Row(values, counts)
			})
			if got != 0 {
				t.Errorf("got %v allocations per row, want 0", got)
			}
		})
	}
	t.Run("plan for an int result", func(t *testing.T) {
		names, oids, formats := []string{"abalance"}, []uint32{oidInt4}, []int16{1}
		if got := testing.AllocsPerRun(100, func() { m.Plan(names, oids, formats) }); got != 0 {
			t.Errorf("got %v allocations per Plan, want 0", got)
		}
	})
}

func TestPlanSources(t *testing.T) {
	m := mustNew(t, Config{Columns: []string{"*token*", "ssn"}})
	tests := []struct {
		name    string
		names   []string
		sources []string
		want    []string // "NULL" for nil
		counts  map[string]int
	}{
		{"alias of a masked column", []string{"t", "n"}, []string{"api_token", "name"}, []string{"********", "b"},
			map[string]int{ColumnCountPrefix + "api_token": 1}},
		{"masked name, any source", []string{"ssn", "n"}, []string{"x", ""}, []string{"********", "b"},
			map[string]int{ColumnCountPrefix + "ssn": 1}},
		{"no sources", []string{"t", "n"}, nil, []string{"a", "b"}, map[string]int{}},
		{"fewer sources than columns", []string{"n", "ssn"}, []string{"name"}, []string{"a", "********"},
			map[string]int{ColumnCountPrefix + "ssn": 1}},
		{"computed column", []string{"t", "n"}, []string{"", "name"}, []string{"a", "b"}, map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			values := [][]byte{[]byte("a"), []byte("b")}
			counts := map[string]int{}
			m.PlanSources(tc.names, tc.sources, []uint32{oidText, oidText}, nil).Row(values, counts)
			checkValues(t, values, tc.want)
			if !maps.Equal(counts, tc.counts) {
				t.Errorf("counts: got %v, want %v", counts, tc.counts)
			}
		})
	}
}

// checkValues fails t unless values are want, "NULL" standing for nil.
func checkValues(t *testing.T, values [][]byte, want []string) {
	t.Helper()
	for i, v := range values {
		got := string(v)
		if v == nil {
			got = "NULL"
		}
		if got != want[i] {
			t.Errorf("column %d: got %q, want %q", i, got, want[i])
		}
	}
}
