package pggw

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
)

// verdict is what the guard decided about a statement.
type verdict struct {
	// block is set when the statement must not reach the database: the
	// SQLSTATE and message the client gets.
	block       bool
	code        string
	msg, hint   string
	rule        string // the rule (or "read-only") that decided
	terminate   bool
	termMessage string
}

// ruleSet resolves the target's rules as the SSH gateway does: its own
// packs or the default ones; on a break-glass token, unless enforced,
// every action reduced to alert.
func (c *conn) ruleSet() (*rules.Set, error) {
	if c.s.cfg.Rules == nil {
		return nil, nil
	}
	packs := c.info.target.RulePacks
	if len(packs) == 0 {
		packs = c.s.cfg.DefaultRulePacks
	}
	set, err := c.s.cfg.Rules.Set(packs)
	if err != nil || !c.sess.BreakGlass || c.s.cfg.EnforceOnBreakGlass {
		return set, err
	}
	return set.AlertOnly(), nil
}

// guard checks sql (a simple query string or one parsed statement)
// before it is forwarded: the read-only grant, then the SQL rules. Hits
// are audited (durably, before anything proceeds) and alerted. A pause
// holds the statement here until an admin resumes the session.
func (c *conn) guard(sql string) verdict {
	if c.info.readOnly {
		if v := rules.CheckReadOnly(sql); v != nil {
			c.audit("db.read_only_refused", map[string]any{"text": clip(v.Statement, 4096), "reason": v.Reason})
			c.mark(fmt.Sprintf("read-only grant: refused: %s", clip(v.Statement, 512)))
			return verdict{block: true, code: stateReadOnlyTx, rule: "read-only",
				msg:  "Vigil: this grant is read-only: " + v.Reason,
				hint: "Ask for a grant without read-only if this change is needed."}
		}
	}
	if !c.rules.Has(rules.KindSQL) {
		return verdict{}
	}
	hits := c.rules.Match(rules.KindSQL, sql)
	top, ok := rules.Strongest(hits)
	if !ok {
		return verdict{}
	}
	c.reportHits(sql, hits, top.Rule.Action)
	switch top.Rule.Action {
	case rules.ActionBlock:
		c.mark(fmt.Sprintf("rule %s: blocked: %s", top.Rule.ID, clip(top.Text, 512)))
		return verdict{block: true, code: stateInsufficientPriv, rule: top.Rule.ID,
			msg:  fmt.Sprintf("Vigil blocked this statement (rule %s): %s", top.Rule.ID, top.Rule.Description),
			hint: "The session continues. Ask a Vigil administrator if this statement is needed."}
	case rules.ActionTerminate:
		c.mark(fmt.Sprintf("rule %s: terminated: %s", top.Rule.ID, clip(top.Text, 512)))
		return verdict{terminate: true, rule: top.Rule.ID,
			termMessage: fmt.Sprintf("statement refused by rule %s: %s", top.Rule.ID, top.Rule.Description)}
	case rules.ActionPause:
		c.mark(fmt.Sprintf("rule %s: paused for review: %s", top.Rule.ID, clip(top.Text, 512)))
		err := c.live.Pause("rule "+top.Rule.ID, "review before it runs: "+top.Rule.Description)
		if err != nil && !errors.Is(err, session.ErrPaused) {
			return verdict{terminate: true, rule: top.Rule.ID, termMessage: "the session is ending"}
		}
		if err := c.live.Wait(c.ctx); err != nil {
			return verdict{terminate: true, rule: top.Rule.ID, termMessage: "the session ended while the statement waited for review"}
		}
		return verdict{rule: top.Rule.ID}
	}
	return verdict{rule: top.Rule.ID}
}

// mark puts a marker into the recording.
func (c *conn) mark(label string) {
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), label)
	}
}

// reportHits records rule hits: a rule.hit audit event each (durable
// before the statement proceeds) and an alert.
func (c *conn) reportHits(text string, hits []rules.Hit, taken rules.Action) {
	for _, h := range hits {
		data := map[string]any{"rule": h.Rule.ID, "pack": h.Rule.Pack, "kind": string(rules.KindSQL), "severity": string(h.Rule.Severity),
			"action": string(h.Rule.Action), "taken": string(taken), "text": clip(h.Text, 4096), "description": h.Rule.Description}
		c.audit("rule.hit", data)
		if c.s.cfg.Alerts == nil {
			continue
		}
		sev, err := alert.ParseSeverity(string(h.Rule.Severity))
		if err != nil {
			sev = alert.Medium
		}
		_, _, err = c.s.cfg.Alerts.Raise(context.WithoutCancel(c.ctx), alert.Alert{
			Severity: sev, Kind: "rule", Rule: h.Rule.ID, Actor: c.sess.User, Target: c.sess.Target, Session: c.sess.ID,
			Source:   c.sess.Source,
			Summary:  fmt.Sprintf("%s (%s, %s)", h.Rule.Description, h.Rule.ID, taken),
			Data:     map[string]any{"text": clip(h.Text, 4096), "kind": string(rules.KindSQL), "pack": h.Rule.Pack, "action": string(h.Rule.Action), "taken": string(taken)},
			DedupKey: "rule|" + c.sess.ID + "|" + h.Rule.ID + "|" + clip(h.Text, 256),
		})
		if err != nil {
			c.s.cfg.Log.Error("alert not raised", append(c.log(), "rule", h.Rule.ID, "err", err)...)
		}
	}
}

// substitute is the statement Vigil sends in place of a blocked one: it
// raises v's error in the database, so the client gets a genuine
// ErrorResponse in the right place of the protocol and a transaction in
// progress is aborted, exactly as if the database had refused the
// statement itself. It needs PL/pgSQL (installed in every database since
// PostgreSQL 9.0) and is allowed in read-only transactions.
func substitute(v verdict) string {
	q := func(s string) string {
		// The body's closing tag cannot occur inside it.
		s = strings.ReplaceAll(s, "$vigil_blocked$", "$ vigil_blocked $")
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	return "DO $vigil_blocked$BEGIN RAISE EXCEPTION USING ERRCODE = " + q(v.code) + ", MESSAGE = " + q(v.msg) +
		", HINT = " + q(v.hint) + "; END$vigil_blocked$"
}
