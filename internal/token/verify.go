package token

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// Leeway is the default clock skew tolerated on exp, nbf and iat; MaxLeeway
// is the most VerifierConfig.Leeway may be (RFC 8725 asks for little).
const (
	Leeway    = 30 * time.Second
	MaxLeeway = 60 * time.Second
)

// MaxTokenSize is the largest token accepted; longer input is refused
// before any decoding.
const MaxTokenSize = 16 << 10

// TypVigil is the "typ" header of Vigil's own tokens (RFC 8725 §3.11).
const TypVigil = "vigil+jwt"

// Reason says why a verification failed. The set is closed so it can label
// metrics; Detail in VerifyError carries specifics.
type Reason string

// Verification outcomes.
const (
	ReasonOK             Reason = "ok"
	ReasonEmpty          Reason = "empty"
	ReasonOversized      Reason = "oversized"
	ReasonMalformed      Reason = "malformed"
	ReasonNonCanonical   Reason = "non_canonical_encoding"
	ReasonAlgNone        Reason = "alg_none"
	ReasonAlgHMAC        Reason = "alg_hmac"
	ReasonAlgNotAllowed  Reason = "alg_not_allowed"
	ReasonAlgKeyMismatch Reason = "alg_key_mismatch"
	ReasonKeyReference   Reason = "header_key_reference"
	ReasonCrit           Reason = "crit_unsupported"
	ReasonTyp            Reason = "bad_typ"
	ReasonMissingKID     Reason = "missing_kid"
	ReasonUnknownIssuer  Reason = "unknown_issuer"
	ReasonUnknownKID     Reason = "unknown_kid"
	ReasonBadSignature   Reason = "bad_signature"
	ReasonBadClaims      Reason = "bad_claims"
	ReasonMissingClaim   Reason = "missing_claim"
	ReasonAudience       Reason = "wrong_audience"
	ReasonExpired        Reason = "expired"
	ReasonNotYetValid    Reason = "not_yet_valid"
	ReasonIssuedInFuture Reason = "issued_in_future"
	ReasonLifetime       Reason = "lifetime_too_long"
	ReasonRevoked        Reason = "revoked"
	ReasonSource         Reason = "source_not_allowed"
)

