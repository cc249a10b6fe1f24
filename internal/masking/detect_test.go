package masking

import (
	"strings"
	"testing"
)

// detectorCase is one value scanned by a single detector: want is the
// masked value and n the number of matches (0 for a near miss, whose
// value must come back unchanged).
type detectorCase struct {
	name string
	in   string
	want string
	n    int
}

// runDetectorCases masks each case's value, as the only text column of a
// result, with a Masker that has only the named detector.
func runDetectorCases(t *testing.T, detector string, tests []detectorCase) {
	t.Helper()
	m := mustNew(t, Config{Values: []string{detector}})
	p := m.Plan([]string{"v"}, []uint32{oidText}, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if tc.n == 0 && want == "" {
				want = tc.in
			}
			values := [][]byte{[]byte(tc.in)}
			counts := map[string]int{}
			n := p.Row(values, counts)
			if got := string(values[0]); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if n != tc.n || counts[detector] != tc.n {
				t.Errorf("got %d masked (counts %v), want %d", n, counts, tc.n)
			}
		})
	}
}

func TestEmail(t *testing.T) {
	runDetectorCases(t, DetectorEmail, []detectorCase{
		{"plain", "jane.doe@example.com", "j*******@example.com", 1},
		{"short local part", "a@b.io", "a*******@b.io", 1},
		{"long local part", "first.middle.last+tag@mail.example.org", "f*******@mail.example.org", 1},
		{"exactly eight", "abcdefgh@example.com", "a*******@example.com", 1},
		{"in JSON", `{"email":"jane@corp.example.co.uk","n":1}`, `{"email":"j*******@corp.example.co.uk","n":1}`, 1},
		{"end of sentence", "Write to x.y@example.org.", "Write to x*******@example.org.", 1},
		{"two", "a@x.com, bob@y.org", "a*******@x.com, b*******@y.org", 2},
		{"angle brackets", "Ops <ops@example.net>", "Ops <o*******@example.net>", 1},
		{"mailto", "mailto:john@example.com", "mailto:j*******@example.com", 1},
		{"leading dots", "..john@example.com", "..j*******@example.com", 1},
		{"query string", "?to=john@example.com&x=1", "?to=j*******@example.com&x=1", 1},
		{"hyphenated domain", "x@my-host.example.com", "x*******@my-host.example.com", 1},
		{"not UTF-8", "\xff\xfeann@example.com\xff", "\xff\xfea*******@example.com\xff", 1},
		{"after a failed @", "x@y@example.com", "x@y*******@example.com", 1},
		{name: "version string", in: "1.2.3@4"},
		{name: "version with dots", in: "v1.2.3@4.5"},
		{name: "package spec", in: "lodash@4.17.21"},
		{name: "no domain dot", in: "user@localhost"},
		{name: "IP address", in: "root@10.0.0.1"},
		{name: "no local part", in: "@example.com"},
		{name: "no domain", in: "foo@"},
		{name: "one-letter TLD", in: "x@example.c"},
		{name: "label starts with dash", in: "a@-x.com"},
		{name: "empty label", in: "a@x..com"},
		{name: "mention", in: "thanks @alice"},
		{name: "no at", in: "jane.doe at example.com"},
	})
}

