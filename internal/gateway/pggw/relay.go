package pggw

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/rules"
)

// Limits on what the session keeps.
const (
	// maxStatements caps the prepared statements, and the portals, a
	// session may hold open through Vigil.
	maxStatements = 10000
	// maxPortalFlags bounds the client pump's notes on portals; beyond
	// it, notes that only save a Describe are forgotten.
	maxPortalFlags = 4096
	// maxShownArgs caps the parameters shown in the transcript.
	maxShownArgs = 16
	// blockedName names the statement and portal of a blocked Parse's
	// substitute, so the client's unnamed ones are left alone.
	blockedName = "vigil.blocked"
)

// clientState is the client pump's view of the extended protocol. What
// the statements and portals hold is the tracker's (in the order the
// database answered); the client pump keeps only what it must decide
// as it forwards: whether an Execute may start a COPY FROM STDIN, and
// whether its portal's columns are known.
type clientState struct {
	// copyStmts are the statements parsed, ever, with a COPY FROM STDIN
	// (the unnamed one as it is now).
	copyStmts map[string]bool
	portals   map[string]portalFlags
	// skipping is set after Vigil refused a message of an extended
	// batch: like the database after an error, it drops everything up
	// to the Sync.
	skipping bool
	// copyWait is the forwarded request that may start a COPY FROM
	// STDIN: the client pump reads nothing more until the database has
	// started it (inCopy) or answered the request.
	copyWait <-chan bool
	inCopy   bool
}

// portalFlags are the client pump's notes on a portal.
type portalFlags struct {
	bound     bool // by a Bind Vigil relayed (else a cursor declared in SQL)
	described bool // a Describe of it was forwarded since that Bind
	copy      bool // it may run a COPY FROM STDIN
}

// clientPump relays the client's messages to the database: statements
// are guarded, tracked for the log and held while the session is
// paused. Output is flushed whenever the client has nothing more
// buffered.
func (c *conn) clientPump() {
	cr := &msgReader{r: c.cl.r, max: c.s.cfg.MaxMessage}
	st := &clientState{copyStmts: map[string]bool{}, portals: map[string]portalFlags{}}
	for {
		if cr.buffered() == 0 {
			if err := c.uw.Flush(); err != nil {
				return
			}
		}
		typ, body, err := cr.next()
		if err != nil {
			c.clientError(err)
			return
		}
		c.bytesUp.Add(int64(5 + len(body)))
		c.touch()
		if st.inCopy {
			handled, ok := c.onCopyMessage(st, typ, body)
			if !ok {
				return
			}
			if handled {
				continue
			}
		}
		if err := c.live.Wait(c.ctx); err != nil {
			return
		}
		if st.skipping && typ != 'S' && typ != 'X' {
			continue
		}
		var ok bool
		switch typ {
		case 'Q':
			ok = c.onQuery(st, body)
		case 'P':
			ok = c.onParse(st, body)
		case 'B':
			ok = c.onBind(st, body)
		case 'D':
			ok = c.onDescribe(st, body)
		case 'E':
			ok = c.onExecute(st, body)
		case 'C':
			ok = c.onClose(st, body)
		case 'S':
			st.skipping = false
			c.tr.push(&pending{kind: reqSync})
			ok = c.forward(typ, body)
		case 'F':
			ok = c.onFunctionCall(body)
		case 'H': // Flush
			ok = c.forward(typ, body)
		case 'd', 'c', 'f':
			// COPY data after the COPY ended (the database had an
			// error): the database drops it, as PostgreSQL documents.
			ok = c.forward(typ, body)
		case 'X':
			c.forward(typ, body)
			c.uw.Flush()
			return
		default:
			c.protocolError(fmt.Sprintf("unexpected message type %q", typ))
			return
		}
		if !ok {
			return
		}
		if st.copyWait != nil && !c.awaitCopy(st) {
			return
		}
	}
}

// awaitCopy holds the client's messages after a request that may start
// a COPY FROM STDIN, until the database starts one (the client's next
// messages are its data) or answers the request. Relaying on would let
// the database take requests as COPY data, or COPY data as requests,
// and the tracker fall out of step.
func (c *conn) awaitCopy(st *clientState) bool {
	if err := c.uw.Flush(); err != nil {
		return false
	}
	for {
		select {
		case started, open := <-st.copyWait:
			switch {
			case !open:
				st.copyWait = nil
				return true
			case started:
				st.inCopy = true
				return true
			}
		case <-c.ctx.Done():
			return false
		}
	}
}

