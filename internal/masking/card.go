package masking

// cardDetector finds payment card numbers and masks every digit but the
// last four, keeping separators: "4111-1111-1111-1111" becomes
// "****-****-****-1111".
var cardDetector = detector{
	name:  DetectorCard,
	want:  wantCard,
	apply: maskCards,
}

// maskCards masks every card number in v in place and returns v and the
// number of card numbers. Card numbers that overlap ("1234 4111 1111
// 1111 1111" holds two if both pass the Luhn check, and only one is
// real) are all masked: a digit stays only if it is among the last four
// of every card number that holds it.
func maskCards(v []byte) ([]byte, int) {
	// [from, to) holds the digits to mask so far. They are masked once a
	// card number starts at or after to: eachCard has then read all it
	// needs of them.
	n, from, to := 0, 0, 0
	eachCard(v, func(s, e int) {
		n++
		if s >= to {
			maskDigits(v[from:to])
			from = s
		}
		to = max(to, s+lastDigitsStart(v[s:e], keptDigits))
	})
	maskDigits(v[from:to])
	return v, n
}

// eachCard calls fn with the bounds of every card number in v, in the
// order of their starts. Once it has called fn(s, e) it reads no digit
// before s, except the last digit of a run, which no card number masks,
// to see whether the next run is a decimal fraction. So fn may mask
// digits before s in place.
//
// A card number is 13 to 19 digits, written solid or in groups separated
// by single spaces or by single dashes (one kind throughout), not
// starting with 0 (no issuer's numbers do; zero-padded order numbers do),
// that passes the Luhn check. It must stand on its own: not part of an
// identifier ("ORD-4111…"), a decimal, or a phone number ("+44 …").
//
// Digits separated by single spaces and dashes are taken as one run
// first. A card number can start at the run's start or after a space in
// it and end at its end or before a space, so "2024-01-15 4111 1111 1111
// 1111" and two numbers separated by a space are found; of those starting
// at one place the longest counts. A run joined by dashes alone is all
// one number, so a UUID or a dashed serial is never cut into a "card".
func eachCard(v []byte, fn func(s, e int)) {
	for i := 0; i < len(v); {
		p := indexDigit(v, i)
		if p < 0 {
			return
		}
		q, digits := digitRunEnd(v, p)
		if digits < minCardDigits {
			i = q
			continue
		}
		joinedL, joinedR := joinedLeft(v, p), joinedRight(v, q)
		for g := p; g < q; g = nextSpaceGroup(v, g, q) {
			if g == p && joinedL {
				continue
			}
			if e := cardAt(v, g, q, joinedR); e > 0 {
				fn(g, e)
			}
		}
		i = q
	}
}

// indexDigit returns the index of the first digit in v at or after i, or
// -1.
func indexDigit(v []byte, i int) int {
	for ; i < len(v); i++ {
		if isDigit(v[i]) {
			return i
		}
	}
	return -1
}

// digitRunEnd returns the end of the run of digits starting at v[p], in
// which a single space or dash between two digits also counts, and the
// number of digits in it.
func digitRunEnd(v []byte, p int) (q, digits int) {
	for q = p; q < len(v); q++ {
		switch c := v[q]; {
		case isDigit(c):
			digits++
		case (c == ' ' || c == '-') && q+1 < len(v) && isDigit(v[q+1]):
		default:
			return q, digits
		}
	}
	return q, digits
}

// nextSpaceGroup returns the start of the first group after g in the run
// ending at q that follows a space, or q.
func nextSpaceGroup(v []byte, g, q int) int {
	for k := g; k < q; k++ {
		if v[k] == ' ' {
			return k + 1
		}
	}
	return q
}

// cardAt returns the end of the longest card number starting at v[g] in
// the run ending at q, or -1. joinedR says whether the run's end is part
// of a longer token, so no card can end there.
func cardAt(v []byte, g, q int, joinedR bool) int {
	if v[g] == '0' {
		return -1
	}
	best, digits := -1, 0
	var sep byte
	for j := g; ; j++ {
		for j < q && isDigit(v[j]) {
			digits++
			j++
		}
		if digits > maxCardDigits {
			break
		}
		if digits >= minCardDigits && (j == q && !joinedR || j < q && v[j] == ' ') && luhn(v[g:j]) {
			best = j
		}
		if j == q {
			break
		}
		if sep == 0 {
			sep = v[j]
		} else if v[j] != sep {
			break
		}
	}
	return best
}

// luhn reports whether the digits of b (other bytes are skipped) pass the
// Luhn check: doubling every second digit from the right, the digit sum
// is a multiple of 10.
func luhn(b []byte) bool {
	sum, double := 0, false
	for i := len(b) - 1; i >= 0; i-- {
		if !isDigit(b[i]) {
			continue
		}
		d := int(b[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
