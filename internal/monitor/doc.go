// Package monitor owns Vigil's token security monitoring: it examines
// every token verification (token.Attempt, handed over by the Verifier's
// Observer) for forged, replayed, stolen and out-of-policy tokens, and
// raises alerts of kind "monitor" whose rule is the detector's name:
//
//	alg_none          alg "none", an HMAC, a disallowed algorithm or not the key's
//	signature_burst   bursts of bad signatures from one source or for one subject
//	unknown_kid       unknown key ids, and storms of them (JWKS refresh storms)
//	expired_replay    expired tokens presented well past their expiry
//	revoked_reuse     revoked tokens presented again
//	source_change     a token used from another network than its first use, or outside its src
//	lifetime_policy   trusted tokens without exp or living longer than policy
//	header_injection  jku, x5u, x5c, jwk, crit headers and suspicious kids
//	breakglass_use    every use of a break-glass token
//	unusual_hours     a user active far outside their usual hours
//	key_age           the active signing key older than the rotation policy
//	monitor_overloaded  verifications dropped unexamined (queue full)
//
// Verification never waits for the monitor: Observe copies the attempt
// into a bounded queue and returns; Run's goroutine examines it. Findings
// are deduplicated into incidents (detector and key, e.g. a source
// network or a jti) and rate-limited per detector and severity; what is
// suppressed is counted and reported in a later summary alert. Every
// table of per-source, per-subject and per-token state is bounded.
// Evidence is the attempt's jti, kid, alg, issuer, subject (marked
// unverified when the signature was not valid), source and reason, never
// the token.
//
// It does not verify tokens (package token does), store or deliver
// alerts (package alert does), or serve them (package api).
//
// Files: config.go (Config and defaults), monitor.go (Monitor, queue,
// Run, raising, key age, metrics), detect.go (the token detectors and
// evidence), hours.go (usual-hours baselines), incident.go (dedup, rate
// cap, summaries), table.go (bounded tables and sliding windows).
package monitor
