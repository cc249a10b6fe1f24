package token

import (
	"context"
	"fmt"
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
