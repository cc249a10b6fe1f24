package pggw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/masking"
	"github.com/vigil-pam/vigil/internal/querylog"
)

// reqKind is what a request forwarded to the database expects back.
type reqKind uint8

const (
	reqParse    reqKind = iota // ParseComplete
	reqBind                    // BindComplete
	reqDescribe                // statement: ParameterDescription, then RowDescription or NoData; portal: the latter
	reqClose                   // CloseComplete
	reqExecute                 // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended; or a COPY
	reqSync                    // ReadyForQuery
	reqQuery                   // per statement: rows and CommandComplete, or a COPY; then ReadyForQuery
	reqFunction                // FunctionCallResponse, then ReadyForQuery
)

// stmt is a prepared statement.
type stmt struct {
	text   string
	params int
}

// portal is a bound statement, or a cursor Vigil did not see bound.
type portal struct {
	st     *stmt
	params int
	args   string   // the parameters, for the transcript
	desc   *rowDesc // its columns, once described
}

// rowDesc is a result's columns and their masking plan.
type rowDesc struct {
	names []string
	oids  []uint32
	fmts  []int16
	plan  *masking.Plan
}

// pending is one request awaiting its answer, in the order forwarded.
type pending struct {
	kind reqKind
	// name is the statement (Parse) or portal (Bind, Execute), or the
	// object of a Describe or Close, whose type is obj ('S' or 'P').
	name     string
	obj      byte
	stmtName string // Bind: the statement bound
	st       *stmt  // Parse: the statement
	params   int    // Bind
	args     string // Bind
	execs    []*execution
	cur      int      // reqQuery: the statement the answers are for
	desc     *rowDesc // reqQuery: the columns of the current statement's rows
	swallow  bool     // injected by Vigil: its answer is not relayed
	// skipped is set when the database will drop the request unread:
	// it follows an error in the same extended-protocol batch.
	skipped bool
	// copyEvents is set when the client pump waits for the request to
	// start a COPY FROM STDIN, or to finish: true when a COPY starts,
	// false when one ends; closed (copyClosed, under the tracker's lock)
	// when the request is answered or dropped.
	copyEvents chan bool
	copyClosed bool
}

// execution is one statement's run: what becomes a statement log entry
// and a transcript entry.
type execution struct {
	text     string
	protocol string
	params   int
	args     string
	start    time.Time
	desc     *rowDesc
	rows     int64
	tag      string
	outcome  string
	sqlstate string
	errMsg   string
	rule     string
	blocked  bool
	masked   int
	copied   int64 // COPY data bytes
	resolved bool  // reqExecute: text and parameters are known
	// out is the transcript of the result so far; shown counts its rows.
	out   []byte
	shown int
	done  bool
}

// tracker follows the database's side of the protocol. The client pump
// pushes each request as it forwards it; the upstream pump matches every
// answer to the request at the head of the queue, so the two must never
// disagree on which request an answer is for: the tracker models what
// the database does with each message, including the messages it drops
// (after an error in an extended-protocol batch, up to the Sync) and
// the ones a COPY FROM STDIN consumes (the client pump handles those
// and pushes nothing). Prepared statements and portals are kept in the
// order the database answered, so a Parse the database refused never
// changes what an Execute is logged as.
type tracker struct {
	mu    sync.Mutex
	q     []*pending
	syncs int // reqSync entries in q
	// skip is set from an error in an extended-protocol batch to the
	// ReadyForQuery that answers the batch's Sync: the database drops
	// every message but Sync meanwhile.
	skip bool

	// The upstream pump's alone.
	stmts   map[string]*stmt
	portals map[string]*portal
	copyIn  bool // a COPY FROM STDIN is running
	copyOut bool // a COPY TO STDOUT is running
}

// push queues p. It reports false when the database will drop the
// request unread (it follows an error of the batch, before any Sync).
func (t *tracker) push(p *pending) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.skip && t.syncs == 0 && p.kind != reqSync {
		p.skipped = true
		p.release()
	}
	if p.kind == reqSync {
		t.syncs++
	}
	t.q = append(t.q, p)
	return !p.skipped
}

func (t *tracker) head() *pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.q) == 0 {
		return nil
	}
	return t.q[0]
}

// pop removes the head, releasing a client pump waiting on it.
func (t *tracker) pop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.q) == 0 {
		return
	}
	p := t.q[0]
	if p.kind == reqSync {
		t.syncs--
	}
	p.release()
	t.q[0] = nil
	t.q = t.q[1:]
	if len(t.q) == 0 {
		t.q = t.q[:0:0]
	}
}

