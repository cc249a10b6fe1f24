package pggw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
)

// notifyTimeout bounds writing a farewell to a client that may not read.
const notifyTimeout = 2 * time.Second

// Recording states (conn.recState).
const (
	recOK int32 = iota
	recFailedOpen
	recFailedClosed
)

// ended is why a session ends: the user sees reason, in an ErrorResponse
// with code when the client can still read one.
type ended struct {
	reason string
	by     string
	code   string
}

func (e *ended) Error() string { return "session ended: " + e.reason }

// conn is one logged-in client connection: one Vigil session.
type conn struct {
	s    *Server
	cl   *client
	info *authInfo
	ctx  context.Context
	stop context.CancelCauseFunc
	sess *session.Session
	rec  *recording.Writer
	live *session.Live
	// rules are the target's real-time rules (nil: none).
	rules *rules.Set
	key   backendKey

	// wmu guards cw, the buffered writer to the client, shared by the
	// upstream pump and the notices (pause, expiry, end).
	wmu sync.Mutex
	cw  *bufio.Writer
	// uw is the buffered writer to the database; only the client pump
	// writes it.
	uw *bufio.Writer

	tr       tracker
	recState atomic.Int32

	statements, rows, masked atomic.Int64
	bytesUp, bytesDown       atomic.Int64
	lastActive               atomic.Int64 // Unix ns

	endedBy  atomic.Pointer[ended]
	termOnce sync.Once
}

func newConn(ctx context.Context, s *Server, cl *client, info *authInfo) *conn {
	c := &conn{s: s, cl: cl, info: info}
	c.sess = &session.Session{ID: session.NewID(), Kind: "pg", User: info.id.Claims.Subject, JTI: info.id.Claims.ID,
		Target: info.target.Name, Login: info.login, Source: info.source.String(), StartedAt: s.cfg.Now(),
		BreakGlass: info.id.Claims.BreakGlass}
	c.ctx, c.stop = context.WithCancelCause(ctx)
	c.cw = bufio.NewWriterSize(cl.nc, 32<<10)
	c.uw = bufio.NewWriterSize(info.up.Conn, 32<<10)
	c.tr.stmts, c.tr.portals = map[string]*stmt{}, map[string]*portal{}
	c.touch()
	return c
}

func (c *conn) touch() { c.lastActive.Store(c.s.cfg.Now().UnixNano()) }

func (c *conn) log() []any {
	return []any{"session", c.sess.ID, "user", c.sess.User, "target", c.sess.Target, "jti", c.sess.JTI}
}

// audit appends a session event; the caller decides what a failure means.
func (c *conn) audit(typ string, data map[string]any) error {
	err := c.s.cfg.Audit.Append(context.WithoutCancel(c.ctx), audit.Event{Type: typ, Actor: c.sess.User,
		Target: c.sess.Target, Session: c.sess.ID, Source: c.sess.Source, Data: data})
	if err != nil {
		c.s.cfg.Log.Error("audit append failed", append(c.log(), "type", typ, "err", err)...)
	}
	return err
}

// refuse tells the client why the session cannot start and closes both
// legs.
func (c *conn) refuse(code, msg string) {
	c.endedBy.CompareAndSwap(nil, &ended{reason: msg, code: code})
	c.cl.nc.SetWriteDeadline(time.Now().Add(notifyTimeout))
	writeMsg(c.cl.nc, pgError("FATAL", code, msg, ""))
	c.info.up.Conn.Close()
}

