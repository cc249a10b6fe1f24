package sshgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/vault"
	"golang.org/x/crypto/ssh"
)

// notifyTimeout bounds writing a farewell message to a client that may
// not be reading, and waiting for it to disconnect after its channels
// were closed.
const notifyTimeout = 2 * time.Second

// Recording states (conn.recState).
const (
	recOK int32 = iota
	recFailedOpen
	recFailedClosed
)

// Ended is the cause a session ends with. The user sees Reason.
type Ended struct {
	Reason string
	// By is the admin who ended it, if one did.
	By    string
	Cause error
}

func (e *Ended) Error() string { return "session ended: " + e.Reason }

// conn is one authenticated client connection: one Vigil session.
type conn struct {
	s    *Server
	sc   *ssh.ServerConn
	info *authResult
	ctx  context.Context
	stop context.CancelCauseFunc
	sess *session.Session
	rec  *recording.Writer
	// live is the session in the live registry (pause valve, watchers);
	// nil until the session has started.
	live *session.Live
	// pauses counts pauses, so a channel tells its user once per pause
	// that input is discarded.
	pauses atomic.Int64
	// rules are the real-time rules of the target (nil: none).
	rules *rules.Set
	// recState is the recording's state: recOK, recFailedOpen (the session
	// goes on unrecorded, by the target's policy) or recFailedClosed (the
	// session is ending and nothing more may be relayed).
	recState atomic.Int32
	upstream *ssh.Client
	// upClient is upstream for terminate, which may run on another
	// goroutine before or while it is dialled.
	upClient atomic.Pointer[ssh.Client]

	bytesUp, bytesDown atomic.Int64
	lastActive         atomic.Int64 // Unix ns
	exitStatus         atomic.Int64

	// wg counts channel goroutines.
	wg sync.WaitGroup
	// mu guards chans and commands.
	mu       sync.Mutex
	chans    map[*channel]struct{}
	commands []string

	ended    atomic.Pointer[Ended]
	termOnce sync.Once
	// expiryWarning is the warning once it is due, for channels opened
	// after it was sent.
	expiryWarning atomic.Pointer[string]
}

func newConn(ctx context.Context, s *Server, sc *ssh.ServerConn, info *authResult) *conn {
	c := &conn{s: s, sc: sc, info: info, chans: map[*channel]struct{}{}}
	// The record's identity is fixed before the session is registered
	// (the registry copies it).
	c.sess = &session.Session{ID: session.NewID(), Kind: "ssh", User: info.id.Claims.Subject, JTI: info.id.Claims.ID,
		Target: info.target.Name, Login: info.login, Source: info.source.String(), StartedAt: s.cfg.Now(),
		BreakGlass: info.id.Claims.BreakGlass}
	c.ctx, c.stop = context.WithCancelCause(ctx)
	c.exitStatus.Store(-1)
	c.touch()
	return c
}

func (c *conn) touch() { c.lastActive.Store(c.s.cfg.Now().UnixNano()) }

func (c *conn) log() []any {
	return []any{"session", c.sess.ID, "user", c.info.id.Claims.Subject, "target", c.info.target.Name, "jti", c.info.id.Claims.ID}
}

// audit appends a session event; the caller decides what a failure means.
func (c *conn) audit(typ string, data map[string]any) error {
	err := c.s.cfg.Audit.Append(context.WithoutCancel(c.ctx), audit.Event{Type: typ, Actor: c.info.id.Claims.Subject,
		Target: c.info.target.Name, Session: c.sess.ID, Source: c.info.source.String(), Data: data})
	if err != nil {
		c.s.cfg.Log.Error("audit append failed", append(c.log(), "type", typ, "err", err)...)
	}
	return err
}

