// Package token owns Vigil's JSON Web Tokens: the signing keyring (keys
// sealed under the master key, rotation, the published JWKS), issuing
// Vigil's own tokens, the revocation list, the key sets of trusted external
// identity providers, and the one Verifier that judges every token
// presented to Vigil, whoever issued it, recording each verification.
//
// It decides whether a token is genuine and valid, not what its holder
// may do: that is package policy. The rules the Verifier enforces are
// listed in the README ("Tokens"); each has a Reason.
//
// Files: claims.go (claim types), keys.go (algorithm allow-list, key
// pinning, JWKS keys), keyring.go (Vigil's signing keys), issue.go
// (Signer), issuers.go (external issuers and their JWKS), revocation.go,
// verify.go (Verifier), jose.go (header, payload and encoding rules),
// cache.go (verified-token cache), observe.go (audit events and metrics).
package token
