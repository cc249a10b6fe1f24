package token

import (
	"context"
	"testing"
)

// FuzzVerify feeds arbitrary strings to the verifier. Besides not
// panicking, it checks the property that matters: the only strings ever
// accepted are the exact tokens the signer produced (canonical encoding
// and non-malleable Ed25519 leave no second spelling of a token).
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, AlgEdDSA)
	valid := map[string]bool{}
	for _, req := range []Request{
		{Subject: "alice"},
		{Subject: "bob", Grants: []Grant{{Target: "db", Login: "postgres", Actions: []string{ActionQuery}}}, Src: []string{"127.0.0.0/8"}},
	} {
		raw, _ := fx.issue(f, req)
		valid[raw] = true
		f.Add(raw)
	}
	hdr, claims := fx.validHeader(), fx.validClaims()
	forged := fx.forge(f, hdr, claims)
	valid[forged] = true
	f.Add(forged)
	f.Add(fx.forge(f, withMember(hdr, "alg", "none"), claims))
	f.Add(fx.forge(f, withMember(hdr, "jku", "https://x"), claims))
	f.Add(fx.forge(f, hdr, withMember(claims, "exp", "soon")))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("...")
	f.Add("")
	fx.v.cfg.Observe = nil
	f.Fuzz(func(t *testing.T, s string) {
		id, err := fx.v.Verify(context.Background(), s, loopback)
		if err == nil && !valid[s] {
			t.Fatalf("accepted a token the signer never produced: %q -> %+v", s, id)
		}
		if err != nil && id != nil {
			t.Fatal("identity returned with an error")
		}
	})
}