// VerifyError is a token that failed a check. Callers show clients only a
// generic denial; Reason and Detail are for the operator and the audit log.
type VerifyError struct {
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string {
	if e.Detail == "" {
		return "token: " + string(e.Reason)
	}
	return "token: " + string(e.Reason) + ": " + e.Detail
}

func fail(r Reason, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Identity is a verified token.
type Identity struct {
	Claims Claims
	// Roles are Vigil's own "roles" claim, or for an external issuer the
	// values of its roles_claim.
	Roles []string
	// Admin reports whether the token administers Vigil.
	Admin bool
	// External reports whether a trusted external issuer signed it.
	External bool
	KID      string
	Alg      string
}

// Attempt is the record of one verification, for the audit log, metrics
// and the monitor. On failure, Issuer, Subject and JTI are what the token
// claimed, unverified. It never holds the token itself.
type Attempt struct {
	Time     time.Time
	Accepted bool
	Reason   Reason
	Detail   string
	Issuer   string
	Subject  string
	JTI      string
	KID      string
	Alg      string
	Source   string
	// Kind is "vigil" for Vigil's own issuer, "external" for a trusted
	// external issuer, "unknown" when the token named neither.
	Kind string
	// Cached reports that the signature check was served from the cache.
	Cached bool
	// SignatureValid reports that the signature was verified, so Issuer,
	// Subject, JTI and the facts below are the issuer's own claims even
	// when a later check (expiry, revocation, lifetime, source) refused
	// the token.
	SignatureValid bool
	// ExpiresAt and IssuedAt are the exp and iat claims once the
	// signature is valid and the claims decoded; zero otherwise, or when
	// the claim is absent.
	ExpiresAt time.Time
	IssuedAt  time.Time
	// NoExpiry reports a validly signed token without an exp claim (it is
	// refused as ReasonMissingClaim).
	NoExpiry bool
	// BreakGlass reports a Vigil token carrying the break-glass claim
	// (bg); external tokens never do.
	BreakGlass bool
}

// Observer is told of every verification. An error from it fails the
// verification closed: a verification that cannot be recorded does not
// grant access.
type Observer func(ctx context.Context, a *Attempt) error

// VerifierConfig configures NewVerifier.
type VerifierConfig struct {
	// Issuer and Audience of Vigil's own tokens.
	Issuer   string
	Audience string
	// MaxTTL caps the lifetime (exp - iat) of Vigil's own tokens.
	MaxTTL time.Duration
	// Keyring verifies Vigil's own tokens.
	Keyring *Keyring
	// Revocations is the deny list; nil means none (tests only).
	Revocations *Revocations
	// Issuers are the trusted external issuers.
	Issuers []*RemoteIssuer
	// Observe is called for every verification; nil records nothing.
	Observe Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheSize bounds the verified-signature cache; 0 disables it.
	CacheSize int
	// Leeway is the clock skew tolerated; nil means Leeway. At most
	// MaxLeeway.
	Leeway *time.Duration
}

// Verifier verifies Vigil's own tokens and those of trusted external
// issuers with one set of rules. It is safe for concurrent use.
type Verifier struct {
	cfg     VerifierConfig
	leeway  time.Duration
	issuers map[string]*RemoteIssuer
	cache   *verifyCache
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token: verifier needs an issuer and an audience")
	}
	if cfg.Keyring == nil {
		return nil, errors.New("token: verifier needs a keyring")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	leeway := Leeway
	if cfg.Leeway != nil {
		leeway = *cfg.Leeway
	}
	if leeway < 0 || leeway > MaxLeeway {
		return nil, fmt.Errorf("token: clock skew %s: want 0 to %s", leeway, MaxLeeway)
	}
	v := &Verifier{cfg: cfg, leeway: leeway, issuers: make(map[string]*RemoteIssuer)}
	for _, ri := range cfg.Issuers {
		if ri.cfg.Issuer == cfg.Issuer {
			return nil, fmt.Errorf("token: external issuer %q has the same name as Vigil's own issuer", ri.cfg.Issuer)
		}
		if _, dup := v.issuers[ri.cfg.Issuer]; dup {
			return nil, fmt.Errorf("token: issuer %q configured twice", ri.cfg.Issuer)
		}
		v.issuers[ri.cfg.Issuer] = ri
	}
	if cfg.CacheSize > 0 {
		v.cache = newVerifyCache(cfg.CacheSize)
	}
	return v, nil
}

// Verify checks raw, presented from source (the zero Addr when unknown),
// and returns its identity. Failures are *VerifyError; any other error
// means the verification could not be recorded. Either way access is
// denied. Every call is reported to the Observer.
func (v *Verifier) Verify(ctx context.Context, raw string, source netip.Addr) (*Identity, error) {
	a := &Attempt{Time: v.cfg.Now(), Kind: "unknown"}
	if source.IsValid() {
		a.Source = source.String()
	}
	id, err := v.verify(ctx, raw, source, a)
	if err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) {
			ve = &VerifyError{Reason: ReasonMalformed, Detail: err.Error()}
			err = ve
		}
		a.Reason, a.Detail = ve.Reason, ve.Detail
	} else {
		a.Accepted, a.Reason = true, ReasonOK
	}
	if v.cfg.Observe != nil {
		if oerr := v.cfg.Observe(ctx, a); oerr != nil {
			return nil, fmt.Errorf("token: record verification: %w", oerr)
		}
	}
	return id, err
}

// header is the JOSE header after the checks in parseHeader.
type header struct {
	alg, kid, typ string
}

