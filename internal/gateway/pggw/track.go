package pggw

import (
	"bufio"
	"context"
	"errors"
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
	reqParse          reqKind = iota // ParseComplete
	reqBind                          // BindComplete
	reqDescribeStmt                  // ParameterDescription, then RowDescription or NoData
	reqDescribePortal                // RowDescription or NoData
	reqClose                         // CloseComplete
	reqExecute                       // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	reqSync                          // ReadyForQuery
	reqQuery                         // per statement: rows and CommandComplete; then ReadyForQuery
	reqFunction                      // FunctionCallResponse, then ReadyForQuery
)

// stmt is a prepared statement as the client parsed it.
type stmt struct {
	text   string
	params int
}

// portal is a bound statement.
type portal struct {
	st     *stmt
	params int
	args   string // the text-format parameters, for the transcript
	// described is set when a Describe of the portal was forwarded since
	// its Bind (client pump only); desc holds the answer (upstream pump).
	described bool
	desc      *rowDesc
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
	kind    reqKind
	st      *stmt
	po      *portal
	execs   []*execution // reqQuery: one per statement; reqExecute, reqFunction: one
	cur     int          // reqQuery: the statement the answers are for
	swallow bool         // injected by Vigil: its answer is not relayed
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
	// out is the transcript of the result so far; shown counts its rows.
	out   []byte
	shown int
	done  bool
}

// tracker is the queue of requests awaiting answers: the client pump
// pushes, the upstream pump pops. Answers come in request order, which
// is how each is matched to its request.
type tracker struct {
	mu sync.Mutex
	q  []*pending
}

func (t *tracker) push(p *pending) {
	t.mu.Lock()
	t.q = append(t.q, p)
	t.mu.Unlock()
}

func (t *tracker) head() *pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.q) == 0 {
		return nil
	}
	return t.q[0]
}

func (t *tracker) pop() {
	t.mu.Lock()
	if len(t.q) > 0 {
		t.q[0] = nil
		t.q = t.q[1:]
		if len(t.q) == 0 {
			t.q = t.q[:0:0]
		}
	}
	t.mu.Unlock()
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
	t.q = nil
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
	defer func() {
		if locked {
			c.cw.Flush()
			c.wmu.Unlock()
		}
	}()
	var fatal bool
	for {
		if locked && ur.buffered() == 0 {
			err := c.cw.Flush()
			c.wmu.Unlock()
			locked = false
			if err != nil {
				c.terminate(&ended{reason: "client disconnected"})
				return
			}
		}
		typ, body, err := ur.next()
		if err != nil {
			// terminate writes to the client under wmu: let go of it.
			if locked {
				c.cw.Flush()
				c.wmu.Unlock()
				locked = false
			}
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
		relay, rewritten := c.answer(typ, body)
		if typ == 'E' && len(body) > 0 && (strings.Contains(string(body), "SFATAL\x00") || strings.Contains(string(body), "SPANIC\x00")) {
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
			c.terminate(&ended{reason: "client disconnected"})
			return
		}
	}
}

// answer accounts for one message from the database and reports
// whether to relay it, and a replacement encoding when Vigil changed it
// (masked values, a blocked statement's error).
func (c *conn) answer(typ byte, body []byte) (relay bool, rewritten []byte) {
	p := c.tr.head()
	switch typ {
	case '1', '2', '3': // ParseComplete, BindComplete, CloseComplete
		if p != nil && (p.kind == reqParse || p.kind == reqBind || p.kind == reqClose) {
			c.tr.pop()
			return !p.swallow, nil
		}
	case 't': // ParameterDescription: RowDescription or NoData follows
		return p == nil || !p.swallow, nil
	case 'T':
		var rd pgproto3.RowDescription
		if err := rd.Decode(body); err != nil {
			return true, nil
		}
		switch {
		case p == nil:
		case p.kind == reqDescribeStmt:
			// Result formats come with Bind: rows are masked by the
			// portal's description (the client's Describe or Vigil's).
			c.tr.pop()
			return !p.swallow, nil
		case p.kind == reqDescribePortal:
			if p.po != nil {
				p.po.desc = c.describe(&rd)
			}
			c.tr.pop()
			return !p.swallow, nil
		case p.kind == reqQuery && p.cur < len(p.execs):
			p.execs[p.cur].desc = c.describe(&rd)
		}
	case 'n': // NoData
		if p != nil && (p.kind == reqDescribeStmt || p.kind == reqDescribePortal) {
			c.tr.pop()
			return !p.swallow, nil
		}
	case 'D':
		if e := p.current(); e != nil {
			return c.row(p, e, body)
		}
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		e := p.current()
		if e == nil {
			break
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
		} else {
			c.tr.pop()
		}
	case 'd': // CopyData, out
		if e := p.current(); e != nil {
			e.copied += int64(len(body))
		}
	case 'V': // FunctionCallResponse
		if e := p.current(); e != nil {
			c.finish(e, "ok")
		}
	case 'E':
		return c.failed(p, body)
	case 'Z':
		var rfq pgproto3.ReadyForQuery
		rfq.Decode(body)
		// Everything up to the Sync (or the query) is answered.
		for p != nil {
			for _, e := range p.execs {
				if !e.done {
					c.finish(e, "incomplete")
				}
			}
			c.tr.pop()
			if p.kind == reqSync || p.kind == reqQuery || p.kind == reqFunction {
				break
			}
			p = c.tr.head()
		}
	case 'K': // BackendKeyData after startup: the client has Vigil's
		return false, nil
	case 'S':
		c.parameterChanged(body)
	}
	return true, nil
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
		if p.cur < len(p.execs) {
			return p.execs[p.cur]
		}
	}
	return nil
}