func TestCard(t *testing.T) {
	runDetectorCases(t, DetectorCard, []detectorCase{
		{"solid", "4111111111111111", "************1111", 1},
		{"spaces", "4111 1111 1111 1111", "**** **** **** 1111", 1},
		{"dashes", "4111-1111-1111-1111", "****-****-****-1111", 1},
		{"amex", "3782 822463 10005", "**** ****** *0005", 1},
		{"13 digits", "4222222222222", "*********2222", 1},
		{"19 digits", "6304000000000000000", "***************0000", 1},
		{"in a sentence", "card 5500000000000004, exp 12/27", "card ************0004, exp 12/27", 1},
		{"in JSON", `{"pan":"6011111111111117"}`, `{"pan":"************1117"}`, 1},
		{"two in a row", "4111111111111111 5500000000000004", "************1111 ************0004", 2},
		{"after a date", "2024-01-15 4111 1111 1111 1111", "2024-01-15 **** **** **** 1111", 1},
		{"after a number", "12 4111 1111 1111 1111", "12 **** **** **** 1111", 1},
		{"not UTF-8", "\xff4111111111111111\xfe", "\xff************1111\xfe", 1},
		{"CSV", "7,4111111111111111,x", "7,************1111,x", 1},
		{name: "Luhn-invalid", in: "4111111111111112"},
		{name: "Luhn-invalid spaced", in: "4111 1111 1111 1112"},
		{name: "Luhn-invalid 19 digits", in: "4111111111111111111"},
		{name: "12 digits", in: "411111111116"},
		{name: "20 digits", in: "41111111111111111113"},
		{name: "order number", in: "order 20240115000123"},
		{name: "zero-padded", in: "0000000000000000"},
		{name: "identifier prefix", in: "ORD-4111111111111111"},
		{name: "letters around", in: "INV4111111111111111X"},
		{name: "joined suffix", in: "4111111111111111-A"},
		{name: "phone country code", in: "+4111111111111111"},
		{name: "decimal", in: "4222222222222.50"},
		{name: "decimal fraction", in: "0.4222222222222"},
		{name: "mixed separators", in: "4111 1111-1111 1111"},
		{name: "double space", in: "4111  1111 1111 1111"},
		{name: "date", in: "2024-01-15"},
		{name: "ISO timestamp", in: "2024-01-15T10:30:00.123456Z"},
		{name: "timestamptz text", in: "2024-01-15 10:30:00.123456+00"},
		{name: "phone US", in: "+1 415 555 2671"},
		{name: "phone UK", in: "+44 20 7946 0958"},
		{name: "UUID", in: "550e8400-e29b-41d4-a716-446655440000"},
		{name: "all-digit UUID", in: "41111111-1111-1111-1111-111111111111"},
		{name: "dashed serial", in: "4111-1111-1111-1111-1111"},
	})
}

func TestUSSSN(t *testing.T) {
	runDetectorCases(t, DetectorUSSSN, []detectorCase{
		{"plain", "123-45-6789", "***-**-6789", 1},
		{"in a sentence", "SSN: 078-05-1120.", "SSN: ***-**-1120.", 1},
		{"in JSON", `{"ssn":"219-09-9999"}`, `{"ssn":"***-**-9999"}`, 1},
		{"two", "123-45-6789 and 234-56-7890", "***-**-6789 and ***-**-7890", 2},
		{"highest area", "899-99-9999", "***-**-9999", 1},
		{name: "area 000", in: "000-12-3456"},
		{name: "area 666", in: "666-12-3456"},
		{name: "area 900", in: "900-12-3456"},
		{name: "area 999", in: "999-12-3456"},
		{name: "group 00", in: "123-00-4567"},
		{name: "serial 0000", in: "123-45-0000"},
		{name: "no dashes", in: "123456789"},
		{name: "spaces", in: "123 45 6789"},
		{name: "date", in: "2024-01-15"},
		{name: "phone", in: "555-123-4567"},
		{name: "longer dashed number", in: "1-123-45-6789"},
		{name: "extension", in: "123-45-6789-01"},
		{name: "identifier prefix", in: "ID-123-45-6789"},
		{name: "too many digits", in: "123-45-67890"},
		{name: "four-digit area", in: "0123-45-6789"},
		{name: "decimal", in: "123-45-6789.5"},
	})
}

func TestUKNINO(t *testing.T) {
	runDetectorCases(t, DetectorUKNINO, []detectorCase{
		{"solid", "AB123456C", "********C", 1},
		{"spaced", "AB 12 34 56 C", "** ** ** ** C", 1},
		{"partly spaced", "AB 123456 D", "** ****** D", 1},
		{"in a sentence", "NI number: JG 10 37 55 A.", "NI number: ** ** ** ** A.", 1},
		{"in JSON", `{"nino":"CE123456D"}`, `{"nino":"********D"}`, 1},
		{name: "Q first", in: "QQ123456C"},
		{name: "D first", in: "DA123456C"},
		{name: "O second", in: "AO123456A"},
		{name: "V second", in: "AV123456A"},
		{name: "GB", in: "GB123456A"},
		{name: "ZZ", in: "ZZ123456A"},
		{name: "NT", in: "NT123456A"},
		{name: "suffix E", in: "AB123456E"},
		{name: "no suffix", in: "AB123456"},
		{name: "five digits", in: "AB12345C"},
		{name: "seven digits", in: "AB1234567C"},
		{name: "lower case", in: "ab123456c"},
		{name: "letter before", in: "XAB123456C"},
		{name: "letter after", in: "AB123456CD"},
		{name: "two spaces", in: "AB  123456C"},
		{name: "postcode and number", in: "SW1A 1AA 123456"},
	})
}

