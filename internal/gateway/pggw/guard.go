package pggw

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
)

// verdict is what the guard decided about a statement.
type verdict struct {
	// block is set when the statement must not reach the database: the
	// SQLSTATE and message the client gets.
	block     bool
	code      string
	msg, hint string
	rule      string // the rule (or "read-only") that decided
	// end, when set, ends the session instead.
	end *ended
	// copyIn is set when the statement may start a COPY FROM STDIN.
	copyIn bool
}

// ruleSet resolves the rules of the session's target (gateway.RuleSet).
func (c *conn) ruleSet() (*rules.Set, error) {
	return gateway.RuleSet(c.s.cfg.Rules, c.info.target.RulePacks, c.s.cfg.DefaultRulePacks, c.sess.BreakGlass, c.s.cfg.EnforceOnBreakGlass)
}

// guard checks sql (a simple query string or one parsed statement)
// before it is forwarded: the read-only grant, then the SQL rules. Hits
// are audited (durably, before anything proceeds) and alerted. A pause
// holds the statement here until an admin resumes the session.
func (c *conn) guard(sql string) verdict {
	v := c.check(sql)
	if !v.block && v.end == nil && mentionsCopy(sql) {
		in, out := rules.CopyStreams(sql)
		v.copyIn = in
		if out && c.s.cfg.Masking.Enabled() {
			c.audit("db.copy_refused", map[string]any{"text": clip(sql, 4096)})
			c.mark("COPY TO STDOUT refused: result masking is on")
			return verdict{block: true, code: stateFeatureNotSupp, rule: "masking",
				msg:  "Vigil: COPY TO STDOUT is refused while result masking is on: Vigil cannot mask COPY data",
				hint: "Use SELECT, whose results Vigil masks."}
		}
	}
	return v
}

// mentionsCopy reports whether sql holds the word COPY in any case: a
// cheap test before rules.CopyStreams, which reads the whole statement.
func mentionsCopy(sql string) bool {
	for i := 0; i+4 <= len(sql); i++ {
		if sql[i]|0x20 == 'c' && sql[i+1]|0x20 == 'o' && sql[i+2]|0x20 == 'p' && sql[i+3]|0x20 == 'y' {
			return true
		}
	}
	return false
}

// check applies the read-only grant and the SQL rules to sql.
func (c *conn) check(sql string) verdict {
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
	if err := c.reportHits(hits, top.Rule.Action); err != nil {
		// The hit would leave no trace: nothing more runs (fail closed).
		return verdict{rule: top.Rule.ID, end: &ended{reason: "a rule hit cannot be audited, so the session is ended", code: stateConnectionFailure}}
	}
	switch top.Rule.Action {
	case rules.ActionBlock:
		c.mark(fmt.Sprintf("rule %s: blocked: %s", top.Rule.ID, clip(top.Text, 512)))
		return verdict{block: true, code: stateInsufficientPriv, rule: top.Rule.ID,
			msg:  fmt.Sprintf("Vigil blocked this statement (rule %s): %s", top.Rule.ID, top.Rule.Description),
			hint: "The session continues. Ask a Vigil administrator if this statement is needed."}
	case rules.ActionTerminate:
		c.mark(fmt.Sprintf("rule %s: terminated: %s", top.Rule.ID, clip(top.Text, 512)))
		return verdict{rule: top.Rule.ID, end: ruleEnd(top.Rule.ID, fmt.Sprintf("statement refused by rule %s: %s", top.Rule.ID, top.Rule.Description))}
	case rules.ActionPause:
		c.mark(fmt.Sprintf("rule %s: paused for review: %s", top.Rule.ID, clip(top.Text, 512)))
		err := c.live.Pause("rule "+top.Rule.ID, "review before it runs: "+top.Rule.Description)
		if err != nil && !errors.Is(err, session.ErrPaused) {
			return verdict{rule: top.Rule.ID, end: ruleEnd(top.Rule.ID, "the session is ending")}
		}
		if err := c.live.Wait(c.ctx); err != nil {
			return verdict{rule: top.Rule.ID, end: ruleEnd(top.Rule.ID, "the session ended while the statement waited for review")}
		}
		return verdict{rule: top.Rule.ID}
	}
	return verdict{rule: top.Rule.ID}
}

// ruleEnd is how a session ends on rule id's behalf.
func ruleEnd(id, reason string) *ended {
	return &ended{reason: reason, by: "rule " + id, code: stateInsufficientPriv}
}

// mark puts a marker into the recording.
func (c *conn) mark(label string) {
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), label)
	}
}

// reportHits records rule hits (gateway.Hits.Report), each with the
// statement it hit, and returns the first audit failure.
func (c *conn) reportHits(hits []rules.Hit, taken rules.Action) error {
	r := gateway.Hits{Audit: c.audit, Alerts: c.s.cfg.Alerts, Log: c.s.cfg.Log, User: c.sess.User, Target: c.sess.Target,
		Session: c.sess.ID, Source: c.sess.Source}
	var failed error
	for _, h := range hits {
		if err := r.Report(context.WithoutCancel(c.ctx), rules.KindSQL, clip(h.Text, 4096), []rules.Hit{h}, taken); err != nil && failed == nil {
			failed = err
		}
	}
	return failed
}

// substitute is the statement Vigil sends in place of a blocked one: it
// raises v's error in the database, so the client gets a genuine
// ErrorResponse in the right place of the protocol and a transaction in
// progress is aborted, exactly as if the database had refused the
// statement itself. It needs PL/pgSQL (installed in every database since
// PostgreSQL 9.0) and is allowed in read-only transactions. The texts
// are dollar-quoted under random tags that occur in none of them, so no
// setting (standard_conforming_strings, backslash_quote) changes how
// they read.
func substitute(v verdict) string {
	all := v.code + v.msg + v.hint
	tag := func(avoid string) string {
		for {
			t := "$v" + rand.Text()[:12] + "$"
			if !strings.Contains(avoid, t) {
				return t
			}
		}
	}
	in := tag(all)
	q := func(s string) string { return in + s + in }
	body := "BEGIN RAISE EXCEPTION USING ERRCODE = " + q(v.code) + ", MESSAGE = " + q(v.msg) + ", HINT = " + q(v.hint) + "; END"
	out := tag(body)
	return "DO " + out + body + out
}
