package masking

// ninoDetector finds UK National Insurance numbers and masks all but the
// final letter, keeping spaces: "AB 12 34 56 C" becomes "** ** ** ** C".
var ninoDetector = detector{
	name: DetectorUKNINO,
	want: wantNINO,
	apply: func(v []byte) ([]byte, int) {
		return v, maskEach(v, nextNINO, maskNINO)
	},
}

// ninoMinLen is the length of "AB123456C".
const ninoMinLen = 9

// nextNINO returns the bounds of the first National Insurance number in
// v at or after i: a two-letter prefix that HMRC allocates, six digits
// and a suffix A to D, in capitals, optionally with single spaces after
// the prefix, between the digit pairs and before the suffix, standing on
// its own.
func nextNINO(v []byte, i int) (int, int) {
	for ; i+ninoMinLen <= len(v); i++ {
		if isUpper(v[i]) {
			if e := ninoAt(v, i); e > 0 {
				return i, e
			}
		}
	}
	return -1, -1
}

// ninoAt returns the end of the National Insurance number at v[s], or -1.
func ninoAt(v []byte, s int) int {
	if joinedLeft(v, s) || !ninoPrefix(v[s], v[s+1]) {
		return -1
	}
	j := s + 2
	for pair := 0; pair < 3; pair++ {
		j = skipSpace(v, j)
		if j+2 > len(v) || !isDigit(v[j]) || !isDigit(v[j+1]) {
			return -1
		}
		j += 2
	}
	j = skipSpace(v, j)
	if j >= len(v) || v[j] < 'A' || v[j] > 'D' || joinedRight(v, j+1) {
		return -1
	}
	return j + 1
}

// skipSpace returns j+1 if v[j] is a space, else j.
func skipSpace(v []byte, j int) int {
	if j < len(v) && v[j] == ' ' {
		return j + 1
	}
	return j
}

// ninoPrefix reports whether a and b may start a National Insurance
// number under HMRC's rules: the first letter is not D, F, I, Q, U or V,
// the second not D, F, I, O, Q, U or V, and the pair is not one of BG,
// GB, KN, NK, NT, TN and ZZ, which are never allocated.
func ninoPrefix(a, b byte) bool {
	if !isUpper(a) || !isUpper(b) {
		return false
	}
	switch a {
	case 'D', 'F', 'I', 'Q', 'U', 'V':
		return false
	}
	switch b {
	case 'D', 'F', 'I', 'O', 'Q', 'U', 'V':
		return false
	}
	switch [2]byte{a, b} {
	case [2]byte{'B', 'G'}, [2]byte{'G', 'B'}, [2]byte{'K', 'N'}, [2]byte{'N', 'K'},
		[2]byte{'N', 'T'}, [2]byte{'T', 'N'}, [2]byte{'Z', 'Z'}:
		return false
	}
	return true
}

// maskNINO masks every character of m but spaces and the final letter.
func maskNINO(m []byte) {
	for i := range len(m) - 1 {
		if m[i] != ' ' {
			m[i] = '*'
		}
	}
}
