package masking

import "bytes"

// ssnDetector finds US Social Security numbers written AAA-GG-SSSS and
// masks all digits but the last four: "***-**-6789".
var ssnDetector = detector{
	name: DetectorUSSSN,
	want: wantSSN,
	apply: func(v []byte) ([]byte, int) {
		return v, maskEach(v, nextSSN, maskDigitsKeepLast4)
	},
}

// ssnLen is the length of "AAA-GG-SSSS".
const ssnLen = 11

// nextSSN returns the bounds of the first SSN in v at or after i: three,
// two and four digits joined by dashes, standing on their own (not inside
// a longer number such as "1-800-123-45-6789" or "123-45-6789-01"), with
// an area number other than 000, 666 and 900-999, a group other than 00
// and a serial other than 0000, the numbers the SSA never issues.
func nextSSN(v []byte, i int) (int, int) {
	for i+ssnLen <= len(v) {
		h := bytes.IndexByte(v[i+3:], '-')
		if h < 0 {
			return -1, -1
		}
		s := i + h // the candidate's start, three bytes before the dash
		if s+ssnLen > len(v) {
			return -1, -1
		}
		if ssnAt(v, s) {
			return s, s + ssnLen
		}
		i = s + 1
	}
	return -1, -1
}

// ssnAt reports whether v[s:s+ssnLen] is an SSN standing on its own.
func ssnAt(v []byte, s int) bool {
	m := v[s : s+ssnLen]
	for k, c := range m {
		if k == 3 || k == 6 {
			if c != '-' {
				return false
			}
		} else if !isDigit(c) {
			return false
		}
	}
	if joinedLeft(v, s) || joinedRight(v, s+ssnLen) {
		return false
	}
	area := digitsValue(m[0:3])
	return area != 0 && area != 666 && area < 900 && digitsValue(m[4:6]) != 0 && digitsValue(m[7:11]) != 0
}

// digitsValue returns the number the digits b spell.
func digitsValue(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}
