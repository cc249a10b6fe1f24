package masking

import (
	"bytes"
	"testing"
)

// FuzzRow masks arbitrary text and checks that masking does not panic;
// that it is safe to repeat: masking its own output only turns more bytes
// into '*' and never brings anything back (it need not be a no-op: the
// last four digits a masked card number shows can make a new card number
// with the digits after it); and that no card number or SSN found in the
// input survives in the output: at the place of each, only its last four
// digits remain.
func FuzzRow(f *testing.F) {
	for _, s := range []string{
		"", "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111 5500000000000004",
		"2024-01-15 4111 1111 1111 1111", "123-45-6789", "000-12-3456", "AB 12 34 56 C", "AB123456C",
		"GB82 WEST 1234 5698 7654 32", "NO9386011117947", "jane.doe@example.com", "1.2.3@4",
		`{"email":"jane@example.com","card":"4111 1111 1111 1111","ssn":"123-45-6789"}`,
		"x@y@example.com", "4111111111111111@example.com", "550e8400-e29b-41d4-a716-446655440000",
		"\xff4111111111111111\xfe", "+44 20 7946 0958", "123-45-6789 4111 1111 1111 1111",
	} {
		f.Add([]byte(s))
	}
	all := mustNew(f, Default()).Plan([]string{"v"}, []uint32{oidText}, nil)
	numbers := mustNew(f, Config{Values: []string{DetectorCard, DetectorUSSSN}}).Plan([]string{"v"}, []uint32{oidText}, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		values := [][]byte{bytes.Clone(in)}
		all.Row(values, nil)
		once := values[0]
		values[0] = bytes.Clone(once)
		all.Row(values, nil)
		if twice := values[0]; !maskedMore(twice, once) {
			t.Errorf("masking %q twice: got %q, then %q, want only more '*'", in, once, twice)
		}

		var spans [][2]int
		eachCard(in, func(s, e int) {
			if e <= s || e > len(in) || len(spans) > 0 && s < spans[len(spans)-1][0] {
				t.Fatalf("eachCard(%q): got [%d, %d) after %v", in, s, e, spans)
			}
			spans = append(spans, [2]int{s, e})
		})
		for i := 0; ; {
			s, e := nextSSN(in, i)
			if s < 0 {
				break
			}
			if s < i || e != s+ssnLen || e > len(in) {
				t.Fatalf("nextSSN(%q, %d): got [%d, %d)", in, i, s, e)
			}
			spans = append(spans, [2]int{s, e})
			i = e
		}
		values[0] = bytes.Clone(in)
		numbers.Row(values, nil)
		out := values[0]
		if len(out) != len(in) {
			t.Fatalf("masking numbers in %q: got length %d, want %d", in, len(out), len(in))
		}
		for _, sp := range spans {
			if got, want := digitsOf(out[sp[0]:sp[1]]), lastDigits(in[sp[0]:sp[1]], 4); len(got) > len(want) {
				t.Errorf("masking %q: got %q at [%d, %d), want at most digits %q left", in, out[sp[0]:sp[1]], sp[0], sp[1], want)
			}
		}
	})
}

// maskedMore reports whether b is a with zero or more bytes replaced by
// '*'.
func maskedMore(b, a []byte) bool {
	if len(b) != len(a) {
		return false
	}
	for i := range b {
		if b[i] != a[i] && b[i] != '*' {
			return false
		}
	}
	return true
}

// digitsOf returns the digits of b.
func digitsOf(b []byte) []byte {
	var d []byte
	for _, c := range b {
		if isDigit(c) {
			d = append(d, c)
		}
	}
	return d
}

// lastDigits returns the last n digits of b.
func lastDigits(b []byte, n int) []byte {
	d := digitsOf(b)
	return d[max(0, len(d)-n):]
}
