package token

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAttemptFacts checks the facts an Attempt carries for the monitor:
// the claimed alg and kid of a refused header, whether the signature was
// valid, exp and iat, a missing exp, and the break-glass claim.
func TestAttemptFacts(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	hdr, claims := f.validHeader(), f.validClaims()
	now := f.clock.Now()
	exp := now.Add(900 * time.Second).Truncate(time.Second)
	kid := f.kr.signer().kid
	good := f.forge(t, hdr, claims)
	parts := splitToken(good)

	tests := []struct {
		name       string
		token      string
		reason     Reason
		alg, kid   string
		sigValid   bool
		exp, iat   time.Time
		noExpiry   bool
		breakGlass bool
	}{
		{"accepted", good, ReasonOK, AlgEdDSA, kid, true, exp, now, false, false},
		{"break-glass claim", f.forge(t, hdr, withMember(claims, "bg", true)), ReasonOK, AlgEdDSA, kid, true, exp, now, false, true},
		{"expired", f.forge(t, hdr, withMember(claims, "exp", now.Add(-time.Hour).Unix())), ReasonExpired, AlgEdDSA, kid, true, now.Add(-time.Hour), now, false, false},
		{"lifetime over the cap", f.forge(t, hdr, withMember(claims, "exp", now.Add(DefaultMaxTTL+time.Hour).Unix())), ReasonLifetime, AlgEdDSA, kid, true, now.Add(DefaultMaxTTL + time.Hour), now, false, false},
		{"no exp", f.forge(t, hdr, withMember(claims, "exp", nil)), ReasonMissingClaim, AlgEdDSA, kid, true, time.Time{}, time.Time{}, true, false},
		{"bad signature", parts[0] + "." + b64json(t, withMember(claims, "exp", nil)) + "." + parts[2], ReasonBadSignature, AlgEdDSA, kid, false, time.Time{}, time.Time{}, false, false},
		{"alg none", b64json(t, withMember(hdr, "alg", "none")) + "." + parts[1] + ".", ReasonAlgNone, "none", kid, false, time.Time{}, time.Time{}, false, false},
		{"jku", f.forge(t, withMember(hdr, "jku", "https://evil.example/jwks"), claims), ReasonKeyReference, AlgEdDSA, kid, false, time.Time{}, time.Time{}, false, false},
		{"kid traversal", f.forge(t, withMember(hdr, "kid", "../../etc/passwd"), claims), ReasonUnknownKID, AlgEdDSA, "../../etc/passwd", false, time.Time{}, time.Time{}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.seen = nil
			_, err := f.v.Verify(context.Background(), tc.token, loopback)
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("got %v (%v), want %v", got, err, tc.reason)
			}
			a := f.seen[0]
			if a.Alg != tc.alg || a.KID != tc.kid {
				t.Errorf("got alg %q kid %q, want %q %q", a.Alg, a.KID, tc.alg, tc.kid)
			}
			if a.SignatureValid != tc.sigValid {
				t.Errorf("got SignatureValid %v, want %v", a.SignatureValid, tc.sigValid)
			}
			if !a.ExpiresAt.Equal(tc.exp) || !a.IssuedAt.Equal(tc.iat) {
				t.Errorf("got exp %v iat %v, want %v %v", a.ExpiresAt, a.IssuedAt, tc.exp, tc.iat)
			}
			if a.NoExpiry != tc.noExpiry {
				t.Errorf("got NoExpiry %v, want %v", a.NoExpiry, tc.noExpiry)
			}
			if a.BreakGlass != tc.breakGlass {
				t.Errorf("got BreakGlass %v, want %v", a.BreakGlass, tc.breakGlass)
			}
		})
	}
}

// TestAttemptFactsCached checks that a cache hit reports the same facts.
func TestAttemptFactsCached(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	f.v.cache = newVerifyCache(8)
	raw := f.forge(t, f.validHeader(), withMember(f.validClaims(), "bg", true))
	for i := 0; i < 2; i++ {
		if _, err := f.v.Verify(context.Background(), raw, loopback); err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
	}
	a := f.seen[1]
	if !a.Cached || !a.SignatureValid || !a.BreakGlass || a.ExpiresAt.IsZero() || a.IssuedAt.IsZero() {
		t.Fatalf("got cached attempt %+v, want Cached, SignatureValid, BreakGlass, exp and iat", a)
	}
}

func TestObservers(t *testing.T) {
	boom := errors.New("boom")
	var calls []string
	obs := func(name string, err error) Observer {
		return func(context.Context, *Attempt) error { calls = append(calls, name); return err }
	}
	tests := []struct {
		name      string
		chain     Observer
		wantCalls []string
		wantErr   error
	}{
		{"none", Observers(), nil, nil},
		{"nil skipped", Observers(nil, obs("a", nil), nil), []string{"a"}, nil},
		{"in order", Observers(obs("a", nil), obs("b", nil)), []string{"a", "b"}, nil},
		{"stops at first error", Observers(obs("a", boom), obs("b", nil)), []string{"a"}, boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls = nil
			err := tc.chain(context.Background(), &Attempt{})
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("got error %v, want %v", err, tc.wantErr)
			}
			if len(calls) != len(tc.wantCalls) {
				t.Fatalf("got calls %v, want %v", calls, tc.wantCalls)
			}
			for i := range calls {
				if calls[i] != tc.wantCalls[i] {
					t.Fatalf("got calls %v, want %v", calls, tc.wantCalls)
				}
			}
		})
	}
}
