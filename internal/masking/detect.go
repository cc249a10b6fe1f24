package masking

// A detector finds one kind of sensitive value inside a textual value
// and masks it. It is only run on values whose profile says they could
// hold one (see profile), so the scanners can afford to be thorough.
type detector struct {
	name string
	want uint8 // the profile bit that gates this detector
	// apply masks every match in v and returns the result, which is v
	// itself, masked in place, unless the masked form of a match has a
	// different length, and the number of matches.
	apply func(v []byte) ([]byte, int)
}

// maskEach masks in place, with mask, every match in v that next finds
// (next returns the bounds of the first match at or after i, or -1, -1)
// and returns the number of matches.
func maskEach(v []byte, next func(v []byte, i int) (int, int), mask func(m []byte)) int {
	n := 0
	for i := 0; ; n++ {
		s, e := next(v, i)
		if s < 0 {
			return n
		}
		mask(v[s:e])
		i = e
	}
}

// replaceEach returns v with every match that next finds replaced by what
// replace appends for it, and the number of matches. It allocates the new
// value at the first match; without one it returns v.
func replaceEach(v []byte, next func(v []byte, i int) (int, int), replace func(dst, m []byte) []byte) ([]byte, int) {
	var out []byte
	n, last := 0, 0
	for i := 0; ; n++ {
		s, e := next(v, i)
		if s < 0 {
			break
		}
		if out == nil {
			out = make([]byte, 0, len(v)+16)
		}
		out = append(out, v[last:s]...)
		out = replace(out, v[s:e])
		last, i = e, e
	}
	if out == nil {
		return v, 0
	}
	return append(out, v[last:]...), n
}

// profileCounts maps each byte to what it adds to the four 16-bit
// counters profile keeps in one uint64: digits, capitals, '@' and '-'.
var profileCounts = func() (t [256]uint64) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1 << 0
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1 << 16
	}
	t['@'] = 1 << 32
	t['-'] = 1 << 48
	return t
}()

// profileChunk is how many bytes profile counts before a 16-bit counter
// could overflow.
const profileChunk = 1<<16 - 1

// Profile bits: which detectors a value could hold a match for.
const (
	wantEmail uint8 = 1 << iota
	wantCard
	wantSSN
	wantNINO
	wantIBAN
)

// What a value must contain for a detector to have a chance.
const (
	minCardDigits = 13 // the shortest card number
	maxCardDigits = 19 // the longest card number
	ssnDigits     = 9  // AAA-GG-SSSS
	ninoDigits    = 6  // AB123456C
	ninoUpper     = 3
	minIBANLen    = 15 // Norway's, the shortest in the registry
	minIBANDigits = 4  // the check digits and at least two in every BBAN
)

// profile returns the detectors that could match in v, from one pass
// that counts its digits, capitals, '@' and '-': one table load and one
// addition a byte, so a value no detector could match costs about half a
// nanosecond a byte and no scanner runs on it.
func profile(v []byte) uint8 {
	n := len(v)
	var digits, upper, at, dash int
	for len(v) > 0 {
		chunk := v[:min(len(v), profileChunk)]
		v = v[len(chunk):]
		// Four sums, so that the additions need not wait on each other.
		var sum, s1, s2, s3 uint64
		for len(chunk) >= 4 {
			sum += profileCounts[chunk[0]]
			s1 += profileCounts[chunk[1]]
			s2 += profileCounts[chunk[2]]
			s3 += profileCounts[chunk[3]]
			chunk = chunk[4:]
		}
		for _, c := range chunk {
			sum += profileCounts[c]
		}
		sum += s1 + s2 + s3
		digits += int(sum & 0xffff)
		upper += int(sum >> 16 & 0xffff)
		at += int(sum >> 32 & 0xffff)
		dash += int(sum >> 48)
	}
	var want uint8
	if at > 0 {
		want |= wantEmail
	}
	if digits >= minCardDigits {
		want |= wantCard
	}
	if digits >= ssnDigits && dash >= 2 {
		want |= wantSSN
	}
	if digits >= ninoDigits && upper >= ninoUpper {
		want |= wantNINO
	}
	if n >= minIBANLen && digits >= minIBANDigits && upper >= 2 {
		want |= wantIBAN
	}
	return want
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || 'a' <= c && c <= 'z' }

// isWord reports whether c continues an identifier or a number.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

// joinedLeft reports whether the token starting at v[i] is part of a
// longer token, so it is not a number of its own: it follows a letter,
// digit or '_', a '+' (a phone number's country code), a '-' that
// follows one ("ORD-4111…", "1-800-…"), or a '.' after a digit (a
// decimal or a version).
func joinedLeft(v []byte, i int) bool {
	if i == 0 {
		return false
	}
	switch c := v[i-1]; {
	case isWord(c), c == '+':
		return true
	case c == '-':
		return i >= 2 && isAlnum(v[i-2])
	case c == '.':
		return i >= 2 && isDigit(v[i-2])
	}
	return false
}

// joinedRight reports whether the token ending before v[i] continues:
// into a letter, digit or '_', a '-' that joins another alphanumeric
// part, or a '.' and a digit (a decimal).
func joinedRight(v []byte, i int) bool {
	if i >= len(v) {
		return false
	}
	switch c := v[i]; {
	case isWord(c):
		return true
	case c == '-':
		return i+1 < len(v) && isAlnum(v[i+1])
	case c == '.':
		return i+1 < len(v) && isDigit(v[i+1])
	}
	return false
}

// keptDigits is how many of its last digits a masked card number or SSN
// shows.
const keptDigits = 4

// maskDigitsKeepLast4 replaces every digit of m but the last four with
// '*', keeping separators, as card numbers and SSNs are shown.
func maskDigitsKeepLast4(m []byte) {
	maskDigits(m[:lastDigitsStart(m, keptDigits)])
}

// lastDigitsStart returns the index in m of the first of its last n
// digits, or 0 if it has no more than n.
func lastDigitsStart(m []byte, n int) int {
	for i := len(m) - 1; i >= 0; i-- {
		if isDigit(m[i]) {
			if n--; n == 0 {
				return i
			}
		}
	}
	return 0
}

// maskDigits replaces every digit of m with '*'.
func maskDigits(m []byte) {
	for i, c := range m {
		if isDigit(c) {
			m[i] = '*'
		}
	}
}