// release closes p's copyEvents: the client pump waits on it no more.
// The tracker's lock is held.
func (p *pending) release() {
	if p.copyEvents != nil && !p.copyClosed {
		p.copyClosed = true
		close(p.copyEvents)
	}
}

// startSkip records an error in an extended-protocol batch: the queued
// requests up to the next Sync are dropped by the database, and so is
// every request pushed before one. It returns those requests.
func (t *tracker) startSkip() []*pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skip = true
	var run []*pending
	for _, p := range t.q {
		if p.kind == reqSync {
			break
		}
		p.skipped = true
		p.release()
		run = append(run, p)
	}
	return run
}

// signal tells a client pump waiting on p that a COPY started (true) or
// ended (false).
func (t *tracker) signal(p *pending, started bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.copyEvents != nil && !p.copyClosed {
		select {
		case p.copyEvents <- started:
		default: // the client pump consumes each event before the next
		}
	}
}

// busy reports whether the database owes answers: a long statement is
// not an idle session.
func (t *tracker) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q) > 0
}

// abandon finishes, as incomplete, every statement still waiting for its
// answer when the session ends, so none is missing from the log.
func (t *tracker) abandon(c *conn) {
	t.mu.Lock()
	q := t.q
	t.q, t.syncs = nil, 0
	for _, p := range q {
		p.release()
	}
	t.mu.Unlock()
	for _, p := range q {
		for _, e := range p.execs {
			if !e.done {
				c.finish(e, "incomplete")
			}
		}
	}
}

// upstreamPump relays the database's messages to the client, matching
// each answer to its request: statement outcomes are logged, results
// masked and transcribed. Output is flushed whenever the database has
// nothing more buffered, so a burst of rows goes out in few writes.
func (c *conn) upstreamPump() {
	ur := &msgReader{r: bufio.NewReaderSize(c.info.up.Conn, 32<<10), max: max(c.s.cfg.MaxMessage, 256<<20)}
	locked := false
	unlock := func() error {
		if !locked {
			return nil
		}
		err := c.cw.Flush()
		c.wmu.Unlock()
		locked = false
		return err
	}
	defer unlock()
	var fatal bool
	for {
		if ur.buffered() == 0 {
			if err := unlock(); err != nil {
				c.terminate(&ended{reason: "client disconnected"})
				return
			}
		}
		typ, body, err := ur.next()
		if err != nil {
			// terminate writes to the client under wmu: let go of it.
			unlock()
			if c.ctx.Err() == nil {
				e := &ended{reason: "the database closed the connection"}
				if !fatal {
					e.code = stateConnectionFailure
				}
				var tl *errTooLarge
				if errors.As(err, &tl) {
					e = &ended{reason: "a message from the database exceeds Vigil's limit: " + tl.Error(), code: stateProgramLimit}
				} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					c.audit("db.upstream_error", map[string]any{"error": err.Error()})
				}
				c.terminate(e)
			}
			return
		}
		if !locked {
			c.wmu.Lock()
			locked = true
		}
		c.bytesDown.Add(int64(5 + len(body)))
		c.touch()
		relay, rewritten, stop := c.answer(typ, body)
		if stop != nil {
			unlock()
			c.audit("db.protocol_error", map[string]any{"error": stop.reason, "from": "database"})
			c.terminate(stop)
			return
		}
		if typ == 'E' && (strings.Contains(string(body), "SFATAL\x00") || strings.Contains(string(body), "SPANIC\x00")) {
			fatal = true
		}
		if !relay {
			continue
		}
		if rewritten != nil {
			_, err = c.cw.Write(rewritten)
		} else {
			err = writeRaw(c.cw, typ, body)
		}
		if err != nil {
			unlock()
			c.terminate(&ended{reason: "client disconnected"})
			return
		}
	}
}

// outOfStep ends a session whose answers no longer match its requests:
// Vigil could no longer tell which statement a result belongs to, nor
// mask it.
func outOfStep(what string) *ended {
	return &ended{reason: "Vigil lost track of the protocol (" + what + ")", code: stateProtocolViolation}
}