func (v *Verifier) verify(ctx context.Context, raw string, source netip.Addr, a *Attempt) (*Identity, error) {
	if raw == "" {
		return nil, fail(ReasonEmpty, "no token")
	}
	if len(raw) > MaxTokenSize {
		return nil, fail(ReasonOversized, "%d bytes, limit %d", len(raw), MaxTokenSize)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fail(ReasonMalformed, "compact serialization has 3 parts, got %d", len(parts))
	}
	var cacheKey [32]byte
	if v.cache != nil {
		cacheKey = sha256.Sum256([]byte(raw))
		if e := v.cache.get(cacheKey); e != nil {
			a.Cached = true
			fillAttempt(a, &e.id)
			if err := v.stillValid(ctx, e); err != nil {
				return nil, err
			}
			a.SignatureValid = true
			if err := v.checkTime(&e.id.Claims, e.lifetime); err != nil {
				return nil, err
			}
			if err := v.checkUse(&e.id.Claims, source); err != nil {
				return nil, err
			}
			id := e.id
			return &id, nil
		}
	}

	// The header is judged first so that, for example, an unsigned
	// "alg":"none" token is recorded as such rather than as malformed.
	if err := canonicalB64(parts[0]); err != nil {
		return nil, fail(ReasonNonCanonical, "header: %v", err)
	}
	hdrJSON, _ := base64.RawURLEncoding.DecodeString(parts[0])
	hdr, err := parseHeader(hdrJSON)
	if hdr != nil {
		// Also on refusal: the alg or kid of a refused header is evidence.
		a.KID, a.Alg = hdr.kid, hdr.alg
	}
	if err != nil {
		return nil, err
	}
	for i, p := range parts[1:] {
		if err := canonicalB64(p); err != nil {
			return nil, fail(ReasonNonCanonical, "%s: %v", [2]string{"payload", "signature"}[i], err)
		}
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])

	members, err := decodeObject(payload)
	if err != nil {
		return nil, fail(ReasonMalformed, "payload: %v", err)
	}
	var iss string
	if m, ok := members["iss"]; ok {
		if err := json.Unmarshal(m, &iss); err != nil {
			return nil, fail(ReasonBadClaims, "iss is not a string")
		}
	}
	a.Issuer = iss
	// Claimed values for the record before the signature is checked.
	_ = json.Unmarshal(members["sub"], &a.Subject)
	_ = json.Unmarshal(members["jti"], &a.JTI)
	if iss == "" {
		return nil, fail(ReasonMissingClaim, "iss")
	}

	// The issuer named in the (still unverified) payload only selects
	// which trusted key set to look in; the signature then proves it.
	var key *verifyKey
	var remote *RemoteIssuer
	if iss == v.cfg.Issuer {
		a.Kind = "vigil"
		if !strings.EqualFold(hdr.typ, TypVigil) && !strings.EqualFold(hdr.typ, "application/"+TypVigil) {
			return nil, fail(ReasonTyp, "typ %q, want %q", hdr.typ, TypVigil)
		}
		key = v.cfg.Keyring.lookup(hdr.kid)
	} else if remote = v.issuers[iss]; remote != nil {
		a.Kind = "external"
		switch strings.ToLower(hdr.typ) {
		case "", "jwt", "at+jwt", "application/jwt", "application/at+jwt":
		default:
			return nil, fail(ReasonTyp, "typ %q not accepted from an external issuer", hdr.typ)
		}
		key = remote.lookup(ctx, hdr.kid)
	} else {
		return nil, fail(ReasonUnknownIssuer, "%q", iss)
	}
	if key == nil {
		return nil, fail(ReasonUnknownKID, "kid %q for issuer %q", hdr.kid, iss)
	}
	if key.alg != hdr.alg {
		return nil, fail(ReasonAlgKeyMismatch, "header alg %s, key %s is pinned to %s", hdr.alg, key.kid, key.alg)
	}
	if _, err := jws.VerifyCompactFast(key.pub, []byte(raw), allowedAlgs[key.alg]); err != nil {
		return nil, fail(ReasonBadSignature, "kid %q", hdr.kid)
	}
	a.SignatureValid = true

	// Signature good: now the claims mean something.
	claims, err := decodeClaims(members, remote == nil)
	if err != nil {
		if exp, ok := members["exp"]; !ok || string(exp) == "null" {
			a.NoExpiry = true
		}
		return nil, err
	}
	a.ExpiresAt, a.IssuedAt = claims.ExpiresAt.Time, claims.IssuedAt.Time
	a.BreakGlass = claims.BreakGlass && remote == nil
	lifetime := v.cfg.MaxTTL
	id := &Identity{Claims: *claims, KID: key.kid, Alg: key.alg, External: remote != nil}
	audience := v.cfg.Audience
	if remote != nil {
		lifetime = remote.cfg.MaxLifetime
		audience = remote.cfg.Audience
		roles, err := extractRoles(members, remote.cfg.RolesClaim)
		if err != nil {
			return nil, err
		}
		id.Roles = roles
		id.Claims.Grants, id.Claims.Roles, id.Claims.BreakGlass = nil, nil, false
		for _, r := range roles {
			if slices.Contains(remote.cfg.AdminRoles, r) {
				id.Admin = true
			}
		}
	} else {
		id.Roles = claims.Roles
		id.Admin = claims.HasRole(RoleAdmin)
	}
	if !slices.Contains(claims.Audience, audience) {
		return nil, fail(ReasonAudience, "aud %v does not include %q", []string(claims.Audience), audience)
	}
	if err := v.checkTime(claims, lifetime); err != nil {
		return nil, err
	}
	if err := v.checkUse(claims, source); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(cacheKey, &cacheEntry{id: *id, key: key, remote: remote, lifetime: lifetime}, v.cfg.Now())
	}
	return id, nil
}

