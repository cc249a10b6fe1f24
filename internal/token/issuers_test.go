package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

const idpIssuer = "https://idp.example.test/"

// idp is a real HTTP identity provider publishing a JWKS.
type idp struct {
	t   *testing.T
	srv *httptest.Server

	// mu guards the fields below.
	mu      sync.Mutex
	keys    map[string]idpKey
	mode    string // "", "down", "garbage", "huge", "slow", "hmac-only"
	fetches int
}

type idpKey struct {
	alg    string
	signer crypto.Signer
}

func newIDP(t *testing.T) *idp {
	p := &idp{t: t, keys: map[string]idpKey{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) addKey(kid, alg string) {
	p.t.Helper()
	var s crypto.Signer
	var err error
	switch alg {
	case "ES256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.keys[kid] = idpKey{alg: alg, signer: s}
	p.mu.Unlock()
}

func (p *idp) set(mode string) { p.mu.Lock(); p.mode = mode; p.mu.Unlock() }

func (p *idp) fetchCount() int { p.mu.Lock(); defer p.mu.Unlock(); return p.fetches }

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.fetches++
	mode := p.mode
	set := jwk.NewSet()
	for kid, k := range p.keys {
		key, _ := jwk.PublicKeyOf(k.signer.Public())
		key.Set(jwk.KeyIDKey, kid)
		key.Set(jwk.AlgorithmKey, allowedAlgs[k.alg])
		set.AddKey(key)
	}
	p.mu.Unlock()
	switch mode {
	case "down":
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case "garbage":
		w.Write([]byte(`{"keys": [ {"kty": "RSA", "n": "%%%"`))
	case "huge":
		w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", jwksMaxBytes) + `"}`))
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	case "hmac-only":
		w.Write([]byte(`{"keys":[{"kty":"oct","kid":"h1","alg":"HS256","k":"c2VjcmV0"}]}`))
	default:
		json.NewEncoder(w).Encode(set)
	}
}

// token signs claims with the IdP key kid.
func (p *idp) token(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	p.mu.Lock()
	k := p.keys[kid]
	p.mu.Unlock()
	h := b64json(t, map[string]any{"alg": k.alg, "kid": kid, "typ": "JWT"})
	c := b64json(t, claims)
	return h + "." + c + "." + b64(signWith(t, k.signer, k.alg, h+"."+c))
}

func idpClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": idpIssuer, "sub": "u-123", "aud": []string{"vigil-ext"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"realm_access": map[string]any{"roles": []string{"dba", "vigil-admins"}},
		"grants":       []map[string]any{{"target": "prod", "login": "root", "actions": []string{"shell"}}},
	}
}

func newRemote(t *testing.T, p *idp, clk *clock, cfg IssuerConfig) (*RemoteIssuer, *[]error) {
	t.Helper()
	cfg.Issuer, cfg.Audience, cfg.RolesClaim, cfg.AdminRoles = idpIssuer, "vigil-ext", "realm_access.roles", []string{"vigil-admins"}
	if cfg.JWKSFile == "" {
		cfg.JWKSURL = p.srv.URL + "/jwks.json"
	}
	var errs []error
	client := &http.Client{Timeout: 300 * time.Millisecond}
	ri, err := NewRemoteIssuer(cfg, client, clk.Now, func(_ context.Context, _ string, _ int, _ []string, err error) {
		errs = append(errs, err)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ri, &errs
}

func TestExternalIssuer(t *testing.T) {
	p := newIDP(t)
	p.addKey("es-1", "ES256")
	p.addKey("rs-1", "RS256")
	f := newFixture(t, AlgEdDSA)
	ri, _ := newRemote(t, p, f.clock, IssuerConfig{})
	f.v.issuers[idpIssuer] = ri
	ctx := context.Background()
	now := f.clock.Now()

	for _, kid := range []string{"es-1", "rs-1"} {
		id, err := f.v.Verify(ctx, p.token(t, kid, idpClaims(now)), loopback)
		if err != nil {
			t.Fatalf("%s: %v", kid, err)
		}
		if !id.External || !id.Admin || id.Claims.Subject != "u-123" || len(id.Roles) != 2 || id.Roles[0] != "dba" {
			t.Fatalf("%s: got identity %+v", kid, id)
		}
		if id.Claims.Grants != nil {
			t.Fatalf("%s: grants from an external token must be ignored, got %v", kid, id.Claims.Grants)
		}
	}

	tests := []struct {
		name   string
		claims map[string]any
		hdr    map[string]any // overrides
		want   Reason
	}{
		{"wrong audience", withMember(idpClaims(now), "aud", "vigil"), nil, ReasonAudience},
		{"over its lifetime cap", withMember(idpClaims(now), "exp", now.Add(25*time.Hour).Unix()), nil, ReasonLifetime},
		{"no iat, far exp", withMember(withMember(idpClaims(now), "iat", nil), "exp", now.Add(48*time.Hour).Unix()), nil, ReasonLifetime},
		{"no iat is fine otherwise", withMember(idpClaims(now), "iat", nil), nil, ReasonOK},
		{"typ vigil+jwt from IdP", idpClaims(now), map[string]any{"typ": TypVigil}, ReasonTyp},
		{"alg swapped to RS256 on EC key", idpClaims(now), map[string]any{"alg": "RS256"}, ReasonAlgKeyMismatch},
		{"roles claim wrong type", withMember(idpClaims(now), "realm_access", map[string]any{"roles": 5}), nil, ReasonBadClaims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := p.keys["es-1"]
			hdr := map[string]any{"alg": k.alg, "kid": "es-1", "typ": "JWT"}
			for n, v := range tc.hdr {
				hdr[n] = v
			}
			h, c := b64json(t, hdr), b64json(t, tc.claims)
			tok := h + "." + c + "." + b64(signWith(t, k.signer, k.alg, h+"."+c))
			if _, err := f.v.Verify(ctx, tok, loopback); reasonOf(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestExternalIssuerRotationAndOutage(t *testing.T) {
	p := newIDP(t)
	p.addKey("k1", "ES256")
	f := newFixture(t, AlgEdDSA)
	ri, errs := newRemote(t, p, f.clock, IssuerConfig{})
	f.v.issuers[idpIssuer] = ri
	ctx := context.Background()

	if _, err := f.v.Verify(ctx, p.token(t, "k1", idpClaims(f.clock.Now())), loopback); err != nil {
		t.Fatalf("first token: %v", err)
	}
	if got := p.fetchCount(); got != 1 {
		t.Fatalf("got %d fetches, want 1 (lazy fetch on first unknown kid)", got)
	}

	// The IdP rotates: a token with the new kid triggers one refresh.
	p.addKey("k2", "ES256")
	f.clock.Advance(DefaultJWKSMinInterval)
	if _, err := f.v.Verify(ctx, p.token(t, "k2", idpClaims(f.clock.Now())), loopback); err != nil {
		t.Fatalf("token after IdP rotation: %v", err)
	}
	if got := p.fetchCount(); got != 2 {
		t.Fatalf("got %d fetches, want 2", got)
	}

	// A flood of unknown kids within the interval fetches nothing more.
	for i := 0; i < 50; i++ {
		claims := idpClaims(f.clock.Now())
		h := b64json(t, map[string]any{"alg": "ES256", "kid": "rand-" + string(rune('a'+i%26)), "typ": "JWT"})
		tok := h + "." + b64json(t, claims) + "." + b64(make([]byte, 64))
		if _, err := f.v.Verify(ctx, tok, loopback); reasonOf(err) != ReasonUnknownKID {
			t.Fatalf("random kid: got %v, want unknown_kid", err)
		}
	}
	if got := p.fetchCount(); got != 2 {
		t.Fatalf("got %d fetches after a flood of unknown kids, want still 2", got)
	}

	// Outages of every kind keep the last good keys and are reported.
	for _, mode := range []string{"down", "garbage", "huge", "slow", "hmac-only"} {
		t.Run(mode, func(t *testing.T) {
			p.set(mode)
			f.clock.Advance(DefaultJWKSMinInterval)
			n := len(*errs)
			if err := ri.Refresh(ctx, false); err == nil {
				t.Fatalf("refresh from a %s IdP succeeded", mode)
			}
			if len(*errs) != n+1 || (*errs)[n] == nil {
				t.Fatalf("fetch failure not observed")
			}
			if _, err := f.v.Verify(ctx, p.token(t, "k1", idpClaims(f.clock.Now())), loopback); err != nil {
				t.Fatalf("known key lost during %s outage: %v", mode, err)
			}
		})
	}
	p.set("")
	f.clock.Advance(DefaultJWKSMinInterval)
	if err := ri.Refresh(ctx, false); err != nil {
		t.Fatalf("refresh after recovery: %v", err)
	}
}

func TestExternalIssuerDownAtStart(t *testing.T) {
	p := newIDP(t)
	p.addKey("k1", "RS256")
	p.set("down")
	f := newFixture(t, AlgEdDSA)
	ri, _ := newRemote(t, p, f.clock, IssuerConfig{})
	f.v.issuers[idpIssuer] = ri
	ctx := context.Background()
	tok := p.token(t, "k1", idpClaims(f.clock.Now()))
	if _, err := f.v.Verify(ctx, tok, loopback); reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("IdP down: got %v, want unknown_kid", err)
	}
	// Vigil's own tokens are unaffected by the IdP outage.
	own, _ := f.issue(t, Request{Subject: "admin", Roles: []string{RoleAdmin}})
	if _, err := f.v.Verify(ctx, own, loopback); err != nil {
		t.Fatalf("own token during IdP outage: %v", err)
	}
	p.set("")
	if _, err := f.v.Verify(ctx, tok, loopback); reasonOf(err) != ReasonUnknownKID {
		t.Fatalf("within the refresh interval: got %v, want unknown_kid", err)
	}
	f.clock.Advance(DefaultJWKSMinInterval)
	if _, err := f.v.Verify(ctx, tok, loopback); err != nil {
		t.Fatalf("after the IdP recovered: %v", err)
	}
}

func TestJWKSFileAndKeyFiltering(t *testing.T) {
	p := newIDP(t)
	p.addKey("good", "ES256")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	mk := func(pub any, set map[string]any) jwk.Key {
		k, err := jwk.PublicKeyOf(pub)
		if err != nil {
			t.Fatal(err)
		}
		for n, v := range set {
			if err := k.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		return k
	}
	set := jwk.NewSet()
	set.AddKey(mk(p.keys["good"].signer.Public(), map[string]any{jwk.KeyIDKey: "good"}))
	set.AddKey(mk(ec.Public(), map[string]any{jwk.KeyIDKey: "enc", jwk.KeyUsageKey: "enc"}))
	set.AddKey(mk(ec.Public(), map[string]any{jwk.KeyIDKey: "nokid-alg-mismatch", jwk.AlgorithmKey: allowedAlgs["RS256"]}))
	set.AddKey(mk(ec.Public(), map[string]any{}))
	set.AddKey(mk(ec.Public(), map[string]any{jwk.KeyIDKey: "twin"}))
	set.AddKey(mk(p.keys["good"].signer.Public(), map[string]any{jwk.KeyIDKey: "twin"}))
	b, _ := json.Marshal(set)
	// Keys jwx itself refuses (a 1024-bit RSA key, garbage) are skipped
	// one by one; the good key survives.
	weakJWK := fmt.Sprintf(`{"kty":"RSA","kid":"weak","n":%q,"e":"AQAB"},`, base64.RawURLEncoding.EncodeToString(weak.N.Bytes()))
	b = []byte(strings.Replace(string(b), `"keys":[`, `"keys":[{"kty":"oct","kid":"hmac","k":"c2VjcmV0"},`+weakJWK+`{"kty":"RSA","kid":"junk","n":"%%%"},`, 1))
	path := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(path, b, 0o600)

	clk := newClock()
	ri, _ := newRemote(t, p, clk, IssuerConfig{JWKSFile: path})
	if err := ri.Refresh(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if len(ri.keys) != 1 || ri.keys["good"] == nil {
		names := []string{}
		for k := range ri.keys {
			names = append(names, k)
		}
		t.Fatalf("got keys %v, want only [good]", names)
	}
}

func TestIssuerConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  IssuerConfig
	}{
		{"no audience", IssuerConfig{Issuer: "x", JWKSURL: "https://x/jwks"}},
		{"both sources", IssuerConfig{Issuer: "x", Audience: "a", JWKSURL: "https://x/jwks", JWKSFile: "f"}},
		{"no source", IssuerConfig{Issuer: "x", Audience: "a"}},
		{"plain http", IssuerConfig{Issuer: "x", Audience: "a", JWKSURL: "http://idp.example.com/jwks"}},
		{"HMAC pinned", IssuerConfig{Issuer: "x", Audience: "a", JWKSURL: "https://x/jwks", Algorithms: []string{"HS256"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRemoteIssuer(tc.cfg, nil, nil, nil); err == nil {
				t.Fatal("got nil error, want a configuration error")
			}
		})
	}
}
