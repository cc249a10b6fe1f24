package breakglass

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// secretBytes is the entropy of a secret: 160 bits from crypto/rand, well
// above the 128 bits that make guessing hopeless even without the rate
// limits and the lockout.
const secretBytes = 20

// secretGroup is the length of the dash-separated groups a secret is
// printed in, so that a person can read it out and type it.
const secretGroup = 4

// secretEncoding is RFC 4648 base32 (A–Z, 2–7): no lower case, no 0, 1, 8
// or 9 to confuse with O, I and B.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newSecret returns a fresh secret in its printed form, e.g.
// "ABCD-EFGH-…" (8 groups of 4).
func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("breakglass: secret: %w", err)
	}
	s := secretEncoding.EncodeToString(b)
	groups := make([]string, 0, len(s)/secretGroup)
	for i := 0; i < len(s); i += secretGroup {
		groups = append(groups, s[i:i+secretGroup])
	}
	return strings.Join(groups, "-"), nil
}

// errMalformedSecret is a presented secret that is not the form Vigil
// prints. The caller treats it as a wrong secret.
var errMalformedSecret = errors.New("breakglass: malformed secret")

// parseSecret returns the secret's bytes from what a person typed:
// case, dashes and spaces do not matter, and the digits 0, 1 and 8 are
// read as the letters O, I and B they are mistaken for.
func parseSecret(s string) ([]byte, error) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch r {
		case '-', ' ', '\t':
			continue
		case '0':
			r = 'O'
		case '1':
			r = 'I'
		case '8':
			r = 'B'
		}
		b.WriteRune(r)
	}
	raw, err := secretEncoding.DecodeString(b.String())
	if err != nil || len(raw) != secretBytes {
		return nil, errMalformedSecret
	}
	return raw, nil
}

// Params are Argon2id parameters. They are stored with each hash, so they
// can be raised later without invalidating the secrets already issued.
type Params struct {
	// Time is the number of passes over the memory.
	Time uint32
	// MemoryKiB is the memory used, in KiB.
	MemoryKiB uint32
	// Threads is the degree of parallelism.
	Threads uint8
}

// DefaultParams are the Argon2id parameters for new secrets: 3 passes over
// 64 MiB with 2 lanes, about 100 ms on a server core. That is RFC 9106's
// second recommended option (t=3, m=64 MiB) with fewer lanes, so a
// two-core machine is not monopolised. The secrets have 160 bits of
// entropy, so the hash guards against a stolen database rather than
// against guessing; the work factor is defence in depth.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Limits on parameters read back from the database, so a tampered row
// cannot make a verification allocate or run without bound.
const (
	maxTime      = 16
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxThreads   = 16
	saltBytes    = 16
	keyBytes     = 32
)

func (p Params) validate() error {
	if p.Time < 1 || p.Time > maxTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB || p.Threads < 1 || p.Threads > maxThreads {
		return fmt.Errorf("breakglass: argon2id parameters t=%d m=%d p=%d out of range", p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// hashSecret hashes raw with Argon2id under p and a fresh salt, in the PHC
// string format: $argon2id$v=19$m=65536,t=3,p=2$SALT$HASH.
func hashSecret(raw []byte, p Params) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("breakglass: salt: %w", err)
	}
	key := argon2.IDKey(raw, salt, p.Time, p.MemoryKiB, p.Threads, keyBytes)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// phc is a parsed Argon2id hash.
type phc struct {
	p         Params
	salt, key []byte
}

// parseHash parses what hashSecret writes, strictly.
func parseHash(s string) (phc, error) {
	var h phc
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return h, errors.New("breakglass: stored hash is not an argon2id v19 PHC string")
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.p.MemoryKiB, &h.p.Time, &threads); err != nil || threads > maxThreads {
		return h, errors.New("breakglass: stored hash has unreadable parameters")
	}
	h.p.Threads = uint8(threads)
	if err := h.p.validate(); err != nil {
		return h, err
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return h, errors.New("breakglass: stored hash has a bad salt")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return h, errors.New("breakglass: stored hash has a bad key")
	}
	return h, nil
}

// matches reports whether raw hashes to h, comparing in constant time.
func (h phc) matches(raw []byte) bool {
	key := argon2.IDKey(raw, h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}