// run serves the connection until the client leaves or the session is
// terminated, then ends the session.
func (c *conn) run(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	go ssh.DiscardRequests(reqs)
	now := c.sess.StartedAt
	t := c.info.target

	// Nothing reaches the target unless the session is recorded and its
	// start is on record.
	rec, err := recording.Create(c.s.cfg.RecordingsDir, c.sess.ID, recording.Header{Width: 80, Height: 24,
		Title: fmt.Sprintf("%s: %s@%s", c.sess.User, c.info.login, t.Name)}, now, c.s.cfg.RecordingKeys)
	if err != nil {
		c.audit("recording.failed", map[string]any{"phase": "open", "error": err.Error()})
		c.refuse(chans, "the session cannot be recorded, so it is refused", err)
		return
	}
	c.rec = rec
	c.sess.Recording = rec.Path()
	rec.OnFail(c.recordingFailed)
	// From here on admins can watch, pause and terminate the session; it
	// is live before it is listed active, so a listed session can be
	// watched at once.
	c.live = c.s.cfg.Live.Register(*c.sess, c.info.id.Claims.Issuer, rec, c)
	rec.SetTap(c.live.Publish)
	if err := c.s.cfg.Sessions.Start(c.ctx, c.sess); err != nil {
		c.s.cfg.Log.Error("session start not stored", append(c.log(), "err", err)...)
		c.refuse(chans, "the session cannot be registered, so it is refused", err)
		c.end()
		return
	}
	startData := map[string]any{"kind": "ssh", "login": c.info.login, "jti": c.info.id.Claims.ID, "roles": c.info.id.Roles,
		"addr": t.Addr, "recording": rec.Path(), "client": string(c.sc.ClientVersion())}
	if c.sess.BreakGlass {
		// Flagged for the post-incident review (package breakglass), in
		// the audit trail and at the start of the recording.
		startData["breakglass"] = true
		rec.Marker(now, "break-glass session: recorded for post-incident review")
	}
	if err := c.audit("session.start", startData); err != nil {
		c.refuse(chans, "the session cannot be audited, so it is refused", err)
		c.end()
		return
	}

	// A lock added between authentication and registration would have
	// missed this session: check again now that it is registered.
	if c.s.cfg.Locks != nil {
		lock, err := c.s.cfg.Locks.Locked(c.ctx, c.sess.User, c.sess.Target)
		if err != nil || lock != nil {
			msg := "the session cannot be checked against locks, so it is refused"
			if lock != nil {
				msg = "locked: " + lock.Reason
			}
			c.refuse(chans, msg, err)
			c.end()
			return
		}
	}
	if c.rules, err = c.ruleSet(); err != nil {
		c.audit("session.rules_failed", map[string]any{"error": err.Error()})
		c.refuse(chans, "the rules for "+t.Name+" cannot be loaded, so the session is refused", err)
		c.end()
		return
	}
	up, err := c.dialUpstream()
	if err != nil {
		c.refuse(chans, err.Error(), err)
		c.end()
		return
	}
	c.upstream = up
	c.upClient.Store(up)
	if c.ctx.Err() != nil {
		up.Close() // terminated while the upstream was dialled
	}
	go c.watch()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.handleSession(nc)
			}()
		case "direct-tcpip":
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.handleForward(nc)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "channel type not supported by Vigil")
		}
	}
	// The client is gone (or was cut off): let the channels finish.
	c.terminate(&Ended{Reason: "client disconnected"})
	c.wg.Wait()
	c.end()
}

// refuse answers every channel the client opens with a visible message
// (on a session channel's stderr, exit status 255) and closes the
// connection: the client sees why instead of a bare disconnect.
func (c *conn) refuse(chans <-chan ssh.NewChannel, msg string, cause error) {
	c.ended.CompareAndSwap(nil, &Ended{Reason: msg, Cause: cause})
	timer := time.AfterFunc(notifyTimeout*5, func() { c.sc.Close() })
	defer timer.Stop()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, msg)
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(reqs)
		ch.Stderr().Write([]byte("[vigil] " + msg + "\r\n"))
		ch.SendRequest("exit-status", false, exitStatus(255))
		ch.Close()
		break
	}
	c.sc.Close()
}

