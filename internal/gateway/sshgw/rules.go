package sshgw

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
)

// clearLine is what Vigil types in place of a blocked command's Enter:
// ^G first cancels any pending key sequence (an ESC already sent would
// otherwise turn ^E into readline's shell-expand-line, which runs command
// substitutions), ^E moves to the end of a readline line and ^U kills it.
// Without line editing (a canonical-mode tty) ^G and ^E are two more
// characters and ^U, the tty's kill character, erases the whole line.
const clearLine = "\x07\x05\x15"

// Alerter raises alerts; *alert.Store implements it.
type Alerter = gateway.Alerter

// ruleSet resolves the rules of the session's target (gateway.RuleSet).
func (c *conn) ruleSet() (*rules.Set, error) {
	return gateway.RuleSet(c.s.cfg.Rules, c.info.target.RulePacks, c.s.cfg.DefaultRulePacks,
		c.info.id.Claims.BreakGlass, c.s.cfg.EnforceOnBreakGlass)
}

// reportHits records rule hits (gateway.Hits.Report); text may be shown
// redacted. A hit that cannot be audited ends the session (fail closed):
// then it returns false and the caller lets nothing more through.
func (c *conn) reportHits(kind rules.Kind, text string, hits []rules.Hit, taken rules.Action) bool {
	err := gateway.Hits{Audit: c.audit, Alerts: c.s.cfg.Alerts, Log: c.s.cfg.Log, User: c.sess.User, Target: c.sess.Target,
		Session: c.sess.ID, Source: c.sess.Source}.Report(context.WithoutCancel(c.ctx), kind, text, hits, taken)
	if err != nil {
		go c.terminate(&Ended{Reason: "a rule hit cannot be audited, so the session is ended"})
		return false
	}
	return true
}

// ruleMessage is what the user is told when a rule acts.
func ruleMessage(h rules.Hit, what string) string {
	return fmt.Sprintf("%s by rule %s: %s", what, h.Rule.ID, h.Rule.Description)
}

// ruleBy is who paused or ended a session on a rule's behalf.
func ruleBy(h rules.Hit) string { return "rule " + h.Rule.ID }

// checkCommand applies command rules to an exact command (an exec
// request) and reports whether it may run. A pause waits for review
// before the command starts (see channel.start).
func (ch *channel) checkCommand(cmd string, r interface{ Reply(bool, []byte) error }, wantReply bool) bool {
	c := ch.c
	hits := c.rules.Match(rules.KindCommand, cmd)
	top, ok := rules.Strongest(hits)
	if !ok {
		return true
	}
	if !c.reportHits(rules.KindCommand, cmd, hits, top.Rule.Action) {
		if wantReply {
			r.Reply(false, nil) // the session is ending
		}
		return false
	}
	switch top.Rule.Action {
	case rules.ActionBlock:
		c.markRule(top, "blocked", cmd)
		ch.mu.Lock()
		ch.kind = "blocked"
		ch.mu.Unlock()
		if wantReply {
			r.Reply(true, nil)
		}
		ch.tell("[vigil] " + ruleMessage(top, "command blocked") + "\r\n")
		ch.client.SendRequest("exit-status", false, exitStatus(1))
		ch.up.Close() // ends the output relays; then the client gets EOF (see allowed)
		return false
	case rules.ActionPause:
		c.markRule(top, "paused for review", cmd)
		if err := c.live.Pause(ruleBy(top), "review before it runs: "+top.Rule.Description); err != nil && !errors.Is(err, session.ErrPaused) {
			if wantReply {
				r.Reply(false, nil) // the session is ending
			}
			return false
		}
	case rules.ActionTerminate:
		c.markRule(top, "terminated", cmd)
		go c.terminate(&Ended{Reason: ruleMessage(top, "terminated"), By: ruleBy(top)})
		if wantReply {
			r.Reply(false, nil)
		}
		return false
	}
	return true
}

// markRule marks the recording where a rule acted.
func (c *conn) markRule(h rules.Hit, what, text string) {
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), fmt.Sprintf("rule %s: %s: %s", h.Rule.ID, what, text))
	}
}

