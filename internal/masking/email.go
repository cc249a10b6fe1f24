package masking

import "bytes"

// emailDetector finds e-mail addresses and keeps the first character of
// the local part and the whole domain: "jane.doe@example.com" becomes
// "j*******@example.com". The local part always becomes eight characters,
// so its length is not revealed.
var emailDetector = detector{
	name: DetectorEmail,
	want: wantEmail,
	apply: func(v []byte) ([]byte, int) {
		return replaceEach(v, nextEmail, replaceEmail)
	},
}

// emailLocalStars replaces all but the first character of a local part.
const emailLocalStars = "*******"

// emailLocal marks the bytes an e-mail local part is made of: RFC 5322's
// atext and '.', without the characters that more often delimit an
// address in text than belong to one ("'", "/", "=", "`", "{", "|", "}").
var emailLocal = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = isAlnum(byte(c))
	}
	for _, c := range []byte(".!#$%&*+-?^_~") {
		t[c] = true
	}
	return t
}()

// nextEmail returns the bounds of the first address in v at or after i:
// the longest local part before an '@' (not starting with '.') and a
// domain of two or more labels ending in an alphabetic top-level domain.
// "1.2.3@4", "user@localhost" and "root@10.0.0.1" are not addresses.
func nextEmail(v []byte, i int) (int, int) {
	for i < len(v) {
		at := bytes.IndexByte(v[i:], '@')
		if at < 0 {
			return -1, -1
		}
		at += i
		s := at
		for s > i && emailLocal[v[s-1]] {
			s--
		}
		for s < at && v[s] == '.' {
			s++
		}
		if s < at {
			if e := emailDomainEnd(v, at+1); e > 0 {
				return s, e
			}
		}
		i = at + 1
	}
	return -1, -1
}

// emailDomainEnd returns the end of the domain starting at v[j], or -1
// if there is no valid one. A '.' or '-' right after the domain ends a
// sentence or a phrase, not the domain.
func emailDomainEnd(v []byte, j int) int {
	e := j
	for e < len(v) && (isAlnum(v[e]) || v[e] == '-' || v[e] == '.') {
		e++
	}
	for e > j && (v[e-1] == '.' || v[e-1] == '-') {
		e--
	}
	labels, start := 0, j
	for k := j; k <= e; k++ {
		if k < e && v[k] != '.' {
			continue
		}
		if k == start || v[start] == '-' || v[k-1] == '-' {
			return -1 // an empty label, or one starting or ending with '-'
		}
		labels++
		if k < e {
			start = k + 1
		}
	}
	if labels < 2 || e-start < 2 {
		return -1
	}
	for _, c := range v[start:e] {
		if isDigit(c) || c == '-' {
			return -1 // top-level domains are letters
		}
	}
	return e
}

// replaceEmail appends the masked form of the address m to dst.
func replaceEmail(dst, m []byte) []byte {
	at := bytes.IndexByte(m, '@') // the local part has none
	dst = append(dst, m[0])
	dst = append(dst, emailLocalStars...)
	return append(dst, m[at:]...)
}