// run starts the session (recording, registry, audit), welcomes the
// client and relays until either side leaves or the session is ended.
func (c *conn) run() {
	defer c.info.up.Conn.Close()
	now := c.sess.StartedAt
	t := c.info.target
	rec, err := recording.Create(c.s.cfg.RecordingsDir, c.sess.ID, recording.Header{Width: 120, Height: 40,
		Title: fmt.Sprintf("%s: %s@%s (%s)", c.sess.User, c.info.login, t.Name, t.Database)}, now, c.s.cfg.RecordingKeys)
	if err != nil {
		c.audit("recording.failed", map[string]any{"phase": "open", "error": err.Error()})
		c.refuse(stateConnectionFailure, "the session cannot be recorded, so it is refused")
		return
	}
	c.rec = rec
	c.sess.Recording = rec.Path()
	rec.OnFail(c.recordingFailed)
	c.live = c.s.cfg.Live.Register(*c.sess, c.info.id.Claims.Issuer, rec, c)
	rec.SetTap(c.live.Publish)
	defer c.end()
	if err := c.s.cfg.Sessions.Start(c.ctx, c.sess); err != nil {
		c.s.cfg.Log.Error("session start not stored", append(c.log(), "err", err)...)
		c.refuse(stateConnectionFailure, "the session cannot be registered, so it is refused")
		return
	}
	startData := map[string]any{"kind": "pg", "login": c.info.login, "database": t.Database, "jti": c.info.id.Claims.ID,
		"roles": c.info.id.Roles, "addr": t.Addr, "recording": rec.Path(), "read_only": c.info.readOnly,
		"tls": c.cl.tls, "direct_tls": c.cl.direct, "protocol": fmt.Sprintf("3.%d", c.cl.version&0xffff),
		"application_name": clip(c.cl.params["application_name"], 128)}
	if c.sess.BreakGlass {
		startData["breakglass"] = true
		rec.Marker(now, "break-glass session: recorded for post-incident review")
	}
	if err := c.audit("session.start", startData); err != nil {
		c.refuse(stateConnectionFailure, "the session cannot be audited, so it is refused")
		return
	}
	if c.s.cfg.Locks != nil {
		lock, err := c.s.cfg.Locks.Locked(c.ctx, c.sess.User, c.sess.Target)
		if err != nil || lock != nil {
			msg := "the session cannot be checked against locks, so it is refused"
			if lock != nil {
				msg = "locked: " + lock.Reason
			}
			c.refuse(stateInvalidAuthSpec, msg)
			return
		}
	}
	if c.rules, err = c.ruleSet(); err != nil {
		c.audit("session.rules_failed", map[string]any{"error": err.Error()})
		c.refuse(stateConnectionFailure, "the rules for "+t.Name+" cannot be loaded, so the session is refused")
		return
	}
	if err := c.welcome(); err != nil {
		c.endedBy.CompareAndSwap(nil, &ended{reason: "client disconnected"})
		return
	}
	c.cl.nc.SetDeadline(time.Time{})
	go c.watch()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.upstreamPump()
	}()
	c.clientPump()
	// The client left or was cut off: stop the other pump.
	c.terminate(&ended{reason: "client disconnected"})
	<-done
}

// welcome completes the client's login as the database would: the
// server's parameters, Vigil's cancel key, ready for query.
func (c *conn) welcome() error {
	c.s.newKey(c, c.cl.version)
	msgs := []encoder{&pgproto3.AuthenticationOk{}}
	names := make([]string, 0, len(c.info.up.ParameterStatuses))
	for k := range c.info.up.ParameterStatuses {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if reason := c.unsafeParameter(k, c.info.up.ParameterStatuses[k]); reason != "" {
			c.audit("db.guard_violated", map[string]any{"parameter": k, "value": clip(c.info.up.ParameterStatuses[k], 64), "phase": "start"})
			c.refuse(stateFeatureNotSupp, reason)
			return errors.New(reason)
		}
		msgs = append(msgs, &pgproto3.ParameterStatus{Name: k, Value: c.info.up.ParameterStatuses[k]})
	}
	msgs = append(msgs, &pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret})
	if c.info.readOnly {
		msgs = append(msgs, notice("Vigil: this grant is read-only; statements that write are refused"))
	}
	if c.sess.BreakGlass {
		msgs = append(msgs, notice("Vigil: break-glass session; every statement is recorded for review"))
	}
	tx := c.info.up.TxStatus
	if tx == 0 {
		tx = 'I'
	}
	msgs = append(msgs, &pgproto3.ReadyForQuery{TxStatus: tx})
	c.cl.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.StartupTimeout))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeMsg(c.cw, msgs...); err != nil {
		return err
	}
	return c.cw.Flush()
}

// watch enforces the token's expiry (with a warning) and the idle
// timeout until the session ends.
func (c *conn) watch() {
	exp := c.info.id.Claims.ExpiresAt.Time
	now := c.s.cfg.Now()
	warn := time.AfterFunc(max(exp.Add(-c.s.cfg.ExpiryWarning).Sub(now), 0), func() {
		c.notify(fmt.Sprintf("your token expires at %s; this session will end then", exp.UTC().Format(time.RFC3339)))
	})
	defer warn.Stop()
	expire := time.AfterFunc(max(exp.Sub(now), 0), func() {
		c.audit("session.token_expired", map[string]any{"exp": exp.Unix()})
		c.terminate(&ended{reason: "the token expired", code: stateAdminShutdown})
	})
	defer expire.Stop()
	tick := time.NewTicker(min(c.s.cfg.IdleTimeout/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if c.live.Paused() || c.tr.busy() {
			c.touch() // waiting for review or for the database is not idle
		}
		if idle := c.s.cfg.Now().Sub(time.Unix(0, c.lastActive.Load())); idle >= c.s.cfg.IdleTimeout {
			c.terminate(&ended{reason: fmt.Sprintf("idle for %s", idle.Round(time.Second)), code: stateAdminShutdown})
			return
		}
	}
}

// notify sends the client a NoticeResponse; psql prints it with the
// next result.
func (c *conn) notify(msg string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if writeMsg(c.cw, notice("Vigil: "+msg)) == nil {
			c.cw.Flush()
		}
	}()
	select {
	case <-done:
	case <-time.After(notifyTimeout):
	}
}