// answer accounts for one message from the database and reports
// whether to relay it, a replacement encoding when Vigil changed it
// (masked values, a blocked statement's error), or why the session must
// end.
func (c *conn) answer(typ byte, body []byte) (relay bool, rewritten []byte, stop *ended) {
	t := &c.tr
	p := t.head()
	if p != nil && p.skipped && typ != 'Z' && typ != 'N' && typ != 'A' && typ != 'S' && typ != 'E' {
		return false, nil, outOfStep(fmt.Sprintf("message %q for a request the database drops", typ))
	}
	expect := func(kinds ...reqKind) bool {
		if p == nil {
			return false
		}
		for _, k := range kinds {
			if p.kind == k {
				return true
			}
		}
		return false
	}
	switch typ {
	case '1': // ParseComplete
		if !expect(reqParse) {
			return false, nil, outOfStep("ParseComplete")
		}
		if _, ok := t.stmts[p.name]; !ok && len(t.stmts) >= maxStatements {
			return false, nil, &ended{reason: fmt.Sprintf("more than %d prepared statements open", maxStatements), code: stateProgramLimit}
		}
		t.stmts[p.name] = p.st
		t.pop()
		return !p.swallow, nil, nil
	case '2': // BindComplete
		if !expect(reqBind) {
			return false, nil, outOfStep("BindComplete")
		}
		if _, ok := t.portals[p.name]; !ok && len(t.portals) >= maxStatements {
			return false, nil, &ended{reason: fmt.Sprintf("more than %d portals open", maxStatements), code: stateProgramLimit}
		}
		t.portals[p.name] = &portal{st: t.stmts[p.stmtName], params: p.params, args: p.args}
		t.pop()
		return !p.swallow, nil, nil
	case '3': // CloseComplete
		if !expect(reqClose) {
			return false, nil, outOfStep("CloseComplete")
		}
		if p.obj == 'S' {
			delete(t.stmts, p.name)
		} else {
			delete(t.portals, p.name)
		}
		t.pop()
		return !p.swallow, nil, nil
	case 't': // ParameterDescription: RowDescription or NoData follows
		if !expect(reqDescribe) || p.obj != 'S' {
			return false, nil, outOfStep("ParameterDescription")
		}
		return !p.swallow, nil, nil
	case 'T':
		var rd pgproto3.RowDescription
		if err := rd.Decode(body); err != nil {
			return false, nil, outOfStep("malformed RowDescription")
		}
		switch {
		case expect(reqDescribe):
			if p.obj == 'P' {
				t.portal(p.name).desc = c.describe(&rd)
			}
			t.pop()
			return !p.swallow, nil, nil
		case expect(reqQuery):
			p.desc = c.describe(&rd)
			if e := p.current(); e != nil {
				e.desc = p.desc
			}
		case expect(reqExecute) && c.s.cfg.Masking.Enabled():
			// Not sent for an Execute; a result Vigil cannot place.
			return false, nil, outOfStep("RowDescription for an Execute")
		}
	case 'n': // NoData
		if !expect(reqDescribe) {
			return false, nil, outOfStep("NoData")
		}
		if p.obj == 'P' {
			t.portal(p.name).desc = &rowDesc{}
		}
		t.pop()
		return !p.swallow, nil, nil
	case 'D':
		switch {
		case expect(reqQuery):
			return c.row(p.current(), p.desc, body)
		case expect(reqExecute):
			e := c.resolve(p)
			var d *rowDesc
			if po := t.portals[p.name]; po != nil {
				d = po.desc
			}
			e.desc = d
			return c.row(e, d, body)
		}
		return false, nil, outOfStep("DataRow without a query")
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		if !expect(reqQuery, reqExecute) {
			return false, nil, outOfStep(fmt.Sprintf("%q without a query", typ))
		}
		if t.copyIn {
			t.copyIn = false
			t.signal(p, false)
		}
		t.copyOut = false
		var e *execution
		if p.kind == reqExecute {
			e = c.resolve(p)
		} else {
			e = p.current()
		}
		switch typ {
		case 'C':
			e.tag = commandTag(body)
			if n, ok := tagRows(e.tag); ok {
				e.rows = n
			}
		case 's':
			e.tag = "(suspended)"
		}
		c.finish(e, "ok")
		if p.kind == reqQuery {
			p.cur++
			p.desc = nil
		} else {
			t.pop()
		}
	case 'G': // CopyInResponse
		if !expect(reqQuery, reqExecute) || p.copyEvents == nil || p.copyClosed {
			// The client pump holds the client's messages while a COPY
			// may start: one it did not expect would be relayed as
			// requests.
			return false, nil, outOfStep("a COPY FROM STDIN Vigil did not expect")
		}
		t.copyIn = true
		t.signal(p, true)
	case 'H': // CopyOutResponse
		if c.s.cfg.Masking.Enabled() {
			// The guard refuses COPY TO STDOUT when masking is on; this
			// is one it did not recognise.
			return false, nil, &ended{reason: "COPY TO STDOUT cannot be masked", code: stateFeatureNotSupp}
		}
		if !expect(reqQuery, reqExecute) {
			return false, nil, outOfStep("CopyOutResponse")
		}
		t.copyOut = true
	case 'W': // CopyBothResponse: replication, which Vigil refuses
		return false, nil, outOfStep("CopyBothResponse")
	case 'd', 'c': // CopyData, CopyDone, out
		if !t.copyOut {
			return false, nil, outOfStep("COPY data outside a COPY TO STDOUT")
		}
		if e := p.current(); e != nil {
			e.copied += int64(len(body))
		}
	case 'V': // FunctionCallResponse
		if !expect(reqFunction) {
			return false, nil, outOfStep("FunctionCallResponse")
		}
		if e := p.current(); e != nil {
			c.finish(e, "ok")
		}
	case 'E':
		return c.failed(p, body)
	case 'Z':
		return c.ready(body)
	case 'K': // BackendKeyData after startup: the client has Vigil's
		return false, nil, nil
	case 'S':
		c.parameterChanged(body)
	case 'N', 'A': // NoticeResponse, NotificationResponse
	default:
		return false, nil, outOfStep(fmt.Sprintf("unexpected message %q", typ))
	}
	return true, nil, nil
}