// onCopyMessage relays a message sent during a COPY FROM STDIN, and
// reports whether it was one (else the COPY is over: an error ended it
// and the message is the client's next request).
func (c *conn) onCopyMessage(st *clientState, typ byte, body []byte) (handled, ok bool) {
	switch typ {
	case 'd':
		return true, c.forward(typ, body)
	case 'c', 'f': // CopyDone, CopyFail
		// The Flush makes the database send the COPY's outcome now, in
		// the extended protocol too.
		st.inCopy = false
		if !c.forward(typ, body) || !c.forward('H', nil) {
			return true, false
		}
		return true, c.awaitCopy(st)
	case 'H', 'S':
		// The database ignores Flush and Sync during COPY FROM STDIN.
		return true, true
	}
	// The database may have left the COPY (an error ended it): then the
	// message is the client's next request.
	for {
		select {
		case started, open := <-st.copyWait:
			if open && started {
				continue
			}
			st.copyWait, st.inCopy = nil, false
			return false, true
		default:
			c.protocolError(fmt.Sprintf("message type %q during COPY FROM STDIN", typ))
			return true, false
		}
	}
}

// clientError ends the relay on a read error: a client that left, or
// one that sent something Vigil refuses.
func (c *conn) clientError(err error) {
	var tl *errTooLarge
	switch {
	case c.ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &tl):
		c.audit("db.protocol_error", map[string]any{"error": tl.Error()})
		c.terminate(&ended{reason: "a message exceeds Vigil's limit: " + tl.Error(), code: stateProgramLimit})
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The client vanished mid-message (mid-COPY, say): the database
		// rolls back what it had not committed when its leg closes.
		c.audit("db.client_vanished", map[string]any{"error": err.Error()})
	default:
		c.protocolError(err.Error())
	}
}

// protocolError ends the session on a message Vigil cannot relay.
func (c *conn) protocolError(msg string) {
	c.audit("db.protocol_error", map[string]any{"error": msg})
	c.terminate(&ended{reason: "protocol violation: " + msg, code: stateProtocolViolation})
}

// forward queues one message for the database as it came.
func (c *conn) forward(typ byte, body []byte) bool {
	return writeRaw(c.uw, typ, body) == nil
}

// send queues messages Vigil made for the database.
func (c *conn) send(msgs ...encoder) bool {
	return writeMsg(c.uw, msgs...) == nil
}

// onQuery handles a simple query: guarded, each statement tracked.
func (c *conn) onQuery(st *clientState, body []byte) bool {
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		c.protocolError("malformed Query: " + err.Error())
		return false
	}
	now := c.s.cfg.Now()
	v := c.guard(q.String)
	if v.end != nil {
		c.terminate(v.end)
		return false
	}
	if v.block {
		e := &execution{text: q.String, protocol: "simple", start: now, blocked: true, rule: v.rule}
		c.tr.push(&pending{kind: reqQuery, execs: []*execution{e}})
		return c.send(&pgproto3.Query{String: substitute(v)})
	}
	p := &pending{kind: reqQuery}
	for _, text := range rules.Statements(q.String) {
		p.execs = append(p.execs, &execution{text: text, protocol: "simple", start: now, rule: v.rule})
	}
	if len(p.execs) == 0 {
		p.execs = []*execution{{text: q.String, protocol: "simple", start: now}}
	}
	if v.copyIn {
		p.copyEvents = make(chan bool, 2)
	}
	if c.tr.push(p) && p.copyEvents != nil {
		st.copyWait = p.copyEvents
	}
	return c.forward('Q', body)
}

