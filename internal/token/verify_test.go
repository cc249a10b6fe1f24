package token

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// TestVerifyRules forges one token per rule and checks the reason it is
// refused for, or that it is accepted.
func TestVerifyRules(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	good, _ := f.issue(t, Request{Subject: "alice", Grants: []Grant{{Target: "web1", Login: "root", Actions: []string{ActionShell}}}})
	hdr, claims := f.validHeader(), f.validClaims()
	now := f.clock.Now().Unix()
	parts := splitToken(good)
	pub := []byte(f.kr.signer().pub.(ed25519.PublicKey))

	hmacToken := func(alg string, secret []byte) string {
		h := b64json(t, map[string]any{"alg": alg, "kid": f.kr.signer().kid, "typ": TypVigil})
		p := b64json(t, claims)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(h + "." + p))
		return h + "." + p + "." + b64(m.Sum(nil))
	}
	noneToken := func(alg, sig string) string {
		return b64json(t, map[string]any{"alg": alg, "typ": TypVigil, "kid": f.kr.signer().kid}) + "." + b64json(t, claims) + "." + sig
	}
	// flip the last base64 character so the decoded bytes differ.
	flip := func(s string) string {
		last := s[len(s)-1]
		repl := byte('A')
		if last == 'A' {
			repl = 'Q'
		}
		return s[:len(s)-1] + string(repl)
	}
	// Ed25519 signatures are 64 bytes: 86 characters whose last carries 4
	// unused bits; setting one keeps the bytes but breaks canonical form.
	sig := parts[2]
	idx := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
	nonCanonicalSig := sig[:len(sig)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[idx|1])

	tests := []struct {
		name   string
		token  string
		src    netip.Addr
		want   Reason
		wantID string // checked when accepted
	}{
		{"issued token", good, loopback, ReasonOK, "alice"},
		{"forged with valid claims", f.forge(t, hdr, claims), loopback, ReasonOK, "alice"},
		{"empty", "", loopback, ReasonEmpty, ""},
		{"oversized", strings.Repeat("a", MaxTokenSize+1), loopback, ReasonOversized, ""},
		{"oversized before parsing", good + strings.Repeat("A", MaxTokenSize), loopback, ReasonOversized, ""},
		{"two parts", parts[0] + "." + parts[1], loopback, ReasonMalformed, ""},
		{"four parts", good + ".x", loopback, ReasonMalformed, ""},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, loopback, ReasonMalformed, ""},
		{"padding", good + "==", loopback, ReasonNonCanonical, ""},
		{"standard base64 alphabet", parts[0] + "." + strings.ReplaceAll(strings.ReplaceAll(parts[1], "-", "+"), "_", "/") + "+." + parts[2], loopback, ReasonNonCanonical, ""},
		{"newline inside", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], loopback, ReasonNonCanonical, ""},
		{"trailing bits set", parts[0] + "." + parts[1] + "." + nonCanonicalSig, loopback, ReasonNonCanonical, ""},
		{"header not JSON", b64([]byte("not json")) + "." + parts[1] + "." + parts[2], loopback, ReasonMalformed, ""},
		{"header duplicate alg", b64([]byte(`{"alg":"EdDSA","alg":"none","kid":"`+f.kr.signer().kid+`","typ":"vigil+jwt"}`)) + "." + parts[1] + "." + parts[2], loopback, ReasonMalformed, ""},
		{"alg none unsigned", noneToken("none", ""), loopback, ReasonAlgNone, ""},
		{"alg None", noneToken("None", ""), loopback, ReasonAlgNone, ""},
		{"alg NONE", noneToken("NONE", ""), loopback, ReasonAlgNone, ""},
		{"alg nOnE with signature", noneToken("nOnE", parts[2]), loopback, ReasonAlgNone, ""},
		{"alg none padded", noneToken(" none", parts[2]), loopback, ReasonAlgNone, ""},
		{"HS256 keyed with the public key", hmacToken("HS256", pub), loopback, ReasonAlgHMAC, ""},
		{"hs512", hmacToken("hs512", pub), loopback, ReasonAlgHMAC, ""},
		{"alg not allowed", f.forge(t, withMember(hdr, "alg", "ES256K"), claims), loopback, ReasonAlgNotAllowed, ""},
		{"alg missing", f.forge(t, withMember(hdr, "alg", nil), claims), loopback, ReasonMalformed, ""},
		{"alg not a string", f.forge(t, withMember(hdr, "alg", 7), claims), loopback, ReasonMalformed, ""},
		{"alg other than the key's", f.forge(t, withMember(hdr, "alg", "RS256"), claims), loopback, ReasonAlgKeyMismatch, ""},
		{"jku", f.forge(t, withMember(hdr, "jku", "https://evil.example/jwks"), claims), loopback, ReasonKeyReference, ""},
		{"x5u", f.forge(t, withMember(hdr, "x5u", "https://evil.example/cert"), claims), loopback, ReasonKeyReference, ""},
		{"x5c", f.forge(t, withMember(hdr, "x5c", []string{"MIIB"}), claims), loopback, ReasonKeyReference, ""},
		{"embedded jwk", f.forge(t, withMember(hdr, "jwk", map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}), claims), loopback, ReasonKeyReference, ""},
		{"crit", f.forge(t, withMember(hdr, "crit", []string{"exp"}), claims), loopback, ReasonCrit, ""},
		{"b64 false", f.forge(t, withMember(hdr, "b64", false), claims), loopback, ReasonCrit, ""},
		{"cty JWT", f.forge(t, withMember(hdr, "cty", "JWT"), claims), loopback, ReasonMalformed, ""},
		{"typ missing", f.forge(t, withMember(hdr, "typ", nil), claims), loopback, ReasonTyp, ""},
		{"typ JWT", f.forge(t, withMember(hdr, "typ", "JWT"), claims), loopback, ReasonTyp, ""},
		{"typ media type", f.forge(t, withMember(hdr, "typ", "application/vigil+jwt"), claims), loopback, ReasonOK, "alice"},
		{"kid missing", f.forge(t, withMember(hdr, "kid", nil), claims), loopback, ReasonMissingKID, ""},
		{"kid unknown", f.forge(t, withMember(hdr, "kid", "nope"), claims), loopback, ReasonUnknownKID, ""},
		{"kid path", f.forge(t, withMember(hdr, "kid", "../../../dev/null"), claims), loopback, ReasonUnknownKID, ""},
		{"kid SQL", f.forge(t, withMember(hdr, "kid", "' OR '1'='1"), claims), loopback, ReasonUnknownKID, ""},
		{"kid not a string", f.forge(t, withMember(hdr, "kid", 1), claims), loopback, ReasonMalformed, ""},
		{"payload not an object", f.forgeRaw(t, b64json(t, hdr), b64([]byte(`["iss"]`))), loopback, ReasonMalformed, ""},
		{"payload trailing data", f.forgeRaw(t, b64json(t, hdr), b64([]byte(`{"iss":"vigil-test"} {}`))), loopback, ReasonMalformed, ""},
		{"duplicate sub", f.forgeRaw(t, b64json(t, hdr), b64([]byte(`{"iss":"vigil-test","sub":"alice","sub":"root"}`))), loopback, ReasonMalformed, ""},
		{"case-variant claim ignored", f.forge(t, hdr, withMember(claims, "SUB", "root")), loopback, ReasonOK, "alice"},
		{"iss missing", f.forge(t, hdr, withMember(claims, "iss", nil)), loopback, ReasonMissingClaim, ""},
		{"iss not a string", f.forge(t, hdr, withMember(claims, "iss", []string{testIssuer})), loopback, ReasonBadClaims, ""},
		{"iss unknown", f.forge(t, hdr, withMember(claims, "iss", "https://evil.example/")), loopback, ReasonUnknownIssuer, ""},
		{"sub missing", f.forge(t, hdr, withMember(claims, "sub", nil)), loopback, ReasonMissingClaim, ""},
		{"sub empty", f.forge(t, hdr, withMember(claims, "sub", "")), loopback, ReasonMissingClaim, ""},
		{"aud missing", f.forge(t, hdr, withMember(claims, "aud", nil)), loopback, ReasonMissingClaim, ""},
		{"aud wrong", f.forge(t, hdr, withMember(claims, "aud", "other")), loopback, ReasonAudience, ""},
		{"aud array with ours", f.forge(t, hdr, withMember(claims, "aud", []string{"x", testAudience})), loopback, ReasonOK, "alice"},
		{"aud number", f.forge(t, hdr, withMember(claims, "aud", 1)), loopback, ReasonBadClaims, ""},
		{"exp missing", f.forge(t, hdr, withMember(claims, "exp", nil)), loopback, ReasonMissingClaim, ""},
		{"exp string", f.forge(t, hdr, withMember(claims, "exp", "9999999999")), loopback, ReasonBadClaims, ""},
		{"exp huge", f.forge(t, hdr, withMember(claims, "exp", 1e300)), loopback, ReasonBadClaims, ""},
		{"exp passed", f.forge(t, hdr, withMember(claims, "exp", now-31)), loopback, ReasonExpired, ""},
		{"exp within leeway", f.forge(t, hdr, withMember(claims, "exp", now-10)), loopback, ReasonOK, "alice"},
		{"nbf future", f.forge(t, hdr, withMember(claims, "nbf", now+61)), loopback, ReasonNotYetValid, ""},
		{"nbf within leeway", f.forge(t, hdr, withMember(claims, "nbf", now+10)), loopback, ReasonOK, "alice"},
		{"iat future", f.forge(t, hdr, withMember(claims, "iat", now+61)), loopback, ReasonIssuedInFuture, ""},
		{"iat missing", f.forge(t, hdr, withMember(claims, "iat", nil)), loopback, ReasonMissingClaim, ""},
		{"jti missing", f.forge(t, hdr, withMember(claims, "jti", nil)), loopback, ReasonMissingClaim, ""},
		{"lifetime over max", f.forge(t, hdr, withMember(claims, "exp", now+int64(DefaultMaxTTL/time.Second)+1)), loopback, ReasonLifetime, ""},
		{"backdated iat, long exp", f.forge(t, hdr, withMember(withMember(claims, "iat", now-3600), "exp", now+int64(DefaultMaxTTL/time.Second))), loopback, ReasonLifetime, ""},
		{"unknown action", f.forge(t, hdr, withMember(claims, "grants", []map[string]any{{"target": "a", "login": "b", "actions": []string{"root"}}})), loopback, ReasonBadClaims, ""},
		{"grants not a list", f.forge(t, hdr, withMember(claims, "grants", "all")), loopback, ReasonBadClaims, ""},
		{"src bad CIDR", f.forge(t, hdr, withMember(claims, "src", []string{"everywhere"})), loopback, ReasonBadClaims, ""},
		{"src other network", f.forge(t, hdr, withMember(claims, "src", []string{"10.0.0.0/8"})), loopback, ReasonSource, ""},
		{"src matching network", f.forge(t, hdr, withMember(claims, "src", []string{"10.0.0.0/8"})), netip.MustParseAddr("10.1.2.3"), ReasonOK, "alice"},
		{"src mapped IPv4", f.forge(t, hdr, withMember(claims, "src", []string{"10.0.0.0/8"})), netip.MustParseAddr("::ffff:10.1.2.3"), ReasonOK, "alice"},
		{"src unknown source", f.forge(t, hdr, withMember(claims, "src", []string{"10.0.0.0/8"})), netip.Addr{}, ReasonSource, ""},
		{"signature altered", parts[0] + "." + parts[1] + "." + flip(parts[2][:len(parts[2])-2]) + parts[2][len(parts[2])-2:], loopback, ReasonBadSignature, ""},
		{"payload altered", parts[0] + "." + b64json(t, withMember(claims, "sub", "root")) + "." + parts[2], loopback, ReasonBadSignature, ""},
		{"signature of another token", parts[0] + "." + parts[1] + "." + splitToken(f.forge(t, hdr, claims))[2], loopback, ReasonBadSignature, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.seen = nil
			id, err := f.v.Verify(context.Background(), tc.token, tc.src)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
			if len(f.seen) != 1 {
				t.Fatalf("got %d recorded attempts, want 1", len(f.seen))
			}
			a := f.seen[0]
			if a.Reason != tc.want || a.Accepted != (tc.want == ReasonOK) {
				t.Errorf("recorded %v accepted=%v, want %v", a.Reason, a.Accepted, tc.want)
			}
			if tc.want == ReasonOK {
				if id == nil || id.Claims.Subject != tc.wantID {
					t.Fatalf("got identity %+v, want sub %q", id, tc.wantID)
				}
				return
			}
			if id != nil {
				t.Fatalf("got identity %+v for a refused token", id)
			}
			// Neither the error nor the record may carry the token.
			if len(tc.token) > 40 && (strings.Contains(err.Error(), tc.token) || strings.Contains(a.Detail, tc.token)) {
				t.Errorf("error or record contains the token")
			}
		})
	}
}

