package masking

// ibanDetector finds IBANs and keeps the country code and the last four
// characters, keeping spaces: "GB82 WEST 1234 5698 7654 32" becomes
// "GB** **** **** **** **54 32".
var ibanDetector = detector{
	name: DetectorIBAN,
	want: wantIBAN,
	apply: func(v []byte) ([]byte, int) {
		return v, maskEach(v, nextIBAN, maskIBAN)
	},
}

// ibanLengths are the IBAN lengths of the countries in the SWIFT IBAN
// registry, as "CCnn" entries. A country that joins the registry later
// is not detected until it is added here.
const ibanLengths = "" +
	"AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 " +
	"CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 " +
	"GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 " +
	"KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 " +
	"MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 " +
	"RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 " +
	"UA29 VA22 VG24 XK20 YE30"

// ibanLength maps a country code, as (first-'A')*26 + second-'A', to the
// length of its IBANs, or 0 for a country without IBANs.
var ibanLength = func() (t [26 * 26]uint8) {
	for i := 0; i+4 <= len(ibanLengths); i += 5 {
		e := ibanLengths[i : i+4]
		t[int(e[0]-'A')*26+int(e[1]-'A')] = uint8(digitsValue([]byte(e[2:])))
	}
	return t
}()

// nextIBAN returns the bounds of the first IBAN in v at or after i: a
// registry country code in capitals, check digits 02 to 98 and the
// country's number of capitals and digits in all, either solid or in
// groups of four separated by single spaces, standing on its own, whose
// ISO 7064 mod-97 checksum is 1.
func nextIBAN(v []byte, i int) (int, int) {
	for ; i+minIBANLen <= len(v); i++ {
		if isUpper(v[i]) && isUpper(v[i+1]) && isDigit(v[i+2]) && isDigit(v[i+3]) {
			if e := ibanAt(v, i); e > 0 {
				return i, e
			}
		}
	}
	return -1, -1
}

// ibanAt returns the end of the IBAN at v[s], or -1. v[s:s+4] is two
// capitals and two digits.
func ibanAt(v []byte, s int) int {
	n := int(ibanLength[int(v[s]-'A')*26+int(v[s+1]-'A')])
	if n == 0 || joinedLeft(v, s) {
		return -1
	}
	if check := digitsValue(v[s+2 : s+4]); check < 2 || check > 98 {
		return -1
	}
	spaced := s+4 < len(v) && v[s+4] == ' '
	j := s
	for k := 0; k < n; k++ {
		if spaced && k > 0 && k%4 == 0 {
			if j >= len(v) || v[j] != ' ' {
				return -1
			}
			j++
		}
		if j >= len(v) || !isUpper(v[j]) && !isDigit(v[j]) {
			return -1
		}
		j++
	}
	if joinedRight(v, j) || ibanMod97(v[s:j]) != 1 {
		return -1
	}
	return j
}

// ibanMod97 returns the ISO 7064 mod-97 remainder of the IBAN b (spaces
// are skipped): its first four characters moved to the end, each letter
// read as two digits (A is 10, Z is 35).
func ibanMod97(b []byte) int {
	r := 0
	for _, c := range b[4:] {
		r = mod97Add(r, c)
	}
	for _, c := range b[:4] {
		r = mod97Add(r, c)
	}
	return r
}

// mod97Add returns the remainder r extended by the character c: a digit
// is one decimal digit, a capital two, anything else nothing.
func mod97Add(r int, c byte) int {
	switch {
	case isDigit(c):
		return (r*10 + int(c-'0')) % 97
	case isUpper(c):
		return (r*100 + int(c-'A') + 10) % 97
	}
	return r
}

// maskIBAN masks every character of m but spaces, the country code and
// the last four characters.
func maskIBAN(m []byte) {
	keep := 4
	for i := len(m) - 1; i >= 2; i-- {
		switch {
		case m[i] == ' ':
		case keep > 0:
			keep--
		default:
			m[i] = '*'
		}
	}
}