// failed handles an ErrorResponse: the statement it answers failed. In
// the extended protocol the database then skips everything up to the
// Sync: those requests are dropped from the queue, their statements
// logged incomplete. A blocked statement's error (Vigil's substitute)
// loses the PL/pgSQL context that would only confuse the user.
func (c *conn) failed(p *pending, body []byte) (bool, []byte) {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return true, nil
	}
	if p == nil {
		return true, nil // asynchronous: a FATAL as the server shuts down
	}
	var target *execution
	switch p.kind {
	case reqQuery, reqFunction:
		target = p.current()
		if p.kind == reqQuery {
			p.cur = len(p.execs) // the rest of the query string is not run
		}
	default:
		// The first statement of the skipped run takes the error; a
		// failed Parse with no Execute after it is logged on its own.
		parse := p
		for q := p; q != nil && q.kind != reqSync; q = c.tr.head() {
			if target == nil && q.kind == reqExecute && len(q.execs) > 0 {
				target = q.execs[0]
			}
			for _, e := range q.execs {
				if e != target && !e.done {
					c.finish(e, "incomplete")
				}
			}
			c.tr.pop()
		}
		if target == nil && parse.kind == reqParse && parse.st != nil {
			target = &execution{text: parse.st.text, protocol: "extended", start: c.s.cfg.Now()}
		}
	}
	if target == nil {
		return true, nil
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
			return true, out
		}
	case er.Code == stateQueryCanceled:
		outcome = "cancelled"
	}
	c.finish(target, outcome)
	return true, nil
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
		d.plan = c.s.cfg.Masking.Plan(d.names, d.oids, d.fmts)
	}
	return d
}

// resultDesc is the row description that applies to e's rows.
func (p *pending) resultDesc(e *execution) *rowDesc {
	if e.desc != nil {
		return e.desc
	}
	if p != nil && p.po != nil {
		return p.po.desc
	}
	return nil
}

// row handles a DataRow: counted, masked, transcribed.
func (c *conn) row(p *pending, e *execution, body []byte) (bool, []byte) {
	e.rows++
	d := p.resultDesc(e)
	record := c.s.cfg.RecordRows > 0 && e.shown < c.s.cfg.RecordRows
	active := d != nil && d.plan != nil && d.plan.Active()
	if !active && !record {
		return true, nil
	}
	var dr pgproto3.DataRow
	if err := dr.Decode(body); err != nil {
		return true, nil
	}
	var out []byte
	if active {
		if n := d.plan.Row(dr.Values, nil); n > 0 {
			e.masked += n
			var err error
			if out, err = dr.Encode(nil); err != nil {
				// Never relay a row Vigil meant to mask.
				return false, nil
			}
		}
	}
	if record {
		c.transcribeRow(e, d, dr.Values)
	}
	return true, out
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
// pipelined behind the change may already have run.
func (c *conn) unsafeParameter(name, value string) string {
	switch {
	case name == "client_encoding" && unsafeEncoding(value):
		return "client_encoding " + clip(value, 32) + " is not supported through Vigil"
	case name == "default_transaction_read_only" && c.info.readOnly && value != "on":
		return "the read-only guard was turned off"
	}
	return ""
}