// dialUpstream logs in to the target with the vault's credential, checking
// the pinned host key. Its errors are safe to show the user: they never
// contain the credential.
func (c *conn) dialUpstream() (*ssh.Client, error) {
	t := c.info.target
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.DialTimeout)
	defer cancel()
	fail := func(userMsg, reason string, err error) (*ssh.Client, error) {
		c.audit("session.upstream_failed", map[string]any{"reason": reason, "error": err.Error(), "addr": t.Addr})
		return nil, errors.New(userMsg)
	}
	cred, err := c.s.cfg.Vault.Credential(ctx, t)
	if err != nil {
		return fail("Vigil cannot open the credential for "+t.Name, "credential", err)
	}
	pinned, err := vault.ParseHostKey(t.HostKey)
	if err != nil {
		return fail("no valid host key is pinned for "+t.Name, "host_key", err)
	}
	var auth []ssh.AuthMethod
	if cred.Signer != nil {
		auth = append(auth, ssh.PublicKeys(cred.Signer))
	} else {
		pw := cred.Password
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	}
	var mismatch error
	cfg := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: c.s.cfg.Ciphers},
		User:              c.info.login,
		Auth:              auth,
		HostKeyAlgorithms: hostKeyAlgorithms(pinned),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if string(key.Marshal()) != string(pinned.Marshal()) {
				mismatch = fmt.Errorf("host key %s, pinned %s", ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(pinned))
				return mismatch
			}
			return nil
		},
		Timeout:       c.s.cfg.DialTimeout,
		ClientVersion: "SSH-2.0-Vigil",
	}
	nc, err := c.s.cfg.Dial(ctx, "tcp", t.Addr)
	if err != nil {
		return fail("cannot reach "+t.Name, "unreachable", err)
	}
	nc.SetDeadline(c.s.cfg.Now().Add(c.s.cfg.DialTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, t.Addr, cfg)
	if err != nil {
		nc.Close()
		switch {
		case mismatch != nil:
			c.audit("target.host_key_mismatch", map[string]any{"error": mismatch.Error()})
			return fail("the host key of "+t.Name+" has changed; Vigil refuses to connect until an administrator re-pins it", "host_key_changed", mismatch)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fail(t.Name+" refused Vigil's credential for "+c.info.login, "credential_refused", err)
		default:
			return fail("the connection to "+t.Name+" failed", "handshake", err)
		}
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// hostKeyAlgorithms asks the target for the pinned key's type, so a server
// with several host keys presents the one that was pinned.
func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{k.Type()}
}

// watch enforces the token's expiry (with a warning), the idle timeout and
// keepalives on both legs until the session ends.
func (c *conn) watch() {
	exp := c.info.id.Claims.ExpiresAt.Time
	now := c.s.cfg.Now()
	warnAt := exp.Add(-c.s.cfg.ExpiryWarning)
	warn := time.AfterFunc(max(warnAt.Sub(now), 0), func() {
		msg := fmt.Sprintf("your token expires at %s; this session will end then", exp.UTC().Format(time.RFC3339))
		c.expiryWarning.Store(&msg)
		c.notify(msg)
	})
	defer warn.Stop()
	expire := time.AfterFunc(max(exp.Sub(now), 0), func() {
		c.audit("session.token_expired", map[string]any{"exp": exp.Unix()})
		c.terminate(&Ended{Reason: "the token expired"})
	})
	defer expire.Stop()
	tick := time.NewTicker(c.s.cfg.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if c.live.Paused() {
			c.touch() // a session waiting for review is not idle
		}
		if idle := c.s.cfg.Now().Sub(time.Unix(0, c.lastActive.Load())); idle >= c.s.cfg.IdleTimeout {
			c.terminate(&Ended{Reason: fmt.Sprintf("idle for %s", idle.Round(time.Second))})
			return
		}
		for name, send := range map[string]func() error{
			"client": func() error { _, _, err := c.sc.SendRequest("keepalive@openssh.com", true, nil); return err },
			"target": func() error { _, _, err := c.upstream.SendRequest("keepalive@openssh.com", true, nil); return err },
		} {
			if err := withTimeout(c.s.cfg.Keepalive, send); err != nil {
				c.terminate(&Ended{Reason: "the " + name + " stopped responding", Cause: err})
				return
			}
		}
	}
}

func withTimeout(d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("no answer")
	}
}

// recordingFailed applies the target's recording failure policy: fail
// closed (end the session, the default) or fail open (go on unrecorded).
// Both are audited.
//
// It runs once, from whichever notices first: the writer's OnFail or a
// relay pump whose write failed (which calls it before it stops, so the
// user's message goes out before the channel's EOF).
func (c *conn) recordingFailed(err error) {
	next := recFailedClosed
	if c.failOpen() {
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
	c.terminate(&Ended{Reason: "the recording failed", Cause: err})
}

// notify writes a message to the stderr of every open session channel.
func (c *conn) notify(msg string) {
	c.notifyChannels(msg, c.openChannels())
}

func (c *conn) openChannels() []*channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	chans := make([]*channel, 0, len(c.chans))
	for ch := range c.chans {
		chans = append(chans, ch)
	}
	return chans
}

