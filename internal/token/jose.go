package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fastjson"
)

// parseHeader applies every header rule and returns alg, kid and typ. A
// header refused by a rule (rather than undecodable) is returned with the
// error, so the attempt records the alg and kid it claimed.
func parseHeader(b []byte) (*header, error) {
	m, err := decodeObject(b)
	if err != nil {
		return nil, fail(ReasonMalformed, "header: %v", err)
	}
	h := &header{}
	var refused *VerifyError
	for name, raw := range m {
		switch name {
		case "alg", "kid", "typ":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, fail(ReasonMalformed, "header %s is not a string", name)
			}
			switch name {
			case "alg":
				h.alg = s
			case "kid":
				h.kid = s
			case "typ":
				h.typ = s
			}
		case "jku", "x5u", "x5c", "jwk":
			// Keys come only from configuration; a token naming or
			// embedding its own key is an attack, not a hint.
			refused = fail(ReasonKeyReference, "header %q", name)
		case "crit", "b64":
			refused = fail(ReasonCrit, "header %q: no extensions are supported", name)
		case "cty":
			refused = fail(ReasonMalformed, "nested or typed content (cty) is not accepted")
		}
	}
	switch {
	case refused != nil:
		return h, refused
	case h.alg == "":
		return h, fail(ReasonMalformed, "header has no alg")
	case strings.EqualFold(strings.TrimSpace(h.alg), "none"):
		return h, fail(ReasonAlgNone, "alg %q", h.alg)
	case strings.HasPrefix(strings.ToUpper(h.alg), "HS"):
		return h, fail(ReasonAlgHMAC, "alg %q", h.alg)
	}
	if _, ok := allowedAlgs[h.alg]; !ok {
		return h, fail(ReasonAlgNotAllowed, "alg %q", h.alg)
	}
	if h.kid == "" {
		return h, fail(ReasonMissingKID, "header has no kid")
	}
	return h, nil
}

// decodeClaims reads the registered and Vigil claims by their exact names
// (encoding/json alone would match "ISS" to iss), with strict types.
func decodeClaims(m map[string]json.RawMessage, own bool) (*Claims, error) {
	c := &Claims{}
	fields := []struct {
		name     string
		dst      any
		required bool
	}{
		{"iss", &c.Issuer, true},
		{"sub", &c.Subject, true},
		{"aud", &c.Audience, true},
		{"exp", &c.ExpiresAt, true},
		{"iat", &c.IssuedAt, own},
		{"nbf", &c.NotBefore, false},
		{"jti", &c.ID, own},
		{"grants", &c.Grants, false},
		{"src", &c.Src, false},
		{"roles", &c.Roles, false},
		{"bg", &c.BreakGlass, false},
	}
	for _, f := range fields {
		raw, ok := m[f.name]
		if !ok || string(raw) == "null" {
			if f.required {
				return nil, fail(ReasonMissingClaim, "%s", f.name)
			}
			continue
		}
		if !own && (f.name == "grants" || f.name == "roles" || f.name == "bg") {
			continue // meaningful only in Vigil's own tokens
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return nil, fail(ReasonBadClaims, "%s: %v", f.name, err)
		}
	}
	if c.Subject == "" {
		return nil, fail(ReasonMissingClaim, "sub is empty")
	}
	if len(c.Audience) == 0 {
		return nil, fail(ReasonMissingClaim, "aud is empty")
	}
	if own && c.ID == "" {
		return nil, fail(ReasonMissingClaim, "jti is empty")
	}
	for _, g := range c.Grants {
		if err := g.Validate(); err != nil {
			return nil, fail(ReasonBadClaims, "%v", err)
		}
	}
	if _, err := parseSources(c.Src); err != nil {
		return nil, fail(ReasonBadClaims, "%v", err)
	}
	return c, nil
}

// extractRoles reads the roles claim at path (dots descend into objects):
// a string or an array of strings.
func extractRoles(m map[string]json.RawMessage, path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	names := strings.Split(path, ".")
	raw, ok := m[names[0]]
	for _, name := range names[1:] {
		if !ok {
			break
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			ok = false
			break
		}
		raw, ok = obj[name]
	}
	if !ok {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fail(ReasonBadClaims, "roles claim %s is not a string or an array of strings", path)
	}
	return many, nil
}

// canonicalB64 accepts only unpadded base64url with zero trailing bits:
// exactly one encoding of each value, so no two strings carry the same
// token (RFC 7515 §2, RFC 4648 §3.5).
func canonicalB64(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("byte %d (%q) is not base64url", i, c)
		}
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(s); err != nil {
		return err
	}
	return nil
}

// decodeObject decodes a JSON object into its members, refusing invalid
// JSON, duplicate member names (which different parsers resolve
// differently) and trailing data. encoding/json validates; fastjson (already
// used by jwx) splits the members, keeping duplicates visible, several
// times faster than encoding/json's token stream.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(b) {
		return nil, errors.New("invalid JSON")
	}
	p := objectParsers.Get()
	defer objectParsers.Put(p)
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, err
	}
	o, err := v.Object()
	if err != nil {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]json.RawMessage, o.Len())
	var dup string
	o.Visit(func(k []byte, v *fastjson.Value) {
		if _, seen := m[string(k)]; seen {
			dup = string(k)
		}
		m[string(k)] = v.MarshalTo(nil)
	})
	if dup != "" {
		return nil, fmt.Errorf("duplicate member %q", dup)
	}
	return m, nil
}

// objectParsers reuses fastjson parsers (a parser is not safe for
// concurrent use; its values live until its next Parse).
var objectParsers fastjson.ParserPool
