package report

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Actions in ViolationRow.Action for refusals; rule hits carry the action
// the rule engine took (alert, block, pause, terminate).
const (
	ActionDenied   = "denied"
	ActionRejected = "rejected"
)

// ViolationRow is one policy violation: a real-time rule hit, or an
// access attempt Vigil refused. Token verification failures are grouped
// per source, claimed subject and reason: Time is the first, Last the
// last and Count how many.
type ViolationRow struct {
	Time  time.Time `json:"time"`
	Last  time.Time `json:"last,omitzero"`
	Count int       `json:"count"`
	// Type is the audit event type: rule.hit, ssh.auth,
	// ssh.request_denied, token.issue_denied or token.verify.
	Type    string `json:"type"`
	User    string `json:"user"`
	Target  string `json:"target"`
	Session string `json:"session"`
	Source  string `json:"source"`
	// Reason is the rule's ID for a rule hit, else why access was
	// refused (no_grant, locked, bad_signature, …).
	Reason string `json:"reason"`
	// Action is what Vigil did: the action taken on a rule hit, else
	// ActionDenied or ActionRejected.
	Action string `json:"action"`
	// Severity is the rule's; refusals carry none.
	Severity string `json:"severity"`
	// Text is what was typed, printed or asked for.
	Text string `json:"text"`
	// Detail is the rule's description or the refusal's detail.
	Detail string `json:"detail"`
	// AuditSeq is the seq of the (first) event in the audit trail.
	AuditSeq int64 `json:"audit_seq"`
}

var violationColumns = []string{"TIME", "LAST", "COUNT", "TYPE", "USER", "TARGET", "SESSION", "SOURCE", "REASON",
	"ACTION", "SEVERITY", "TEXT", "DETAIL", "AUDIT SEQ"}

func (v ViolationRow) cells() []string {
	return []string{cellTime(v.Time), cellTime(v.Last), strconv.Itoa(v.Count), v.Type, v.User, v.Target, v.Session, v.Source,
		v.Reason, v.Action, v.Severity, v.Text, v.Detail, strconv.FormatInt(v.AuditSeq, 10)}
}

// tokenFailure groups token verification failures.
type tokenFailure struct{ source, subject, reason string }

// Violations returns rule hits and refused access at or after since,
// oldest first: rule.hit events; ssh.auth events denied for a reason
// other than the token (a token refused at SSH login is also a
// token.verify failure and counted there, once); ssh.request_denied;
// token.issue_denied; and token.verify failures, grouped.
func (r *Reporter) Violations(ctx context.Context, since time.Time) ([]ViolationRow, error) {
	out := []ViolationRow{}
	groups := map[tokenFailure]int{} // index into out
	types := []string{typeRuleHit, typeSSHAuth, typeRequestDenied, typeIssueDenied, typeTokenVerify}
	err := r.scanEvents(ctx, since, types, func(e *event) error {
		v := ViolationRow{Time: e.time, Count: 1, Type: e.typ, User: e.actor, Target: e.target, Session: e.session,
			Source: e.source, AuditSeq: e.seq}
		switch e.typ {
		case typeRuleHit:
			v.Reason, v.Action, v.Severity = e.str("rule"), e.str("taken"), e.str("severity")
			v.Text, v.Detail = e.str("text"), e.str("description")
		case typeSSHAuth:
			reason := e.str("reason")
			if e.str("outcome") != "denied" || strings.HasPrefix(reason, "token_") {
				return nil
			}
			v.Reason, v.Action, v.Text, v.Detail = reason, ActionDenied, e.str("user"), e.str("detail")
		case typeRequestDenied:
			v.Action, v.Text = ActionDenied, e.str("request")
			if dest := e.str("dest"); dest != "" {
				v.Text += " " + dest
			}
			v.Reason = "prohibited"
			if needs := e.str("needs"); needs != "" {
				v.Reason = "not_granted: " + needs
			}
		case typeIssueDenied:
			// The event's target is the subject the token was asked for.
			v.Target = ""
			v.Reason, v.Action, v.Text, v.Detail = "issue_denied", ActionDenied, "token for "+e.target, e.str("reason")
		case typeTokenVerify:
			if e.str("outcome") != "rejected" {
				return nil
			}
			key := tokenFailure{e.source, e.actor, e.str("reason")}
			if i, ok := groups[key]; ok {
				out[i].Count++
				out[i].Last = e.time
				return nil
			}
			v.Last, v.Reason, v.Action, v.Detail = e.time, key.reason, ActionRejected, e.str("detail")
			if iss := e.str("iss"); iss != "" {
				v.Text = "claimed issuer " + iss
			}
			groups[key] = len(out)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Chain order is time order but for clock steps; sort to be sure.
	slices.SortStableFunc(out, func(a, b ViolationRow) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.AuditSeq, b.AuditSeq))
	})
	return out, nil
}