// notifyChannels writes msg to the stderr of chans, waiting at most
// notifyTimeout for a client that does not read.
func (c *conn) notifyChannels(msg string, chans []*channel) {
	var wg sync.WaitGroup
	for _, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			withTimeout(notifyTimeout, func() error { return ch.tell("\r\n[vigil] " + msg + "\r\n") })
		}()
	}
	wg.Wait()
}

// recording reports whether events are still being recorded.
func (c *conn) recording() bool { return c.recState.Load() == recOK }

// terminate ends the session with cause e: the user is told why, their
// channels are closed, then both legs. Only the first cause counts.
func (c *conn) terminate(e *Ended) {
	c.termOnce.Do(func() {
		c.ended.CompareAndSwap(nil, e)
		chans := c.openChannels()
		if e.Reason != "client disconnected" {
			c.notifyChannels("session ended: "+e.Reason, chans)
		}
		c.stop(e)
		if up := c.upClient.Load(); up != nil {
			up.Close()
		}
		// Close the channels and let the client hang up by itself:
		// closing the connection under unread data can reset it, and the
		// client would lose the message it has not read yet.
		for _, ch := range chans {
			ch.client.Close()
		}
		hungUp := make(chan struct{})
		go func() { c.sc.Wait(); close(hungUp) }()
		select {
		case <-hungUp:
		case <-time.After(notifyTimeout):
		}
		c.sc.Close()
	})
}

// Paused implements session.Controls: the user sees who paused the
// session and why; the recording is marked.
func (c *conn) Paused(by, reason string) {
	c.pauses.Add(1)
	c.touch()
	msg := "session paused by " + by
	if reason != "" {
		msg += ": " + reason
	}
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), msg)
	}
	c.notify(msg)
}

// Resumed implements session.Controls.
func (c *conn) Resumed(by string) {
	c.touch()
	msg := "session resumed by " + by
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), msg)
	}
	c.notify(msg)
	for _, ch := range c.openChannels() {
		go ch.releaseHeld()
	}
}

// Terminate implements session.Controls: the session ends with reason,
// which the user sees and the audit log keeps.
func (c *conn) Terminate(by, reason string) {
	c.terminate(&Ended{Reason: reason, By: by})
}

func (c *conn) addCommand(cmd string) {
	c.mu.Lock()
	c.commands = append(c.commands, cmd)
	c.mu.Unlock()
}

// end seals the recording and records how the session ended.
func (c *conn) end() {
	now := c.s.cfg.Now()
	e := c.ended.Load()
	if e == nil {
		e = &Ended{Reason: "client disconnected"}
	}
	if c.upstream != nil {
		c.upstream.Close()
	}
	data := map[string]any{"reason": e.Reason}
	if e.By != "" {
		data["by"] = e.By
	}
	if c.rec != nil {
		sum, err := c.rec.Close(now)
		c.sess.Digest = sum.Digest
		data["recording"], data["recording_sha256"], data["recording_bytes"] = sum.Path, sum.Digest, sum.Size
		if err != nil {
			data["recording_error"] = err.Error()
		}
	}
	// Out of the registry once the recording is whole: a download of a
	// session that is still listed live flushes it first.
	if c.live != nil {
		c.s.cfg.Live.Remove(c.live, e.Reason)
	}
	c.mu.Lock()
	c.sess.Commands = append([]string(nil), c.commands...)
	c.mu.Unlock()
	c.sess.EndedAt, c.sess.EndReason = now, e.Reason
	c.sess.BytesUp, c.sess.BytesDown = c.bytesUp.Load(), c.bytesDown.Load()
	c.sess.ExitStatus = int(c.exitStatus.Load())
	data["duration_s"] = now.Sub(c.sess.StartedAt).Seconds()
	data["bytes_up"], data["bytes_down"], data["exit_status"] = c.sess.BytesUp, c.sess.BytesDown, c.sess.ExitStatus
	if err := c.s.cfg.Sessions.End(context.WithoutCancel(c.ctx), c.sess); err != nil {
		c.s.cfg.Log.Error("session end not stored", append(c.log(), "err", err)...)
	}
	c.audit("session.end", data)
	c.stop(e)
}

// failOpen reports whether the session may go on unrecorded after a
// recording failure: only on a fail-open target, and never for a
// break-glass session, whose every keystroke must be on record.
func (c *conn) failOpen() bool {
	return c.info.target.FailOpen && !c.info.id.Claims.BreakGlass
}
