package token

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/masterkey"
)

func jwksKIDs(t *testing.T, kr *Keyring) []string {
	t.Helper()
	b, err := kr.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("JWKS publishes a private key")
		}
		if k.Alg == "" || k.Use != "sig" {
			t.Fatalf("JWKS key %s lacks alg or use: %+v", k.KID, k)
		}
		kids = append(kids, k.KID)
	}
	return kids
}

func TestKeyRotation(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, alg)
			ctx := context.Background()
			before, _ := f.issue(t, Request{Subject: "alice", TTL: DefaultMaxTTL})
			oldKID := f.kr.signer().kid
			if kids := jwksKIDs(t, f.kr); len(kids) != 1 || kids[0] != oldKID {
				t.Fatalf("got JWKS %v, want [%s]", kids, oldKID)
			}
			f.clock.Advance(time.Minute)
			info, err := f.kr.Rotate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.KID == oldKID || !info.Active {
				t.Fatalf("rotation did not make a new active key: %+v", info)
			}
			after, _ := f.issue(t, Request{Subject: "alice"})
			if kid := f.kr.signer().kid; kid != info.KID {
				t.Fatalf("signing with %s, want the new key %s", kid, info.KID)
			}
			for name, tok := range map[string]string{"before": before, "after": after} {
				if _, err := f.v.Verify(ctx, tok, loopback); err != nil {
					t.Fatalf("token signed %s rotation: %v", name, err)
				}
			}
			if kids := jwksKIDs(t, f.kr); len(kids) != 2 {
				t.Fatalf("got JWKS %v, want old and new keys", kids)
			}

			// A restart (a fresh keyring from the same store) keeps both.
			kr2, created, err := OpenKeyring(ctx, f.db, f.mk, KeyringConfig{Algorithm: alg, MaxTTL: DefaultMaxTTL, Now: f.clock.Now})
			if err != nil || created {
				t.Fatalf("reopen: created=%v err=%v", created, err)
			}
			if kids := jwksKIDs(t, kr2); len(kids) != 2 {
				t.Fatalf("after restart got JWKS %v, want 2 keys", kids)
			}

			// Once the last token the old key could have signed has
			// expired, the key leaves the JWKS and verifies nothing.
			f.clock.Advance(DefaultMaxTTL + Leeway)
			if kids := jwksKIDs(t, f.kr); len(kids) != 1 || kids[0] != info.KID {
				t.Fatalf("got JWKS %v, want only %s", kids, info.KID)
			}
			if f.kr.lookup(oldKID) != nil {
				t.Fatal("retired key still verifies after its publication ended")
			}
		})
	}
}

func TestAutomaticRotation(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	ctx := context.Background()
	first := f.kr.signer().kid
	for _, tc := range []struct {
		advance time.Duration
		every   time.Duration
		want    bool
	}{
		{0, 0, false}, // off
		{23 * time.Hour, 24 * time.Hour, false},
		{time.Hour, 24 * time.Hour, true},  // 24h old now
		{time.Hour, 24 * time.Hour, false}, // the new key is 1h old
	} {
		f.clock.Advance(tc.advance)
		_, rotated, err := f.kr.RotateIfOlder(ctx, tc.every)
		if err != nil || rotated != tc.want {
			t.Fatalf("after %s with every %s: rotated=%v err=%v, want %v", tc.advance, tc.every, rotated, err, tc.want)
		}
	}
	if f.kr.signer().kid == first {
		t.Fatal("signing key unchanged")
	}
}

func TestKeyringWrongMasterKey(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	_, _, err := OpenKeyring(context.Background(), f.db, testMasterKey(t), KeyringConfig{MaxTTL: DefaultMaxTTL})
	if !errors.Is(err, masterkey.ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
}

func TestSignerLimits(t *testing.T) {
	f := newFixture(t, AlgEdDSA)
	tests := []struct {
		name string
		req  Request
	}{
		{"ttl over max", Request{Subject: "a", TTL: DefaultMaxTTL + time.Second}},
		{"no subject", Request{}},
		{"bad grant", Request{Subject: "a", Grants: []Grant{{Target: "t", Login: "l", Actions: []string{"sudo"}}}}},
		{"bad src", Request{Subject: "a", Src: []string{"10.0.0.1/99"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := f.sign.Issue(tc.req); err == nil {
				t.Fatal("got nil error")
			}
		})
	}
	_, c := f.issue(t, Request{Subject: "a"})
	if got := c.ExpiresAt.Sub(c.IssuedAt.Time); got != DefaultTTL {
		t.Fatalf("default lifetime %s, want %s", got, DefaultTTL)
	}
}
