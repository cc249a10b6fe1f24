package token

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// Defaults for issuing.
const (
	DefaultTTL    = 15 * time.Minute
	DefaultMaxTTL = 8 * time.Hour
	// maxSubjectLen bounds "sub": long enough for any IdP subject.
	maxSubjectLen = 256
)

// IssuerSettings configures a Signer.
type IssuerSettings struct {
	Issuer     string
	Audience   string
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	Now        func() time.Time
}

// Signer issues Vigil's own tokens with the keyring's active key. It
// checks the form of a request (TTL cap, valid grants), not whether the
// caller may ask for it: that is policy's job.
type Signer struct {
	kr  *Keyring
	cfg IssuerSettings
}

// NewSigner returns a Signer; zero TTLs take the defaults.
func NewSigner(kr *Keyring, cfg IssuerSettings) *Signer {
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		cfg.DefaultTTL = cfg.MaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Signer{kr: kr, cfg: cfg}
}

// MaxTTL is the longest lifetime the signer grants.
func (s *Signer) MaxTTL() time.Duration { return s.cfg.MaxTTL }

// Request is what a new token should say.
type Request struct {
	Subject string   `json:"sub"`
	Grants  []Grant  `json:"grants,omitempty"`
	Src     []string `json:"src,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	// TTL is the lifetime; 0 means the default. More than MaxTTL is an
	// error, never silently shortened.
	TTL        time.Duration `json:"-"`
	BreakGlass bool          `json:"bg,omitempty"`
}

// Issue signs a token for req and returns it with its claims.
func (s *Signer) Issue(req Request) (string, *Claims, error) {
	if req.Subject == "" || len(req.Subject) > maxSubjectLen {
		return "", nil, fmt.Errorf("token: subject must be 1 to %d bytes", maxSubjectLen)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	if ttl < time.Second {
		return "", nil, fmt.Errorf("token: ttl %s is too short", ttl)
	}
	if ttl > s.cfg.MaxTTL {
		return "", nil, fmt.Errorf("token: ttl %s exceeds the maximum %s", ttl, s.cfg.MaxTTL)
	}
	for _, g := range req.Grants {
		if err := g.Validate(); err != nil {
			return "", nil, fmt.Errorf("token: %w", err)
		}
	}
	if _, err := parseSources(req.Src); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	key := s.kr.signer()
	if key == nil {
		return "", nil, errors.New("token: no active signing key")
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", nil, fmt.Errorf("token: jti: %w", err)
	}
	now := NewNumericDate(s.cfg.Now())
	c := &Claims{
		Issuer:    s.cfg.Issuer,
		Subject:   req.Subject,
		Audience:  Audience{s.cfg.Audience},
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: NumericDate{now.Add(ttl).Truncate(time.Second)},
		// Lower-case base32: no '-' that a command line would take for a
		// flag, no case a user could mistype.
		ID:         strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(jti)),
		Grants:     req.Grants,
		Src:        req.Src,
		Roles:      req.Roles,
		BreakGlass: req.BreakGlass,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", nil, fmt.Errorf("token: encode claims: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, key.kid); err != nil {
		return "", nil, fmt.Errorf("token: header: %w", err)
	}
	if err := hdr.Set(jws.TypeKey, TypVigil); err != nil {
		return "", nil, fmt.Errorf("token: header: %w", err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(allowedAlgs[key.alg], key.signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", nil, fmt.Errorf("token: sign: %w", err)
	}
	return string(signed), c, nil
}
