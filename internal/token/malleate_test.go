package token

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"testing"
)

// malleateES256 returns raw with its ES256 signature (r, s) replaced by
// (r, n-s), the other valid signature of the same message.
func malleateES256(t *testing.T, raw string) string {
	t.Helper()
	p := splitToken(raw)
	sig, err := base64.RawURLEncoding.DecodeString(p[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("bad ES256 signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	out := make([]byte, 64)
	copy(out, sig[:32])
	s.FillBytes(out[32:])
	return p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(out)
}