// onParse handles Parse: guarded; a refused statement is replaced by
// Vigil's substitute (see substitute), under a name of Vigil's so the
// client's unnamed statement and portal are left alone, and the rest of
// the batch dropped, as the database does after an error.
func (c *conn) onParse(st *clientState, body []byte) bool {
	var m pgproto3.Parse
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Parse: " + err.Error())
		return false
	}
	v := c.guard(m.Query)
	if v.end != nil {
		c.terminate(v.end)
		return false
	}
	if v.block {
		st.skipping = true
		e := &execution{text: m.Query, protocol: "extended", start: c.s.cfg.Now(), blocked: true, rule: v.rule, resolved: true}
		c.tr.push(&pending{kind: reqClose, obj: 'S', name: blockedName, swallow: true})
		c.tr.push(&pending{kind: reqParse, name: blockedName, st: &stmt{text: m.Query}, swallow: true})
		c.tr.push(&pending{kind: reqBind, name: blockedName, stmtName: blockedName, swallow: true})
		c.tr.push(&pending{kind: reqExecute, name: blockedName, execs: []*execution{e}})
		return c.send(&pgproto3.Close{ObjectType: 'S', Name: blockedName},
			&pgproto3.Parse{Name: blockedName, Query: substitute(v)},
			&pgproto3.Bind{DestinationPortal: blockedName, PreparedStatement: blockedName},
			&pgproto3.Execute{Portal: blockedName})
	}
	if v.copyIn {
		if _, ok := st.copyStmts[m.Name]; !ok && len(st.copyStmts) >= maxStatements {
			c.terminate(&ended{reason: fmt.Sprintf("more than %d COPY statements prepared", maxStatements), code: stateProgramLimit})
			return false
		}
		st.copyStmts[m.Name] = true
	} else if m.Name == "" {
		// A Parse replaces the unnamed statement, even one that fails.
		delete(st.copyStmts, "")
	}
	c.tr.push(&pending{kind: reqParse, name: m.Name, st: &stmt{text: m.Query, params: len(m.ParameterOIDs)}})
	return c.forward('P', body)
}

// onBind handles Bind: the portal's statement and (for the transcript)
// its parameters.
func (c *conn) onBind(st *clientState, body []byte) bool {
	var m pgproto3.Bind
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Bind: " + err.Error())
		return false
	}
	f := st.portals[m.DestinationPortal]
	// A Bind that fails leaves an existing portal as it was: the notes
	// that matter (may it COPY) only ever add up.
	f.bound, f.described, f.copy = true, false, f.copy || st.copyStmts[m.PreparedStatement]
	st.setPortal(m.DestinationPortal, f)
	c.tr.push(&pending{kind: reqBind, name: m.DestinationPortal, stmtName: m.PreparedStatement,
		params: len(m.Parameters), args: showArgs(m.Parameters, m.ParameterFormatCodes)})
	return c.forward('B', body)
}

// setPortal notes f for the portal called name. Past maxPortalFlags the
// notes that only spare a Describe are dropped (portals end with their
// transaction, which the client pump does not see).
func (st *clientState) setPortal(name string, f portalFlags) {
	if _, ok := st.portals[name]; !ok && len(st.portals) >= maxPortalFlags {
		for k, v := range st.portals {
			if !v.copy {
				delete(st.portals, k)
			}
		}
	}
	st.portals[name] = f
}

// showArgs renders bound parameters for the transcript.
func showArgs(args [][]byte, formats []int16) string {
	if len(args) == 0 {
		return ""
	}
	var b strings.Builder
	for i, a := range args {
		if i == maxShownArgs {
			fmt.Fprintf(&b, ", … (%d parameters)", len(args))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d=", i+1)
		f := int16(0)
		switch {
		case len(formats) == 1:
			f = formats[0]
		case i < len(formats):
			f = formats[i]
		}
		switch {
		case a == nil:
			b.WriteString("NULL")
		case f == 1:
			b.WriteString(binaryValue(a))
		default:
			b.WriteString("'" + cleanLine(string(a), 64) + "'")
		}
	}
	return b.String()
}

// onDescribe handles Describe of a statement or a portal.
func (c *conn) onDescribe(st *clientState, body []byte) bool {
	var m pgproto3.Describe
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Describe: " + err.Error())
		return false
	}
	if m.ObjectType == 'P' {
		if f, ok := st.portals[m.Name]; ok && f.bound {
			f.described = true
			st.portals[m.Name] = f
		}
	}
	c.tr.push(&pending{kind: reqDescribe, obj: m.ObjectType, name: m.Name})
	return c.forward('D', body)
}

