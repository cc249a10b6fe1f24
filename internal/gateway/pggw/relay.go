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

// Limits on what the client pump keeps per session.
const (
	// maxStatements caps the prepared statements and portals a session
	// may hold open through Vigil.
	maxStatements = 10000
	// maxShownArgs caps the parameters shown in the transcript.
	maxShownArgs = 16
)

// clientState is the client pump's view of the extended protocol.
type clientState struct {
	stmts   map[string]*stmt
	portals map[string]*portal
	// skipping is set after Vigil refused a message of an extended
	// batch: like the database after an error, it drops everything up
	// to the Sync.
	skipping bool
}

// clientPump relays the client's messages to the database: statements
// are guarded, tracked for the log and held while the session is
// paused. Output is flushed whenever the client has nothing more
// buffered.
func (c *conn) clientPump() {
	cr := &msgReader{r: c.cl.r, max: c.s.cfg.MaxMessage}
	st := &clientState{stmts: map[string]*stmt{}, portals: map[string]*portal{}}
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
		if err := c.live.Wait(c.ctx); err != nil {
			return
		}
		if st.skipping && typ != 'S' && typ != 'X' {
			continue
		}
		var ok bool
		switch typ {
		case 'Q':
			ok = c.onQuery(body)
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
		case 'H', 'd', 'c', 'f': // Flush, CopyData, CopyDone, CopyFail
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
func (c *conn) onQuery(body []byte) bool {
	var q pgproto3.Query
	if err := q.Decode(body); err != nil {
		c.protocolError("malformed Query: " + err.Error())
		return false
	}
	now := c.s.cfg.Now()
	v := c.guard(q.String)
	if v.terminate {
		c.terminate(&ended{reason: v.termMessage, by: "rule " + v.rule, code: stateInsufficientPriv})
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
	c.tr.push(p)
	return c.forward('Q', body)
}

// onParse handles Parse: guarded; a refused statement is replaced by
// Vigil's substitute (see substitute) and the rest of the batch dropped,
// as the database does after an error.
func (c *conn) onParse(st *clientState, body []byte) bool {
	var m pgproto3.Parse
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Parse: " + err.Error())
		return false
	}
	if _, ok := st.stmts[m.Name]; !ok && len(st.stmts) >= maxStatements {
		c.terminate(&ended{reason: fmt.Sprintf("more than %d prepared statements open", maxStatements), code: stateProgramLimit})
		return false
	}
	v := c.guard(m.Query)
	if v.terminate {
		c.terminate(&ended{reason: v.termMessage, by: "rule " + v.rule, code: stateInsufficientPriv})
		return false
	}
	if v.block {
		delete(st.stmts, m.Name)
		st.skipping = true
		e := &execution{text: m.Query, protocol: "extended", start: c.s.cfg.Now(), blocked: true, rule: v.rule}
		c.tr.push(&pending{kind: reqParse, swallow: true})
		c.tr.push(&pending{kind: reqBind, swallow: true})
		c.tr.push(&pending{kind: reqExecute, execs: []*execution{e}})
		return c.send(&pgproto3.Parse{Query: substitute(v)}, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	s := &stmt{text: m.Query, params: len(m.ParameterOIDs)}
	st.stmts[m.Name] = s
	c.tr.push(&pending{kind: reqParse, st: s})
	return c.forward('P', body)
}

// onBind handles Bind: the portal remembers its statement and (for the
// transcript) its parameters.
func (c *conn) onBind(st *clientState, body []byte) bool {
	var m pgproto3.Bind
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Bind: " + err.Error())
		return false
	}
	if _, ok := st.portals[m.DestinationPortal]; !ok && len(st.portals) >= maxStatements {
		c.terminate(&ended{reason: fmt.Sprintf("more than %d portals open", maxStatements), code: stateProgramLimit})
		return false
	}
	po := &portal{st: st.stmts[m.PreparedStatement], params: len(m.Parameters)}
	po.args = showArgs(m.Parameters, m.ParameterFormatCodes)
	st.portals[m.DestinationPortal] = po
	c.tr.push(&pending{kind: reqBind, po: po})
	return c.forward('B', body)
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
	if m.ObjectType == 'S' {
		c.tr.push(&pending{kind: reqDescribeStmt, st: st.stmts[m.Name]})
	} else {
		po := st.portals[m.Name]
		if po != nil {
			po.described = true
		}
		c.tr.push(&pending{kind: reqDescribePortal, po: po})
	}
	return c.forward('D', body)
}

// onExecute handles Execute. When masking is on and the client did not
// describe the portal, Vigil asks the database for its columns first
// (and keeps the answer to itself): masking by column name needs them.
func (c *conn) onExecute(st *clientState, body []byte) bool {
	var m pgproto3.Execute
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Execute: " + err.Error())
		return false
	}
	po := st.portals[m.Portal]
	if po != nil && !po.described && c.s.cfg.Masking.Enabled() {
		po.described = true
		c.tr.push(&pending{kind: reqDescribePortal, po: po, swallow: true})
		if !c.send(&pgproto3.Describe{ObjectType: 'P', Name: m.Portal}) {
			return false
		}
	}
	e := &execution{protocol: "extended", start: c.s.cfg.Now()}
	if po != nil {
		e.params, e.args = po.params, po.args
		if po.st != nil {
			e.text = po.st.text
		}
	}
	c.tr.push(&pending{kind: reqExecute, po: po, execs: []*execution{e}})
	return c.forward('E', body)
}

// onClose handles Close of a statement or a portal.
func (c *conn) onClose(st *clientState, body []byte) bool {
	var m pgproto3.Close
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed Close: " + err.Error())
		return false
	}
	if m.ObjectType == 'S' {
		delete(st.stmts, m.Name)
	} else {
		delete(st.portals, m.Name)
	}
	c.tr.push(&pending{kind: reqClose})
	return c.forward('C', body)
}

// onFunctionCall handles the fast-path function call (libpq's large
// object functions use it). Rules cannot see what a function by OID
// does, so a read-only grant refuses it.
func (c *conn) onFunctionCall(body []byte) bool {
	var m pgproto3.FunctionCall
	if err := m.Decode(body); err != nil {
		c.protocolError("malformed FunctionCall: " + err.Error())
		return false
	}
	text := fmt.Sprintf("-- function call: OID %d with %d arguments", m.Function, len(m.Arguments))
	e := &execution{text: text, protocol: "function", params: len(m.Arguments), start: c.s.cfg.Now()}
	if c.info.readOnly {
		v := verdict{block: true, code: stateReadOnlyTx, rule: "read-only",
			msg: "Vigil: this grant is read-only: function calls by OID are refused"}
		c.audit("db.read_only_refused", map[string]any{"text": text, "reason": "function call"})
		e.blocked, e.rule = true, v.rule
		c.tr.push(&pending{kind: reqQuery, execs: []*execution{e}})
		return c.send(&pgproto3.Query{String: substitute(v)})
	}
	c.tr.push(&pending{kind: reqFunction, execs: []*execution{e}})
	return c.forward('F', body)
}
