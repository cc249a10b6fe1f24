package masking

import (
	"testing"
)

// benchmarkRow masks a copy of row with the Default masker planned for
// names and oids, as the gateway does for every DataRow, and reports the
// cost per row (including the copy, a few nanoseconds a value).
func benchmarkRow(b *testing.B, names []string, oids []uint32, row [][]byte) {
	b.Helper()
	p := mustNew(b, Default()).Plan(names, oids, nil)
	counts := make(map[string]int)
	values := make([][]byte, len(row))
	b.ReportAllocs()
	for b.Loop() {
		for i, v := range row {
			values[i] = append(values[i][:0], v...)
		}
		p.Row(values, counts)
	}
}

// BenchmarkRowInt is pgbench -S: one int4 column per row. Its plan is
// inactive, so Row returns at once (and the gateway need not call it).
func BenchmarkRowInt(b *testing.B) {
	benchmarkRow(b, []string{"abalance"}, []uint32{oidInt4}, [][]byte{[]byte("-4711")})
}

// BenchmarkPlanInt is the per-query cost of pgbench -S: planning its one
// int4 column.
func BenchmarkPlanInt(b *testing.B) {
	m := mustNew(b, Default())
	names, oids, formats := []string{"abalance"}, []uint32{oidInt4}, []int16{1}
	b.ReportAllocs()
	for b.Loop() {
		if m.Plan(names, oids, formats).Active() {
			b.Fatal("got an active Plan, want inactive")
		}
	}
}

// BenchmarkPlanText plans a five-column text result, which allocates the
// Plan.
func BenchmarkPlanText(b *testing.B) {
	m := mustNew(b, Default())
	b.ReportAllocs()
	for b.Loop() {
		m.Plan(typicalTextColumns, typicalTextOIDs, nil)
	}
}

// BenchmarkRowTextNoMatch is five text columns of typical values with
// nothing to mask: every value is profiled, one has digits enough for
// the card scanner.
func BenchmarkRowTextNoMatch(b *testing.B) {
	benchmarkRow(b, typicalTextColumns, typicalTextOIDs, typicalTextRow())
}

// BenchmarkRowTextMatch is five text columns of which four hold
// something to mask: an e-mail address (a new value), a card number, an
// SSN and an IBAN (masked in place).
func BenchmarkRowTextMatch(b *testing.B) {
	benchmarkRow(b, typicalTextColumns, typicalTextOIDs, [][]byte{
		[]byte("Alice Smith"),
		[]byte("alice.smith@example.com"),
		[]byte("card 4111 1111 1111 1111 exp 12/27"),
		[]byte("SSN 123-45-6789"),
		[]byte(`{"iban":"GB82 WEST 1234 5698 7654 32"}`),
	})
}