// onExecute handles Execute. When masking is on and the client did not
// describe the portal since its Bind (or it is a cursor declared in SQL,
// whose columns may change), Vigil asks the database for its columns
// first and keeps the answer to itself: masking needs them. An Execute
// that may start a COPY FROM STDIN is followed by a Flush, so its
// outcome comes back while the client pump waits for it (awaitCopy).
func (c *conn) onExecute(st *clientState, body []byte) bool {
	var m pgproto3.Execute
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Execute: " + err.Error())
		return false
	}
	f := st.portals[m.Portal]
	if c.s.cfg.Masking.Enabled() && !(f.bound && f.described) {
		if f.bound {
			f.described = true
			st.portals[m.Portal] = f
		}
		c.tr.push(&pending{kind: reqDescribe, obj: 'P', name: m.Portal, swallow: true})
		if !c.send(&pgproto3.Describe{ObjectType: 'P', Name: m.Portal}) {
			return false
		}
	}
	p := &pending{kind: reqExecute, name: m.Portal, execs: []*execution{{protocol: "extended", start: c.s.cfg.Now()}}}
	if f.copy {
		p.copyEvents = make(chan bool, 2)
	}
	if c.tr.push(p) && p.copyEvents != nil {
		st.copyWait = p.copyEvents
		return c.forward('E', body) && c.forward('H', nil)
	}
	return c.forward('E', body)
}

// onClose handles Close of a statement or a portal.
func (c *conn) onClose(st *clientState, body []byte) bool {
	var m pgproto3.Close
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Close: " + err.Error())
		return false
	}
	if f, ok := st.portals[m.Name]; ok && m.ObjectType == 'P' {
		// Kept if it may COPY: a Close the database drops (after an
		// error) leaves the portal open.
		if f.copy {
			st.portals[m.Name] = portalFlags{copy: true}
		} else {
			delete(st.portals, m.Name)
		}
	}
	c.tr.push(&pending{kind: reqClose, obj: m.ObjectType, name: m.Name})
	return c.forward('C', body)
}

// loFunctions are the functions a FunctionCall may name: libpq's large
// object interface (lo_import and lo_export on the client side use
// them), by their fixed OIDs in pg_proc. Any other function reached by
// OID would escape the SQL rules; those run through a query instead.
var loFunctions = map[uint32]string{
	715: "lo_create", 952: "lo_open", 953: "lo_close", 954: "loread", 955: "lowrite", 956: "lo_lseek",
	957: "lo_creat", 958: "lo_tell", 964: "lo_unlink", 1004: "lo_truncate", 3170: "lo_lseek64",
	3171: "lo_tell64", 3172: "lo_truncate64",
}

// onFunctionCall handles the fast-path function call. Only the large
// object functions pass (loFunctions), and none on a read-only grant.
func (c *conn) onFunctionCall(body []byte) bool {
	var m pgproto3.FunctionCall
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed FunctionCall: " + err.Error())
		return false
	}
	name, ok := loFunctions[m.Function]
	if !ok {
		name = fmt.Sprintf("OID %d", m.Function)
	}
	text := fmt.Sprintf("-- function call: %s with %d arguments", name, len(m.Arguments))
	e := &execution{text: text, protocol: "function", params: len(m.Arguments), start: c.s.cfg.Now()}
	var v verdict
	switch {
	case c.info.readOnly:
		v = verdict{block: true, code: stateReadOnlyTx, rule: "read-only",
			msg: "Vigil: this grant is read-only: function calls through the fast path are refused"}
		c.audit("db.read_only_refused", map[string]any{"text": text, "reason": "function call"})
	case !ok:
		v = verdict{block: true, code: stateFeatureNotSupp, rule: "function-call",
			msg:  "Vigil: function calls through the fast path are refused, but for the large object functions",
			hint: "Call the function in a query (SELECT f(...)), where Vigil's rules apply."}
		c.audit("db.function_call_refused", map[string]any{"text": text})
	}
	if v.block {
		c.mark(fmt.Sprintf("%s: refused: %s", v.rule, text))
		e.blocked, e.rule = true, v.rule
		c.tr.push(&pending{kind: reqQuery, execs: []*execution{e}})
		return c.send(&pgproto3.Query{String: substitute(v)})
	}
	c.tr.push(&pending{kind: reqFunction, execs: []*execution{e}})
	return c.forward('F', body)
}