func TestVerifyRevocation(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	ctx := context.Background()
	raw, c := f.issue(t, Request{Subject: "bob"})
	if _, err := f.v.Verify(ctx, raw, loopback); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := f.rev.Revoke(ctx, Revocation{Issuer: testIssuer, JTI: c.ID, ExpiresAt: c.ExpiresAt.Time, RevokedBy: "admin", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(ctx, raw, loopback); reasonOf(err) != ReasonRevoked {
		t.Fatalf("got %v, want revoked", err)
	}
	// The deny list is persisted: a fresh list from the same store still
	// refuses the token.
	rev2, err := OpenRevocations(ctx, f.db, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !rev2.IsRevoked(testIssuer, c.ID) {
		t.Fatal("revocation lost on reload")
	}
	// Once every token with that jti has expired, the entry is pruned.
	f.clock.Advance(time.Hour)
	if err := rev2.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if rev2.IsRevoked(testIssuer, c.ID) {
		t.Fatal("expired revocation not pruned")
	}
}

// TestRevocationSurvivesSignatureMalleability shows why the deny list is
// keyed by iss+jti: an ECDSA signature (r, s) has a twin (r, n-s) that
// also verifies, making a different token string with the same claims.
func TestRevocationSurvivesSignatureMalleability(t *testing.T) {
	f := newFixture(t, AlgES256)
	ctx := context.Background()
	raw, c := f.issue(t, Request{Subject: "carol"})
	twin := malleateES256(t, raw)
	if twin == raw {
		t.Fatal("twin equals original")
	}
	if _, err := f.v.Verify(ctx, twin, loopback); err != nil {
		t.Fatalf("twin should verify before revocation (Go accepts high-s): %v", err)
	}
	if err := f.rev.Revoke(ctx, Revocation{Issuer: testIssuer, JTI: c.ID, ExpiresAt: c.ExpiresAt.Time, RevokedBy: "admin"}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{raw, twin} {
		if _, err := f.v.Verify(ctx, tok, loopback); reasonOf(err) != ReasonRevoked {
			t.Fatalf("got %v, want revoked", err)
		}
	}
}

func TestVerifyCache(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	f.v.cache = newVerifyCache(2)
	ctx := context.Background()
	raw, c := f.issue(t, Request{Subject: "dave", Src: []string{"127.0.0.0/8"}})
	for i := 0; i < 3; i++ {
		if _, err := f.v.Verify(ctx, raw, loopback); err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
	}
	if !f.seen[2].Cached {
		t.Fatal("repeated token was not served from the cache")
	}
	// Every per-use check still applies on a cache hit.
	if _, err := f.v.Verify(ctx, raw, netip.MustParseAddr("10.0.0.1")); reasonOf(err) != ReasonSource {
		t.Fatalf("cached token from another network: got %v, want source_not_allowed", err)
	}
	f.rev.Revoke(ctx, Revocation{Issuer: testIssuer, JTI: c.ID, ExpiresAt: c.ExpiresAt.Time})
	if _, err := f.v.Verify(ctx, raw, loopback); reasonOf(err) != ReasonRevoked {
		t.Fatalf("cached revoked token: got %v, want revoked", err)
	}
	raw2, _ := f.issue(t, Request{Subject: "erin"})
	f.v.Verify(ctx, raw2, loopback)
	f.clock.Advance(DefaultTTL + time.Minute)
	if _, err := f.v.Verify(ctx, raw2, loopback); reasonOf(err) != ReasonExpired {
		t.Fatalf("cached expired token: got %v, want expired", err)
	}
	// The cache stays bounded.
	for i := 0; i < 5; i++ {
		r, _ := f.issue(t, Request{Subject: "x"})
		f.v.Verify(ctx, r, loopback)
	}
	if n := len(f.v.cache.m); n > 2 {
		t.Fatalf("cache holds %d entries, want at most 2", n)
	}
}

func TestVerifyObserverFailureDenies(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	raw, _ := f.issue(t, Request{Subject: "frank"})
	f.v.cfg.Observe = func(context.Context, *Attempt) error { return context.DeadlineExceeded }
	id, err := f.v.Verify(context.Background(), raw, loopback)
	if err == nil || id != nil {
		t.Fatalf("got %v, %v; want a denial when the verification cannot be recorded", id, err)
	}
}
