// Package gateway owns what Vigil's gateways (sshgw, pggw) share about a
// session that is neither the protocol nor the session record: the
// accept loop, the client's address, which rules apply to a session and
// how a rule hit is reported.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/token"
)

// Denial is the audit event of a refused login: of type typ, for the
// user name and target the client gave, with the reason, a detail when
// there is one, and the token's subject and jti when it was valid.
func Denial(typ, user, target, source, reason, detail string, id *token.Identity) audit.Event {
	data := map[string]any{"outcome": "denied", "reason": reason, "user": user}
	if detail != "" {
		data["detail"] = detail
	}
	e := audit.Event{Type: typ, Target: target, Source: source, Data: data}
	if id != nil {
		e.Actor = id.Claims.Subject
		data["jti"] = id.Claims.ID
	}
	return e
}

// Serve accepts connections on ln until ctx ends, running handle for
// each on its own goroutine; then it closes the listener, calls
// closeAll (which ends the live sessions) and waits for every handle to
// return. Temporary accept errors are retried; others are returned,
// prefixed with name.
func Serve(ctx context.Context, name string, ln net.Listener, handle func(net.Conn), closeAll func()) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				closeAll()
				wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("%s: accept: %w", name, err)
		}
		wg.Go(func() { handle(nc) })
	}
}

// AddrOf is the IP address of a connection's remote end, or the zero
// Addr for anything else.
func AddrOf(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// RuleSet resolves the rules of a session: the target's own packs, or
// defaults when it names none; on a break-glass token, unless enforce,
// every action reduced to alert (an emergency is never stopped, every
// hit still reported). A nil engine means no rules.
func RuleSet(engine *rules.Engine, targetPacks, defaults []string, breakGlass, enforce bool) (*rules.Set, error) {
	if engine == nil {
		return nil, nil
	}
	packs := targetPacks
	if len(packs) == 0 {
		packs = defaults
	}
	set, err := engine.Set(packs)
	if err != nil || !breakGlass || enforce {
		return set, err
	}
	return set.AlertOnly(), nil
}

// Alerter raises alerts; *alert.Store implements it.
type Alerter interface {
	Raise(ctx context.Context, a alert.Alert) (alert.Alert, bool, error)
}

// Hits reports a session's rule hits.
type Hits struct {
	// Audit appends a session event (the gateway's own, which fills in
	// who, where and which session).
	Audit func(typ string, data map[string]any) error
	// Alerts receives the hits as alerts; nil means audit events only.
	Alerts Alerter
	Log    *slog.Logger
	// The session the hits are in.
	User, Target, Session, Source string
}

// Report records hits on text: a rule.hit audit event each (durable
// before the action proceeds) and an alert. taken is what the gateway
// did (the strongest action of the hits); text may be shown redacted.
// It returns the first audit failure: the gateway must then not let the
// action proceed (the gateways end the session), since the hit would
// leave no trace. An alert that cannot be raised is only logged: the
// audit event is the record.
func (r Hits) Report(ctx context.Context, kind rules.Kind, text string, hits []rules.Hit, taken rules.Action) error {
	var failed error
	for _, h := range hits {
		err := r.Audit("rule.hit", map[string]any{"rule": h.Rule.ID, "pack": h.Rule.Pack, "kind": string(kind), "severity": string(h.Rule.Severity),
			"action": string(h.Rule.Action), "taken": string(taken), "text": text, "description": h.Rule.Description})
		if err != nil && failed == nil {
			failed = fmt.Errorf("gateway: rule %s hit not audited: %w", h.Rule.ID, err)
		}
		if r.Alerts == nil {
			continue
		}
		sev, err := alert.ParseSeverity(string(h.Rule.Severity))
		if err != nil {
			sev = alert.Medium
		}
		_, _, err = r.Alerts.Raise(ctx, alert.Alert{
			Severity: sev, Kind: "rule", Rule: h.Rule.ID, Actor: r.User, Target: r.Target, Session: r.Session, Source: r.Source,
			Summary:  fmt.Sprintf("%s (%s, %s)", h.Rule.Description, h.Rule.ID, taken),
			Data:     map[string]any{"text": text, "kind": string(kind), "pack": h.Rule.Pack, "action": string(h.Rule.Action), "taken": string(taken)},
			DedupKey: "rule|" + r.Session + "|" + h.Rule.ID + "|" + text,
		})
		if err != nil {
			r.Log.Error("alert not raised", "session", r.Session, "user", r.User, "target", r.Target, "rule", h.Rule.ID, "err", err)
		}
	}
	return failed
}
