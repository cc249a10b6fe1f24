package token

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/audit"
)

// Audit event types written by this package's observers.
const (
	EventVerify    = "token.verify"
	EventJWKSFetch = "issuer.jwks_fetch"
)

// Recorder turns verifications and key fetches into audit events and
// metrics. Create it with NewRecorder.
type Recorder struct {
	sink          audit.Sink
	log           *slog.Logger
	verifications *prometheus.CounterVec
	fetches       *prometheus.CounterVec
}

// NewRecorder registers its metrics with reg and appends to sink.
func NewRecorder(sink audit.Sink, reg prometheus.Registerer, log *slog.Logger) *Recorder {
	r := &Recorder{
		sink: sink,
		log:  log,
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_token_verifications_total",
			Help: "Token verifications by outcome (accepted, rejected), reason and issuer kind (vigil, external, unknown).",
		}, []string{"outcome", "reason", "issuer_kind"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_issuer_jwks_fetches_total",
			Help: "JWKS fetches of external issuers by outcome (ok, error).",
		}, []string{"issuer", "outcome"}),
	}
	reg.MustRegister(r.verifications, r.fetches)
	return r
}

// Observers returns an Observer that calls each of obs in order (nil ones
// are skipped) and stops at the first error, which fails the verification
// closed: Observers(recorder.Verified, monitor.Observe) records before it
// monitors. With no observers it records nothing.
func Observers(obs ...Observer) Observer {
	var list []Observer
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return func(ctx context.Context, a *Attempt) error {
		for _, o := range list {
			if err := o(ctx, a); err != nil {
				return err
			}
		}
		return nil
	}
}

// Verified is an Observer: it counts the attempt and appends its event.
func (r *Recorder) Verified(ctx context.Context, a *Attempt) error {
	outcome := "rejected"
	if a.Accepted {
		outcome = "accepted"
	}
	r.verifications.WithLabelValues(outcome, string(a.Reason), a.Kind).Inc()
	data := map[string]any{
		"outcome": outcome, "reason": string(a.Reason), "iss": a.Issuer, "jti": a.JTI,
		"kid": a.KID, "alg": a.Alg, "issuer_kind": a.Kind,
	}
	if a.Detail != "" {
		data["detail"] = a.Detail
	}
	if a.Cached {
		data["cached"] = true
	}
	if !a.Accepted {
		// What a refused token claimed is evidence, not fact.
		data["claims_unverified"] = true
		r.log.Info("token refused", "reason", a.Reason, "detail", a.Detail, "iss", a.Issuer, "user", a.Subject, "jti", a.JTI, "source", a.Source)
	}
	return r.sink.Append(ctx, audit.Event{Time: a.Time, Type: EventVerify, Actor: a.Subject, Source: a.Source, Data: data})
}

// Fetched is a FetchObserver: it counts, logs and records key fetches.
func (r *Recorder) Fetched(ctx context.Context, issuer string, keys int, skipped []string, err error) {
	data := map[string]any{"issuer": issuer, "keys": keys}
	if len(skipped) > 0 {
		data["skipped"] = skipped
		r.log.Warn("issuer JWKS keys skipped", "issuer", issuer, "skipped", skipped)
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		data["error"] = err.Error()
		r.log.Error("issuer JWKS fetch failed; keeping the previous keys", "issuer", issuer, "err", err)
	}
	data["outcome"] = outcome
	r.fetches.WithLabelValues(issuer, outcome).Inc()
	if aerr := r.sink.Append(context.WithoutCancel(ctx), audit.Event{Type: EventJWKSFetch, Actor: "vigil", Target: issuer, Data: data}); aerr != nil {
		r.log.Error("audit append failed", "type", EventJWKSFetch, "err", aerr)
	}
}