// commandRules reconstructs the command lines typed into a shell and, at
// each Enter, records the line as a session.command audit event (the
// full-text search finds it) and applies the command rules. It returns what may be
// forwarded of p and false if the session must stop. It runs on the input
// pump under ch.inMu.
//
// block: nothing more of the chunk is sent from the line's start on (not
// even its keys before the Enter, which may end in a key sequence's
// prefix), the line is
// cleared on the target and the user told why. pause: the Enter is held
// until an admin resumes (it is sent then) or ends the session; the rest
// of the chunk, which the rules have not seen, is dropped. terminate:
// nothing more is sent. A shell without a terminal cannot have a line
// cleared: there block ends the session.
func (ch *channel) commandRules(p []byte) ([]byte, bool) {
	c := ch.c
	ch.lineChunks++
	for off := 0; off < len(p); {
		// p[:lineStart] holds whole lines the rules let through.
		lineStart := off
		if ch.editor.Empty() {
			ch.linePrompt = ch.promptNow()
		}
		n, line, submitted := ch.editor.Feed(p[off:])
		off += n
		if !submitted || n <= 0 {
			break
		}
		chunks, linePrompt := ch.lineChunks, ch.linePrompt
		ch.lineChunks = 0
		if strings.TrimSpace(line) == "" {
			continue
		}
		shown := redactSecrets(line)
		switch {
		case ch.typedUnechoed(line, chunks):
			// Typed key by key and never echoed: a password prompt,
			// not a command. Rules still act; the text is not
			// repeated in the audit log and alerts.
			shown = "[input typed without echo]"
		case secretPrompt(ch.promptNow()), secretPrompt(linePrompt) && strings.HasPrefix(ch.promptNow(), linePrompt):
			// Typed (or pasted) at a prompt for a secret: the screen
			// ends in it (nothing echoed), or the line began at it and
			// the screen still shows it (an echoing prompt, such as aws
			// configure's). A prompt left with ^C is gone from the
			// screen, so the next command is not hidden. Kept out of
			// the audit log the same way.
			shown = "[input at a password prompt]"
		case lineStart > 0 && secretLooking(line):
			// Typed ahead in one chunk behind another line, before the
			// target could answer (sudo -S, a pasted password): what
			// looks like a secret is not kept.
			shown = "[typed-ahead input that looks like a secret]"
		}
		if ch.editor.Uncertain() {
			shown += " (reconstructed: may differ from what the shell ran)"
		}
		// The command is on record before its Enter is sent; if it
		// cannot be, nothing more is (fail closed).
		if err := c.audit("session.command", map[string]any{"command": shown}); err != nil {
			go c.terminate(&Ended{Reason: "the session's commands cannot be audited, so it is ended"})
			return p[:lineStart], false
		}
		hits := c.rules.Match(rules.KindCommand, line)
		top, ok := rules.Strongest(hits)
		if !ok {
			continue
		}
		if !c.reportHits(rules.KindCommand, shown, hits, top.Rule.Action) {
			return p[:lineStart], false
		}
		enter := off - 1
		action := top.Rule.Action
		if action == rules.ActionBlock && !ch.mode().pty {
			action = rules.ActionTerminate
		}
		switch action {
		case rules.ActionBlock:
			c.markRule(top, "blocked", shown)
			ch.editor.Reset()
			go c.notifyChannels(ruleMessage(top, "command blocked"), []*channel{ch})
			return append(append(make([]byte, 0, lineStart+len(clearLine)), p[:lineStart]...), clearLine...), true
		case rules.ActionPause:
			c.markRule(top, "paused for review", shown)
			if err := c.live.Pause(ruleBy(top), "review before it runs: "+top.Rule.Description); err != nil && !errors.Is(err, session.ErrPaused) {
				return nil, false // the session is ending: nothing more goes
			}
			ch.held = []byte{p[enter]}
			return p[:enter], true
		case rules.ActionTerminate:
			c.markRule(top, "terminated", shown)
			go c.terminate(&Ended{Reason: ruleMessage(top, "terminated"), By: ruleBy(top)})
			return p[:lineStart], false
		}
	}
	return p, true
}

// typedUnechoed reports whether line looks like a secret: typed over
// several chunks (not pasted) with none of its characters echoed back.
func (ch *channel) typedUnechoed(line string, chunks int) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return chunks > 1 && ch.keys != nil && ch.keys.Unechoed() >= len(strings.TrimSpace(line))
}

// releaseHeld sends what a pause rule held back, after an admin resumed
// the session. The input pump sends it first if the user types before
// this runs. If the session was paused again meanwhile (or is ending), it
// stays held.
func (ch *channel) releaseHeld() {
	ch.inMu.Lock()
	defer ch.inMu.Unlock()
	if ch.held == nil || ch.c.live.Paused() || ch.c.ctx.Err() != nil {
		return
	}
	held := ch.held
	ch.held = nil
	if ch.recordInput(held) {
		ch.up.Write(held)
	}
}

// outputRules applies output rules to the lines the target prints.
// alert and pause act as for commands; block cannot withhold what is
// already printing, so it pauses the session for review instead.
func (ch *channel) outputRules(p []byte) {
	c := ch.c
	ch.outLines.Feed(p, func(line string) {
		hits := c.rules.Match(rules.KindOutput, line)
		top, ok := rules.Strongest(hits)
		if !ok {
			return
		}
		// Reported off the relay path (this runs under ch.mu): output
		// full of hits must not stall the session on the audit log.
		go c.reportHits(rules.KindOutput, line, hits, top.Rule.Action)
		switch top.Rule.Action {
		case rules.ActionPause, rules.ActionBlock:
			c.markRule(top, "paused for review", line)
			go c.live.Pause(ruleBy(top), "output needs review: "+top.Rule.Description)
		case rules.ActionTerminate:
			c.markRule(top, "terminated", line)
			go c.terminate(&Ended{Reason: ruleMessage(top, "terminated"), By: ruleBy(top)})
		}
	})
}
