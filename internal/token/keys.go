package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Signature algorithms Vigil signs with.
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// minRSABits is the smallest RSA modulus accepted from anyone.
const minRSABits = 2048

// allowedAlgs is the verification allow-list. Every entry is asymmetric:
// no HMAC algorithm is ever accepted, so a public key can never be misused
// as an HMAC secret. Each key is further pinned to exactly one of these.
var allowedAlgs = map[string]jwa.SignatureAlgorithm{
	"EdDSA": jwa.EdDSA(),
	"ES256": jwa.ES256(),
	"ES384": jwa.ES384(),
	"ES512": jwa.ES512(),
	"RS256": jwa.RS256(),
	"RS384": jwa.RS384(),
	"RS512": jwa.RS512(),
	"PS256": jwa.PS256(),
	"PS384": jwa.PS384(),
	"PS512": jwa.PS512(),
}

// verifyKey is a public key pinned to one algorithm, looked up by kid.
type verifyKey struct {
	kid string
	alg string
	pub crypto.PublicKey // ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey
}

// algForKey returns the one algorithm a key without an "alg" member is
// used with, or an error for key types Vigil does not accept.
func algForKey(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return AlgEdDSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		return "RS256", nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// checkKeyAlg reports whether pub may be used with alg.
func checkKeyAlg(pub crypto.PublicKey, alg string) error {
	if _, ok := allowedAlgs[alg]; !ok {
		return fmt.Errorf("algorithm %q is not allowed", alg)
	}
	natural, err := algForKey(pub)
	if err != nil {
		return err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits is below %d", k.N.BitLen(), minRSABits)
		}
		if alg[0] != 'R' && alg[0] != 'P' {
			return fmt.Errorf("algorithm %s does not fit an RSA key", alg)
		}
		return nil
	}
	if alg != natural {
		return fmt.Errorf("algorithm %s does not fit a %s key", alg, natural)
	}
	return nil
}

// publicJWK returns the JWK of k with kid, alg and use=sig set.
func publicJWK(k *verifyKey) (jwk.Key, error) {
	key, err := jwk.PublicKeyOf(k.pub)
	if err != nil {
		return nil, fmt.Errorf("token: jwk of %s: %w", k.kid, err)
	}
	for name, v := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: allowedAlgs[k.alg], jwk.KeyUsageKey: "sig"} {
		if err := key.Set(name, v); err != nil {
			return nil, fmt.Errorf("token: jwk of %s: set %s: %w", k.kid, name, err)
		}
	}
	return key, nil
}

// thumbprintKID returns the RFC 7638 SHA-256 thumbprint of pub, base64url.
func thumbprintKID(pub crypto.PublicKey) (string, error) {
	key, err := jwk.PublicKeyOf(pub)
	if err != nil {
		return "", err
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// keysFromJWKS turns a parsed JWK set into verification keys. Keys are
// skipped, with the reason returned, when they are symmetric, meant for
// encryption, of an unsupported type or algorithm, too weak, without a
// kid, or share a kid with another key (an ambiguous kid must never let a
// token pick among keys).
func keysFromJWKS(set []jwk.Key, pinned []string) (map[string]*verifyKey, []string) {
	keys := make(map[string]*verifyKey)
	dup := make(map[string]bool)
	var skipped []string
	for i, key := range set {
		kid, _ := key.KeyID()
		skip := func(why string) { skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %s", i, kid, why)) }
		if kid == "" {
			skip("no kid")
			continue
		}
		if use, ok := key.KeyUsage(); ok && use != "sig" {
			skip("use is " + use)
			continue
		}
		if key.KeyType().String() == "oct" {
			skip("symmetric keys are never accepted")
			continue
		}
		pubKey, err := jwk.PublicKeyOf(key)
		if err != nil {
			skip(err.Error())
			continue
		}
		var pub any
		if err := jwk.Export(pubKey, &pub); err != nil {
			skip(err.Error())
			continue
		}
		alg := ""
		if a, ok := key.Algorithm(); ok {
			alg = a.String()
		} else if alg, err = algForKey(pub); err != nil {
			skip(err.Error())
			continue
		}
		if err := checkKeyAlg(pub, alg); err != nil {
			skip(err.Error())
			continue
		}
		if len(pinned) > 0 && !slices.Contains(pinned, alg) {
			skip("algorithm " + alg + " is not in the issuer's algorithms")
			continue
		}
		if _, seen := keys[kid]; seen || dup[kid] {
			dup[kid] = true
			delete(keys, kid)
			skip("kid used by more than one key")
			continue
		}
		keys[kid] = &verifyKey{kid: kid, alg: alg, pub: pub}
	}
	return keys, skipped
}
