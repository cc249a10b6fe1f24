package token

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkVerify measures full verification (parse, header and claim
// rules, signature, revocation) per algorithm, uncached, and a repeated
// token served by the cache. Run with -cpu 1 for per-core figures.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		f := newFixture(b, alg)
		f.v.cfg.Observe = nil
		// Distinct tokens so nothing could be reused across iterations.
		toks := make([]string, 1024)
		for i := range toks {
			toks[i], _ = f.issue(b, Request{Subject: fmt.Sprintf("user%d", i), Grants: []Grant{{Target: "web1", Login: "root", Actions: []string{ActionShell, ActionExec}}}})
		}
		b.Run(alg, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := f.v.Verify(ctx, toks[i%len(toks)], loopback); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		if alg == AlgEdDSA {
			f.v.cache = newVerifyCache(4096)
			b.Run("EdDSA-repeated", func(b *testing.B) {
				for b.Loop() {
					if _, err := f.v.Verify(ctx, toks[0], loopback); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSignatureOnly is the floor under BenchmarkVerify: the bare
// signature check of the same tokens with the standard library, no JOSE,
// no claims. bench/verify.sh reports Verify as a ratio to it.
func BenchmarkSignatureOnly(b *testing.B) {
	f := newFixture(b, AlgEdDSA)
	raw, _ := f.issue(b, Request{Subject: "user0", Grants: []Grant{{Target: "web1", Login: "root", Actions: []string{ActionShell, ActionExec}}}})
	dot := strings.LastIndexByte(raw, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(raw[dot+1:])
	pub := f.kr.signer().pub.(ed25519.PublicKey)
	msg := []byte(raw[:dot])
	b.Run("EdDSA", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad signature")
			}
		}
	})
}