// portal returns the portal called name, creating it for a cursor
// Vigil did not see bound (a SQL DECLARE).
func (t *tracker) portal(name string) *portal {
	po := t.portals[name]
	if po == nil {
		po = &portal{}
		t.portals[name] = po
	}
	return po
}

// resolve settles what p (an Execute at the head) runs, from the
// portals as the database has them now.
func (c *conn) resolve(p *pending) *execution {
	e := p.execs[0]
	if e.resolved {
		return e
	}
	e.resolved = true
	po := c.tr.portals[p.name]
	switch {
	case e.text != "":
	case po != nil && po.st != nil:
		e.text, e.params, e.args = po.st.text, po.params, po.args
	default:
		e.text = fmt.Sprintf("-- execute portal %q (a cursor or statement prepared in SQL)", p.name)
	}
	return e
}

// ready handles ReadyForQuery: every request up to the Sync (or the
// query, or the function call) it answers is done. A transaction's end
// closes its portals.
func (c *conn) ready(body []byte) (bool, []byte, *ended) {
	t := &c.tr
	var rfq pgproto3.ReadyForQuery
	if err := rfq.Decode(body); err != nil {
		return false, nil, outOfStep("malformed ReadyForQuery")
	}
	t.mu.Lock()
	skip := t.skip
	t.mu.Unlock()
	for {
		p := t.head()
		if p == nil {
			return false, nil, outOfStep("ReadyForQuery without a request")
		}
		if !skip && !p.skipped && p.kind != reqSync && p.kind != reqQuery && p.kind != reqFunction {
			return false, nil, outOfStep("ReadyForQuery before an answer")
		}
		for _, e := range p.execs {
			if !e.done {
				c.finish(e, "incomplete")
			}
		}
		t.pop()
		if p.kind == reqQuery && !p.skipped {
			// A simple query replaces the unnamed statement and portal.
			delete(t.stmts, "")
			delete(t.portals, "")
		}
		if p.kind == reqSync || !skip && !p.skipped {
			break
		}
	}
	t.mu.Lock()
	t.skip = false
	t.mu.Unlock()
	t.copyIn, t.copyOut = false, false
	if rfq.TxStatus == 'I' {
		clear(t.portals)
	}
	return true, nil, nil
}

// current is the statement answers are for now, if any.
func (p *pending) current() *execution {
	if p == nil {
		return nil
	}
	switch p.kind {
	case reqExecute, reqFunction:
		if len(p.execs) > 0 && !p.execs[0].done {
			return p.execs[0]
		}
	case reqQuery:
		if p.cur >= len(p.execs) {
			// The database ran more statements than Vigil split the
			// query into: the rest are logged as one.
			p.execs = append(p.execs, &execution{text: "-- (the rest of the query string)", protocol: "simple", start: p.execs[0].start})
		}
		return p.execs[p.cur]
	}
	return nil
}