// fillAttempt records a cached identity.
func fillAttempt(a *Attempt, id *Identity) {
	a.Issuer, a.Subject, a.JTI, a.KID, a.Alg, a.Kind = id.Claims.Issuer, id.Claims.Subject, id.Claims.ID, id.KID, id.Alg, "vigil"
	a.ExpiresAt, a.IssuedAt, a.BreakGlass = id.Claims.ExpiresAt.Time, id.Claims.IssuedAt.Time, id.Claims.BreakGlass
	if id.External {
		a.Kind = "external"
	}
}

// checkTime enforces exp, nbf, iat and the lifetime cap.
func (v *Verifier) checkTime(c *Claims, lifetime time.Duration) error {
	now := v.cfg.Now()
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return fail(ReasonExpired, "expired at %s", c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore.Time) {
		return fail(ReasonNotYetValid, "nbf %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !c.IssuedAt.IsZero() {
		if now.Add(v.leeway).Before(c.IssuedAt.Time) {
			return fail(ReasonIssuedInFuture, "iat %s", c.IssuedAt.UTC().Format(time.RFC3339))
		}
		if c.ExpiresAt.Sub(c.IssuedAt.Time) > lifetime {
			return fail(ReasonLifetime, "lifetime %s exceeds %s", c.ExpiresAt.Sub(c.IssuedAt.Time), lifetime)
		}
	}
	if c.ExpiresAt.Sub(now) > lifetime+v.leeway {
		return fail(ReasonLifetime, "expires in %s, more than %s", c.ExpiresAt.Sub(now).Round(time.Second), lifetime)
	}
	return nil
}

// checkUse enforces revocation and the token's source networks.
func (v *Verifier) checkUse(c *Claims, source netip.Addr) error {
	if c.ID != "" && v.cfg.Revocations.IsRevoked(c.Issuer, c.ID) {
		return fail(ReasonRevoked, "jti %q", c.ID)
	}
	if len(c.Src) > 0 {
		nets, err := parseSources(c.Src)
		if err != nil {
			return fail(ReasonBadClaims, "%v", err)
		}
		if !source.IsValid() || !sourceAllowed(nets, source) {
			return fail(ReasonSource, "source %s not in %v", source, c.Src)
		}
	}
	return nil
}

// stillValid re-checks a cached entry's key: a key retired past its
// publication, or replaced at the IdP, no longer verifies anything.
func (v *Verifier) stillValid(ctx context.Context, e *cacheEntry) error {
	var cur *verifyKey
	if e.remote == nil {
		cur = v.cfg.Keyring.lookup(e.key.kid)
	} else {
		cur = e.remote.current(e.key.kid)
	}
	if cur == nil || cur.alg != e.key.alg || !publicEqual(cur.pub, e.key.pub) {
		return fail(ReasonUnknownKID, "kid %q no longer published", e.key.kid)
	}
	return nil
}

func publicEqual(a, b any) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
