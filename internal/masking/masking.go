// Package masking owns data masking for the PostgreSQL gateway: the
// configuration of what to mask (column name patterns and built-in value
// detectors for e-mail addresses, payment card numbers, US Social
// Security numbers, UK National Insurance numbers and IBANs), and the
// per-result plan that masks the values of each DataRow before it reaches
// the client.
//
// It does not parse or write the wire protocol, decide which targets or
// users get masking, or record anything: the gateway hands it a result's
// column names, type OIDs and format codes once (Masker.Plan) and then
// each row's values (Plan.Row), and reports the counts it returns.
//
// Masking runs on every row of every result, so the common case is kept
// close to free: a result whose columns can't be masked gets an inactive
// Plan and is passed through untouched, and a textual value is first
// classified in one pass over its bytes (digits, capitals, '@', '-'), so a
// detector's scanner runs only on values that could hold what it detects.
// Detectors are hand-written scanners, not regular expressions, with the
// checksums (Luhn, ISO 7064 mod 97) and validity rules as code. Masked
// forms mostly keep the value's length and are written in place; only an
// e-mail address (whose local part becomes eight characters) and a value
// masked whole get a new slice.
//
// Masking is a safety net for honest mistakes, not access control: column
// rules look at result column names, which a user chooses with AS, and at
// the table columns the gateway says they read (Masker.PlanSources), which
// computed values, casts and set operations have none of; the detectors recognise the usual
// spellings of each kind of number, not every way to encode one.
package masking

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Names of the built-in value detectors, as used in Config.Values and as
// keys of the counts Plan.Row returns.
const (
	// DetectorEmail finds e-mail addresses: local@domain.tld, kept as
	// the first character of the local part and the whole domain.
	DetectorEmail = "email"
	// DetectorCard finds payment card numbers: 13 to 19 digits, optionally
	// in groups separated by single spaces or single dashes, with a valid
	// Luhn checksum. All digits but the last four are masked.
	DetectorCard = "card"
	// DetectorUSSSN finds US Social Security numbers written AAA-GG-SSSS
	// that obey the SSA's rules. All digits but the last four are masked.
	DetectorUSSSN = "us-ssn"
	// DetectorUKNINO finds UK National Insurance numbers (AB123456C, with
	// or without spaces) that obey HMRC's rules. All but the final letter
	// is masked.
	DetectorUKNINO = "uk-nino"
	// DetectorIBAN finds IBANs of the countries in the SWIFT IBAN registry,
	// electronic (no spaces) or printed (groups of four), with a valid
	// ISO 7064 mod-97 checksum. All but the country code and the last four
	// characters are masked.
	DetectorIBAN = "iban"
)

// ColumnCountPrefix prefixes the key under which Plan.Row counts values
// masked because of their column's name: "column:" + the column name.
const ColumnCountPrefix = "column:"

// Config says what to mask. The zero Config masks nothing; Default
// returns the recommended settings.
type Config struct {
	// Columns are patterns for the names of result columns whose whole
	// value is masked: path.Match syntax, matched case-insensitively
	// against the column name ("*password*", "email", "ssn"). A "/" in a
	// column name is an ordinary character. Nil masks no column by name.
	Columns []string `yaml:"columns" json:"columns"`
	// Values names the built-in value detectors (DetectorEmail and the
	// other Detector constants) applied inside the textual values of every
	// column. Nil applies none.
	Values []string `yaml:"values" json:"values"`
}

// Default returns the recommended configuration: the columns that usually
// hold passwords, secrets, tokens, SSNs and card data, and every value
// detector. Each call returns new slices.
func Default() Config {
	return Config{
		Columns: []string{
			"*password*", "*passwd*", "*secret*", "*api_key*", "*apikey*", "*token*",
			"ssn", "*_ssn", "card_number", "*card_no*", "cvv", "*cvc*",
		},
		Values: []string{DetectorEmail, DetectorCard, DetectorUSSSN, DetectorUKNINO, DetectorIBAN},
	}
}

// Validate reports every malformed column pattern and unknown detector
// name in c, or nil if c is usable.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.Columns {
		if p == "" {
			errs = append(errs, errors.New("masking: column pattern is empty"))
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("masking: column pattern %q: %w", p, err))
		}
	}
	for _, v := range c.Values {
		if !knownDetector(v) {
			errs = append(errs, fmt.Errorf("masking: unknown value detector %q (known: %s)", v, knownDetectors()))
		}
	}
	return errors.Join(errs...)
}

// knownDetector reports whether name names a built-in detector.
func knownDetector(name string) bool {
	for _, d := range detectors {
		if d.name == name {
			return true
		}
	}
	return false
}

// knownDetectors lists the built-in detectors' names for an error message.
func knownDetectors() string {
	names := make([]string, len(detectors))
	for i, d := range detectors {
		names[i] = d.name
	}
	return strings.Join(names, ", ")
}