// failed handles an ErrorResponse: the statement it answers failed. In
// the extended protocol the database then drops everything up to the
// Sync (see tracker.startSkip); those statements are logged incomplete
// when the Sync is answered. A blocked statement's error (Vigil's
// substitute) loses the PL/pgSQL context that would only confuse the
// user.
func (c *conn) failed(p *pending, body []byte) (bool, []byte, *ended) {
	t := &c.tr
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return false, nil, outOfStep("malformed ErrorResponse")
	}
	if t.copyIn {
		t.copyIn = false
		t.signal(p, false)
	}
	t.copyOut = false
	if p == nil || p.skipped || p.kind == reqSync {
		// Asynchronous (a FATAL as the server shuts down), or the commit
		// at a Sync failed: no statement of Vigil's to charge.
		return true, nil, nil
	}
	var target *execution
	switch p.kind {
	case reqQuery, reqFunction:
		target = p.current()
		if p.kind == reqQuery {
			// The rest of the query string is not run: logged
			// incomplete at the ReadyForQuery.
			p.cur = len(p.execs)
		}
	default:
		t.pop()
		run := t.startSkip()
		switch {
		case p.kind == reqExecute:
			target = c.resolve(p)
		default:
			// A Parse, Bind, Describe or Close failed: the batch's first
			// Execute takes the error, as what the client meant to run.
			for _, q := range run {
				if q.kind == reqExecute {
					target = q.execs[0]
					break
				}
			}
			switch {
			case target != nil && !target.resolved:
				target.resolved = true
				if target.text == "" {
					target.text = c.intended(p, run, target)
				}
			case target == nil && p.kind == reqParse && p.st != nil && !p.swallow:
				target = &execution{text: p.st.text, protocol: "extended", start: c.s.cfg.Now()}
			}
		}
	}
	if target == nil {
		return true, nil, nil
	}
	target.sqlstate, target.errMsg = er.Code, er.Message
	outcome := "error"
	switch {
	case target.blocked:
		outcome = "blocked"
		er.Where, er.File, er.Line, er.Routine, er.InternalQuery, er.InternalPosition = "", "", 0, "", "", 0
		out, err := er.Encode(nil)
		if err == nil {
			defer c.finish(target, outcome)
			return true, out, nil
		}
	case er.Code == stateQueryCanceled:
		outcome = "cancelled"
	}
	c.finish(target, outcome)
	return true, nil, nil
}

// intended is the statement an Execute that never ran was meant to run:
// the batch's own Parse and Bind (failed is the one that failed; run the
// rest, dropped), which never took effect, or else the database's.
func (c *conn) intended(failed *pending, run []*pending, e *execution) string {
	var exec *pending
	for _, q := range run {
		if q.kind == reqExecute && len(q.execs) > 0 && q.execs[0] == e {
			exec = q
		}
	}
	if exec == nil {
		return ""
	}
	batch := append([]*pending{failed}, run...)
	stmtName, bound := "", false
	for i := len(batch) - 1; i >= 0; i-- {
		q := batch[i]
		if !bound && q.kind == reqBind && q.name == exec.name {
			stmtName, bound = q.stmtName, true
			e.params, e.args = q.params, q.args
			continue
		}
		if bound && q.kind == reqParse && q.name == stmtName && q.st != nil {
			return q.st.text
		}
	}
	if !bound {
		if po := c.tr.portals[exec.name]; po != nil && po.st != nil {
			return po.st.text
		}
	} else if st := c.tr.stmts[stmtName]; st != nil {
		return st.text
	}
	return fmt.Sprintf("-- execute portal %q", exec.name)
}

// commandTag returns CommandComplete's tag.
func commandTag(body []byte) string {
	s, _, _ := cstring(body)
	return s
}

// tagRows reads the row count off a command tag ("SELECT 5", "INSERT 0
// 3", "COPY 10").
func tagRows(tag string) (int64, bool) {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	return n, err == nil
}

// describe turns a RowDescription (of a portal or a simple query, so
// with the formats the rows come in) into the columns and their masking
// plan.
func (c *conn) describe(rd *pgproto3.RowDescription) *rowDesc {
	d := &rowDesc{names: make([]string, len(rd.Fields)), oids: make([]uint32, len(rd.Fields)), fmts: make([]int16, len(rd.Fields))}
	for i, f := range rd.Fields {
		d.names[i], d.oids[i], d.fmts[i] = string(f.Name), f.DataTypeOID, f.Format
	}
	if c.s.cfg.Masking.Enabled() {
		d.plan = c.s.cfg.Masking.PlanSources(d.names, c.sources(rd), d.oids, d.fmts)
	}
	return d
}