func TestIBAN(t *testing.T) {
	runDetectorCases(t, DetectorIBAN, []detectorCase{
		{"solid", "GB82WEST12345698765432", "GB****************5432", 1},
		{"printed", "GB82 WEST 1234 5698 7654 32", "GB** **** **** **** **54 32", 1},
		{"Germany", "DE89 3704 0044 0532 0130 00", "DE** **** **** **** **30 00", 1},
		{"shortest", "NO9386011117947", "NO*********7947", 1},
		{"letters in the tail", "pay FR14 2004 1010 0505 0001 3M02 606 today", "pay FR** **** **** **** **** ***2 606 today", 1},
		{"longest group count", "MT84 MALT 0110 0001 2345 MTLC AST0 01S", "MT** **** **** **** **** **** ***0 01S", 1},
		{"in JSON", `{"iban":"NL91ABNA0417164300"}`, `{"iban":"NL************4300"}`, 1},
		{"two", "BE68539007547034 BE68 5390 0754 7034", "BE**********7034 BE** **** **** 7034", 2},
		{name: "bad checksum", in: "GB82 WEST 1234 5698 7654 33"},
		{name: "too short", in: "GB82WEST1234569876543"},
		{name: "too long", in: "GB82WEST123456987654321"},
		{name: "unknown country", in: "XX82WEST12345698765432"},
		{name: "lower case", in: "gb82west12345698765432"},
		{name: "uneven spacing", in: "GB82 WEST1234 5698 7654 32"},
		{name: "letter before", in: "XGB82WEST12345698765432"},
		{name: "product code", in: "SKU DE12ABCD34EF56GH78IJ"},
	})
}

// TestDefaultDetectorsTogether masks a document that holds one of each
// kind with every detector on.
func TestDefaultDetectorsTogether(t *testing.T) {
	m := mustNew(t, Default())
	p := m.Plan([]string{"doc"}, []uint32{oidJSONB}, []int16{1})
	in := "\x01" + `{"email":"jane@example.com","card":"4111 1111 1111 1111","ssn":"123-45-6789",` +
		`"nino":"AB 12 34 56 C","iban":"DE89 3704 0044 0532 0130 00","note":"card 4111111111111111@example.com"}`
	want := "\x01" + `{"email":"j*******@example.com","card":"**** **** **** 1111","ssn":"***-**-6789",` +
		`"nino":"** ** ** ** C","iban":"DE** **** **** **** **30 00","note":"card 4*******@example.com"}`
	values := [][]byte{[]byte(in)}
	counts := map[string]int{}
	n := p.Row(values, counts)
	if got := string(values[0]); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	wantCounts := map[string]int{DetectorEmail: 2, DetectorCard: 1, DetectorUSSSN: 1, DetectorUKNINO: 1, DetectorIBAN: 1}
	if n != 6 || len(counts) != len(wantCounts) {
		t.Errorf("got %d masked, counts %v, want 6, %v", n, counts, wantCounts)
	}
	for k, v := range wantCounts {
		if counts[k] != v {
			t.Errorf("counts[%q]: got %d, want %d", k, counts[k], v)
		}
	}
}

func TestProfile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint8
	}{
		{"empty", "", 0},
		{"word", "active", 0},
		{"at", "a@b", wantEmail},
		{"12 digits", "123456789012", 0},
		{"13 digits", "1234567890123", wantCard},
		{"SSN shape", "123-45-6789", wantSSN},
		{"SSN digits, one dash", "123-456789", 0},
		{"NINO shape", "AB123456C", wantNINO},
		{"IBAN shape", "NO9386011117947", wantCard | wantIBAN},
		{"long", strings.Repeat("x", 2*profileChunk) + "AB" + strings.Repeat("1", profileChunk) + "-@-", wantEmail | wantCard | wantSSN | wantIBAN},
		{"counter overflow", strings.Repeat("-", 3*profileChunk+7), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := profile([]byte(tc.in)); got != tc.want {
				t.Errorf("got %05b, want %05b", got, tc.want)
			}
		})
	}
}