// recordingFailed applies the target's recording failure policy, as the
// SSH gateway does: fail closed (end the session, the default) or fail
// open (go on unrecorded, never for break-glass). Both are audited.
func (c *conn) recordingFailed(err error) {
	next := recFailedClosed
	if c.info.target.FailOpen && !c.sess.BreakGlass {
		next = recFailedOpen
	}
	if !c.recState.CompareAndSwap(recOK, next) {
		return
	}
	if next == recFailedOpen {
		c.audit("recording.failed", map[string]any{"phase": "write", "error": err.Error(), "policy": "fail_open"})
		c.notify("the recording failed; by this target's policy the session continues UNRECORDED")
		return
	}
	c.audit("recording.failed", map[string]any{"phase": "write", "error": err.Error(), "policy": "fail_closed"})
	c.terminate(&ended{reason: "the recording failed", code: stateConnectionFailure})
}

func (c *conn) recording() bool { return c.recState.Load() == recOK }

// terminate ends the session with cause e: the client gets a FATAL
// ErrorResponse with the reason (unless it left), then both legs close.
// Only the first cause counts.
func (c *conn) terminate(e *ended) {
	c.termOnce.Do(func() {
		c.endedBy.CompareAndSwap(nil, e)
		c.stop(e)
		// Unblock a pump stuck writing to a client that does not read.
		c.cl.nc.SetWriteDeadline(time.Now().Add(notifyTimeout))
		c.info.up.Conn.Close()
		if e.code != "" {
			c.wmu.Lock()
			if writeMsg(c.cw, pgError("FATAL", e.code, "terminating connection: "+e.reason, "")) == nil {
				c.cw.Flush()
			}
			c.wmu.Unlock()
		}
		c.cl.nc.Close()
	})
}

// Paused implements session.Controls: the user is told (a notice), the
// recording marked; the next statement waits.
func (c *conn) Paused(by, reason string) {
	c.touch()
	msg := "session paused by " + by
	if reason != "" {
		msg += ": " + reason
	}
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), msg)
	}
	c.notify(msg + "; your next statement waits until it is resumed")
}

// Resumed implements session.Controls.
func (c *conn) Resumed(by string) {
	c.touch()
	msg := "session resumed by " + by
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), msg)
	}
	c.notify(msg)
}

// Terminate implements session.Controls.
func (c *conn) Terminate(by, reason string) {
	c.terminate(&ended{reason: reason, by: by, code: stateAdminShutdown})
}

// end seals the recording and records how the session ended.
func (c *conn) end() {
	c.tr.abandon(c)
	now := c.s.cfg.Now()
	e := c.endedBy.Load()
	if e == nil {
		e = &ended{reason: "client disconnected"}
	}
	c.stop(e)
	c.info.up.Conn.Close()
	data := map[string]any{"reason": e.reason}
	if e.by != "" {
		data["by"] = e.by
	}
	if c.rec != nil {
		sum, err := c.rec.Close(now)
		c.sess.Digest = sum.Digest
		data["recording"], data["recording_sha256"], data["recording_bytes"] = sum.Path, sum.Digest, sum.Size
		if err != nil {
			data["recording_error"] = err.Error()
		}
	}
	if c.live != nil {
		c.s.cfg.Live.Remove(c.live, e.reason)
	}
	c.sess.EndedAt, c.sess.EndReason = now, e.reason
	c.sess.BytesUp, c.sess.BytesDown = c.bytesUp.Load(), c.bytesDown.Load()
	data["duration_s"] = now.Sub(c.sess.StartedAt).Seconds()
	data["bytes_up"], data["bytes_down"] = c.sess.BytesUp, c.sess.BytesDown
	data["statements"], data["rows"], data["masked_values"] = c.statements.Load(), c.rows.Load(), c.masked.Load()
	if err := c.s.cfg.Sessions.End(context.WithoutCancel(c.ctx), c.sess); err != nil {
		c.s.cfg.Log.Error("session end not stored", append(c.log(), "err", err)...)
	}
	c.audit("session.end", data)
}