// row handles a DataRow of e, whose columns d describes: counted,
// masked, transcribed. With masking on, a row Vigil cannot read against
// its columns ends the session rather than pass unmasked.
func (c *conn) row(e *execution, d *rowDesc, body []byte) (bool, []byte, *ended) {
	e.rows++
	masking := c.s.cfg.Masking.Enabled()
	record := c.s.cfg.RecordRows > 0 && e.shown < c.s.cfg.RecordRows
	if !masking && !record {
		return true, nil, nil
	}
	var dr pgproto3.DataRow
	if err := dr.Decode(body); err != nil {
		if masking {
			return false, nil, outOfStep("malformed DataRow")
		}
		return true, nil, nil
	}
	var out []byte
	if masking {
		if d == nil || d.plan == nil || len(dr.Values) != len(d.fmts) {
			return false, nil, outOfStep("a result row whose columns Vigil does not know, so cannot mask")
		}
		if d.plan.Active() {
			if n := d.plan.Row(dr.Values, nil); n > 0 {
				e.masked += n
				var err error
				if out, err = dr.Encode(nil); err != nil {
					return false, nil, outOfStep("a masked row cannot be encoded")
				}
			}
		}
	}
	if record {
		c.transcribeRow(e, d, dr.Values)
	}
	return true, out, nil
}

// finish closes a statement's run: the statement log entry (the session
// ends if it cannot be stored: nothing goes unlogged) and the transcript.
func (c *conn) finish(e *execution, outcome string) {
	if e.done {
		return
	}
	e.done = true
	if e.outcome == "" {
		e.outcome = outcome
	}
	if e.blocked {
		e.outcome = "blocked"
	}
	now := c.s.cfg.Now()
	c.statements.Add(1)
	c.rows.Add(e.rows)
	c.masked.Add(int64(e.masked))
	entry := querylog.Entry{
		Session: c.sess.ID, Seq: c.statements.Load(), Time: e.start, User: c.sess.User, Target: c.sess.Target,
		Login: c.info.login, Database: c.info.target.Database, Source: c.sess.Source, Protocol: e.protocol,
		Statement: e.text, Params: e.params, Duration: now.Sub(e.start), Rows: e.rows, Tag: e.tag,
		Outcome: e.outcome, SQLState: e.sqlstate, Error: e.errMsg, Rule: e.rule, Masked: e.masked,
	}
	c.transcribe(e, now)
	// Not c.ctx: the statements still open when the session ends are
	// logged too. The log's own failure deadline bounds the wait.
	if err := c.s.cfg.QueryLog.Append(context.WithoutCancel(c.ctx), entry); err != nil {
		c.audit("querylog.failed", map[string]any{"error": err.Error()})
		go c.terminate(&ended{reason: "the statement log cannot be written", code: stateConnectionFailure})
	}
}

// parameterChanged watches the settings the database reports: a client
// encoding Vigil's checks cannot read, or a read-only session whose
// guard was turned off (by set_config in a function, say), ends the
// session.
func (c *conn) parameterChanged(body []byte) {
	var ps pgproto3.ParameterStatus
	if ps.Decode(body) != nil {
		return
	}
	if reason := c.unsafeParameter(ps.Name, ps.Value); reason != "" {
		c.audit("db.guard_violated", map[string]any{"parameter": ps.Name, "value": clip(ps.Value, 64)})
		go c.terminate(&ended{reason: reason, code: stateFeatureNotSupp})
	}
}

// unsafeParameter says why a setting the database reports defeats
// Vigil's checks, or "". This is detection after the fact: statements
// pipelined behind the change may already have run (the SQL checks read
// every statement in each encoding that could hide SQL from them, and
// both ways of standard_conforming_strings, for that reason).
func (c *conn) unsafeParameter(name, value string) string {
	switch {
	case name == "client_encoding" && unsafeEncoding(value):
		return "client_encoding " + clip(value, 32) + " is not supported through Vigil"
	case name == "default_transaction_read_only" && c.info.readOnly && value != "on":
		return "the read-only guard was turned off"
	}
	return ""
}
