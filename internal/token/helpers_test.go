package token

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/store"
)

const (
	testIssuer   = "vigil-test"
	testAudience = "vigil"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTestDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "vigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func testMasterKey(t testing.TB) *masterkey.Key {
	t.Helper()
	secret := make([]byte, masterkey.Size)
	rand.Read(secret)
	mk, err := masterkey.New(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// fixture is a keyring, signer, revocation list and verifier over one
// database and one clock.
type fixture struct {
	db    *store.DB
	mk    *masterkey.Key
	clock *clock
	kr    *Keyring
	sign  *Signer
	rev   *Revocations
	v     *Verifier
	seen  []*Attempt
}

func newFixture(t testing.TB, alg string, issuers ...*RemoteIssuer) *fixture {
	t.Helper()
	f := &fixture{db: openTestDB(t), mk: testMasterKey(t), clock: newClock()}
	ctx := context.Background()
	var err error
	f.kr, _, err = OpenKeyring(ctx, f.db, f.mk, KeyringConfig{Algorithm: alg, MaxTTL: DefaultMaxTTL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.sign = NewSigner(f.kr, IssuerSettings{Issuer: testIssuer, Audience: testAudience, Now: f.clock.Now})
	f.rev, err = OpenRevocations(ctx, f.db, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.v, err = NewVerifier(VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, MaxTTL: DefaultMaxTTL,
		Keyring: f.kr, Revocations: f.rev, Issuers: issuers, Now: f.clock.Now,
		Observe: func(_ context.Context, a *Attempt) error { f.seen = append(f.seen, a); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) issue(t testing.TB, req Request) (string, *Claims) {
	t.Helper()
	raw, c, err := f.sign.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return raw, c
}

// validClaims are the claims of a good Vigil token at the fixture's time.
func (f *fixture) validClaims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience,
		"iat": now, "nbf": now, "exp": now + 900, "jti": "jti-1",
		"grants": []map[string]any{{"target": "web1", "login": "root", "actions": []string{"shell"}}},
	}
}

func (f *fixture) validHeader() map[string]any {
	return map[string]any{"alg": f.kr.signer().alg, "kid": f.kr.signer().kid, "typ": TypVigil}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// forge signs arbitrary header and claims with the fixture's active key,
// so that every check but the one under test passes.
func (f *fixture) forge(t testing.TB, hdr, claims any) string {
	t.Helper()
	return f.forgeRaw(t, b64json(t, hdr), b64json(t, claims))
}

func (f *fixture) forgeRaw(t testing.TB, h, p string) string {
	t.Helper()
	return h + "." + p + "." + b64(signWith(t, f.kr.signer().signer, f.kr.signer().alg, h+"."+p))
}

// signWith produces a JWS signature over input with jwx's signer for alg.
func signWith(t testing.TB, key crypto.Signer, alg, input string) []byte {
	t.Helper()
	if k, ok := key.(ed25519.PrivateKey); ok {
		return ed25519.Sign(k, []byte(input))
	}
	// Let jwx sign a throw-away message and reuse its signature routine.
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		t.Fatalf("unknown alg %s", alg)
	}
	signer, err := jws.SignerFor(a)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(key, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func reasonOf(err error) Reason {
	if ve, ok := err.(*VerifyError); ok {
		return ve.Reason
	}
	if err == nil {
		return ReasonOK
	}
	return Reason("other: " + err.Error())
}

func withMember(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for kk, vv := range m {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func splitToken(raw string) []string { return strings.Split(raw, ".") }
