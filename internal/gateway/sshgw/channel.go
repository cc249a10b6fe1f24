package sshgw

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/token"
	"golang.org/x/crypto/ssh"
)

// Relay buffer sizes. An idle session waits in a small read; while data
// flows, a full-size buffer (one SSH packet's worth) comes from a pool, so
// a thousand idle sessions do not hold a thousand large buffers.
const (
	idleBuffer  = 4 << 10
	relayBuffer = 32 << 10
)

var relayBuffers = sync.Pool{New: func() any { b := make([]byte, relayBuffer); return &b }}

// Bounds on an environment variable a client may pass: locale and zone
// values are short; anything larger is not what the allow-list is for.
const (
	maxEnvName  = 256
	maxEnvValue = 4 << 10
)

// channel kinds, by the request that started the channel.
const (
	kindShell = "shell"
	kindExec  = "exec"
	kindSCP   = "scp"
	kindSFTP  = "sftp"
)

// channel is one session channel relayed between the client and the target.
type channel struct {
	c      *conn
	client ssh.Channel
	up     ssh.Channel

	// mu guards kind, pty, keys and sftp, and orders recorded events: an
	// output chunk and the input it releases are recorded together.
	mu   sync.Mutex
	kind string // "" until shell, exec or subsystem starts
	pty  bool
	keys *recording.Keystrokes
	sftp *sftpLog

	// startedC is closed once the shell, exec or subsystem request went
	// to the target (or the channel's requests ended): input waits for it.
	startedC    chan struct{}
	startedOnce sync.Once

	// eofMu orders what Vigil writes to the client's stderr outside the
	// relay (notices, refusals) with the EOF sent to the client:
	// x/crypto/ssh does not guard a channel's EOF flag, so a Write racing
	// CloseWrite is a data race. eofSent is set once the EOF is sent.
	eofMu   sync.Mutex
	eofSent bool

	// toldPause is the pause (conn.pauses) the user was last told that
	// input is discarded.
	toldPause atomic.Int64

	// inMu orders the input relay: it is held while a chunk is tapped
	// and written, and guards held, editor and lineChunks.
	inMu sync.Mutex
	// held is input a pause rule withheld until an admin resumes.
	held       []byte
	editor     rules.LineEditor
	lineChunks int // input chunks of the line being typed
	// outLines splits output for output rules (guarded by mu).
	outLines rules.OutputLines
	// tail is what the target printed since its last newline (at most
	// tailMax bytes, guarded by mu): the prompt a line is typed at.
	tail []byte
	// linePrompt is tail when the line being typed began (guarded by
	// inMu; "" while no line is being typed): a prompt that echoes what
	// is typed no longer ends the screen at Enter.
	linePrompt string
}

// tailMax bounds channel.tail.
const tailMax = 256

func (c *conn) handleSession(nc ssh.NewChannel) {
	up, upReqs, err := c.upstream.OpenChannel("session", nil)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "the target refused a session channel")
		return
	}
	client, clientReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	// Input is masked unless echoed from the first byte: keystrokes can
	// arrive before the pty request is handled. A channel that turns out
	// not to be a terminal (exec, sftp without a pty) drops the masker.
	ch := &channel{c: c, client: client, up: up, keys: recording.NewKeystrokes(c.rec), startedC: make(chan struct{})}
	c.mu.Lock()
	c.chans[ch] = struct{}{}
	c.mu.Unlock()
	if msg := c.expiryWarning.Load(); msg != nil {
		// The warning was due before this channel opened.
		go c.notifyChannels(*msg, []*channel{ch})
	}
	defer func() {
		c.mu.Lock()
		delete(c.chans, ch)
		c.mu.Unlock()
	}()

	var out sync.WaitGroup
	out.Add(2)
	go func() { defer out.Done(); ch.pump(client, up, ch.output, nil) }()
	go func() { defer out.Done(); ch.pump(client.Stderr(), up.Stderr(), ch.output, nil) }()
	go func() {
		// The target's EOF reaches the client after all its output.
		out.Wait()
		ch.closeClientWrite()
	}()
	go func() {
		// The client may send data right after its exec or shell
		// request, and requests are handled on another goroutine: wait
		// until the target has the request, so the data cannot overtake it.
		select {
		case <-ch.startedC:
		case <-c.ctx.Done():
		}
		ch.pump(up, client, ch.input, &ch.inMu)
		up.CloseWrite()
	}()
	upDone := make(chan struct{})
	go func() {
		// exit-status, exit-signal, eow@openssh.com: passed on as they are,
		// before the channel closes.
		defer close(upDone)
		for r := range upReqs {
			if r.Type == "exit-status" && len(r.Payload) >= 4 {
				c.exitStatus.Store(int64(binary.BigEndian.Uint32(r.Payload)))
			}
			ok, _ := client.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				r.Reply(ok, nil)
			}
		}
	}()
	go func() {
		for r := range clientReqs {
			c.touch()
			ch.request(r)
		}
		ch.markStarted()
		up.Close() // the client closed the channel
	}()
	select {
	case <-upDone:
	case <-c.ctx.Done():
		up.Close()
		<-upDone
	}
	out.Wait()
	ch.finish()
	client.Close()
}

// pump copies src to dst, passing each chunk through tap first: tap
// returns what is relayed (the chunk, part of it, or nothing) and false
// when the relay must stop after that (a chunk that cannot be recorded
// is not relayed: its tap returns nothing). With mu, each tap and its write happen under it.
func (ch *channel) pump(dst io.Writer, src io.Reader, tap func([]byte) ([]byte, bool), mu *sync.Mutex) {
	relay := func(p []byte) bool {
		if mu != nil {
			mu.Lock()
			defer mu.Unlock()
		}
		// A tap that stops the relay may still pass a last part of the
		// chunk (the lines before one that ends the session).
		out, ok := tap(p)
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil {
				return false
			}
		}
		return ok
	}
	small := make([]byte, idleBuffer)
	for {
		// Wait for data in the small buffer; a full read means more is
		// coming, so go on with a large one until the flow pauses.
		n, err := src.Read(small)
		buf, big := small, (*[]byte)(nil)
		for n > 0 {
			if !relay(buf[:n]) {
				putBig(big)
				return
			}
			if err != nil || n < len(buf) {
				break
			}
			if big == nil {
				big = relayBuffers.Get().(*[]byte)
				buf = *big
			}
			n, err = src.Read(buf)
		}
		putBig(big)
		if err != nil {
			return
		}
	}
}

func putBig(b *[]byte) {
	if b != nil {
		relayBuffers.Put(b)
	}
}

// output taps what the target sends. While the session is paused it
// waits: the target's output is then held by SSH flow control.
func (ch *channel) output(p []byte) ([]byte, bool) {
	c := ch.c
	if c.live.Wait(c.ctx) != nil {
		return nil, false
	}
	return relayIf(p, ch.recordOutput(p))
}

// relayIf is what a tap returns for p: all of it if it may be relayed
// (it was recorded, or may pass unrecorded), else nothing, and stop.
func relayIf(p []byte, ok bool) ([]byte, bool) {
	if !ok {
		return nil, false
	}
	return p, true
}

func (ch *channel) recordOutput(p []byte) bool {
	c := ch.c
	c.bytesDown.Add(int64(len(p)))
	c.touch()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch state := c.recState.Load(); {
	case state == recFailedClosed:
		return false // the session is ending: nothing unrecorded passes
	case ch.sftp != nil:
		ch.sftp.server(p)
		return true
	case ch.kind == kindSCP || state == recFailedOpen:
		return true
	}
	if ch.keys != nil {
		ch.keys.Output(p)
		ch.keepTail(p)
	}
	if c.rules.Has(rules.KindOutput) && ch.kind != kindSCP {
		ch.outputRules(p)
	}
	return c.recorded(c.rec.Output(c.s.cfg.Now(), p))
}

// keepTail keeps what the target printed since its last newline, the
// prompt the next line is typed at. Called under ch.mu.
func (ch *channel) keepTail(p []byte) {
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		ch.tail = ch.tail[:0]
		p = p[i+1:]
	}
	ch.tail = append(ch.tail, p...)
	if over := len(ch.tail) - tailMax; over > 0 {
		ch.tail = append(ch.tail[:0], ch.tail[over:]...)
	}
}

// promptNow returns the output since the last newline.
func (ch *channel) promptNow() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return string(ch.tail)
}

// input taps what the client sends. While the session is paused, what a
// user types at a terminal is discarded (they are told once per pause);
// the input of a data channel (exec, sftp, scp) waits instead, held by
// SSH flow control, as dropping it would corrupt the transfer.
func (ch *channel) input(p []byte) ([]byte, bool) {
	c := ch.c
	if c.live.Paused() {
		if ch.mode().interactive() {
			ch.discard(p)
			return nil, true
		}
		if c.live.Wait(c.ctx) != nil {
			return nil, false
		}
	}
	var held []byte
	if ch.held != nil {
		// Resumed after a pause rule, and the user typed before
		// releaseHeld ran: what was held goes first.
		held, ch.held = ch.held, nil
	}
	more := true
	if ch.mode().commandLines() {
		// Every command line is audited (and searchable) before its
		// Enter reaches the target; more is false when a rule ends the
		// session or the command cannot be audited: p is then what
		// passed before the line that ended it.
		p, more = ch.commandRules(p)
	}
	if held != nil {
		p = append(held, p...)
	}
	out, ok := relayIf(p, ch.recordInput(p))
	return out, ok && more
}

// mode is what the channel runs: its kind and whether it has a pty, read
// together under one lock.
type mode struct {
	kind string
	pty  bool
}

func (ch *channel) mode() mode {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return mode{ch.kind, ch.pty}
}

// interactive reports whether the channel is a terminal session.
func (m mode) interactive() bool { return m.pty && (m.kind == kindShell || m.kind == kindExec) }

// commandLines reports whether what the client sends are command lines
// for command rules: a shell, with or without a terminal, or a command
// run on a terminal.
func (m mode) commandLines() bool { return m.kind == kindShell || (m.pty && m.kind == kindExec) }

// discard drops input typed during a pause and tells the user, once per
// pause.
func (ch *channel) discard(p []byte) {
	c := ch.c
	c.bytesUp.Add(int64(len(p)))
	n := c.pauses.Load()
	if ch.toldPause.Swap(n) != n {
		go c.notifyChannels("the session is paused: what you type is discarded until it is resumed", []*channel{ch})
	}
}

func (ch *channel) recordInput(p []byte) bool {
	c := ch.c
	c.bytesUp.Add(int64(len(p)))
	c.touch()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch state := c.recState.Load(); {
	case state == recFailedClosed:
		return false
	case ch.sftp != nil:
		ch.sftp.client(p)
		return true
	case ch.kind == kindSCP || state == recFailedOpen:
		return true
	case ch.keys != nil:
		return c.recorded(ch.keys.Input(c.s.cfg.Now(), p))
	}
	return c.recorded(c.rec.Input(c.s.cfg.Now(), p))
}

// recorded applies the failure policy to the outcome of a recording write
// and reports whether the chunk may be relayed: always after success, and
// after a failure only under the target's fail-open policy.
func (c *conn) recorded(err error) bool {
	if err == nil {
		return true
	}
	c.recordingFailed(err)
	return c.failOpen()
}

// finish records what the channel still holds back.
func (ch *channel) finish() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.keys != nil && ch.c.recording() {
		ch.keys.Close()
	}
	if ch.sftp != nil {
		ch.sftp.close()
	}
}

// allowed reports whether the token grants action for request r (a
// shell, exec or subsystem). When it does not, the refusal is audited and
// the request answered by Vigil itself: accepted, then a message on
// stderr, exit status 1 and the channel ended. A plain "request failed"
// would leave the user without the reason, as clients exit before
// printing what the server wrote.
func (ch *channel) allowed(action, what string, r *ssh.Request) bool {
	c := ch.c
	if slices.Contains(c.info.grant.Actions, action) {
		return true
	}
	c.audit("ssh.request_denied", map[string]any{"request": what, "needs": action})
	ch.mu.Lock()
	ch.kind = "denied"
	ch.mu.Unlock()
	if r.WantReply {
		r.Reply(true, nil)
	}
	ch.tell(fmt.Sprintf("[vigil] %s is not granted on %s as %s\r\n", action, c.info.target.Name, c.info.login))
	ch.client.SendRequest("exit-status", false, exitStatus(1))
	// Closing the target's channel ends the output relays; then the
	// client gets its EOF from handleSession, after any output they were
	// writing (a CloseWrite here could race their writes).
	ch.up.Close()
	return false
}

// forward passes r to the target and its answer back.
func (ch *channel) forward(r *ssh.Request) bool {
	ok, err := ch.up.SendRequest(r.Type, r.WantReply, r.Payload)
	if err != nil {
		ok = false
	}
	if r.WantReply {
		r.Reply(ok, nil)
	}
	return ok
}

// exitStatus is the payload of an exit-status request.
func exitStatus(code uint32) []byte { return ssh.Marshal(struct{ Status uint32 }{code}) }

func refuse(r *ssh.Request) {
	if r.WantReply {
		r.Reply(false, nil)
	}
}

// request applies Vigil's policy to a channel request from the client.
func (ch *channel) request(r *ssh.Request) {
	c := ch.c
	now := c.s.cfg.Now()
	switch r.Type {
	case "pty-req":
		var p struct {
			Term          string
			Cols, Rows    uint32
			Width, Height uint32
			Modes         string
		}
		if ssh.Unmarshal(r.Payload, &p) != nil || ch.started() {
			refuse(r)
			return
		}
		if ch.forward(r) {
			ch.mu.Lock()
			ch.pty = true
			ch.mu.Unlock()
			c.rec.Resize(now, int(p.Cols), int(p.Rows))
		}
	case "window-change":
		var p struct{ Cols, Rows, Width, Height uint32 }
		if ssh.Unmarshal(r.Payload, &p) != nil {
			refuse(r)
			return
		}
		if c.recording() {
			c.rec.Resize(now, int(p.Cols), int(p.Rows))
		}
		ch.forward(r)
	case "env":
		var p struct{ Name, Value string }
		if ssh.Unmarshal(r.Payload, &p) != nil || len(p.Name) > maxEnvName || len(p.Value) > maxEnvValue ||
			!envAllowed(c.s.cfg.EnvAllow, p.Name) {
			refuse(r)
			return
		}
		ch.forward(r)
	case "shell":
		if ch.started() {
			refuse(r)
			return
		}
		if !ch.allowed(token.ActionShell, "shell", r) {
			return
		}
		ch.start(kindShell, "shell", r)
	case "exec":
		var p struct{ Command string }
		if ssh.Unmarshal(r.Payload, &p) != nil || ch.started() {
			refuse(r)
			return
		}
		kind, action := kindExec, token.ActionExec
		if isSCP(p.Command) {
			kind, action = kindSCP, token.ActionSFTP
		}
		if !ch.allowed(action, "exec: "+p.Command, r) {
			return
		}
		if kind == kindExec && !ch.checkCommand(p.Command, r, r.WantReply) {
			return
		}
		ch.start(kind, "exec: "+p.Command, r)
	case "subsystem":
		var p struct{ Name string }
		if ssh.Unmarshal(r.Payload, &p) != nil || ch.started() || p.Name != "sftp" {
			refuse(r)
			return
		}
		if !ch.allowed(token.ActionSFTP, "subsystem sftp", r) {
			return
		}
		ch.start(kindSFTP, "sftp", r)
	case "signal", "break":
		ch.forward(r)
	case "x11-req", "auth-agent-req@openssh.com":
		// Neither is ever granted: an agent forwarded through Vigil would
		// hand the target the user's keys.
		c.audit("ssh.request_denied", map[string]any{"request": r.Type})
		refuse(r)
	default:
		refuse(r)
	}
}

func (ch *channel) started() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.kind != ""
}

// start records and audits what the channel runs, then asks the target.
func (ch *channel) start(kind, what string, r *ssh.Request) {
	c := ch.c
	ch.mu.Lock()
	ch.kind = kind
	if kind == kindSFTP {
		ch.sftp = newSFTPLog(c)
	}
	if !ch.pty && ch.keys != nil {
		// Not a terminal: input is data, recorded as sent.
		ch.keys.Close()
		ch.keys = nil
	}
	ch.mu.Unlock()
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), what)
	}
	if kind != kindShell {
		c.addCommand(what)
	}
	c.audit("ssh."+kind, map[string]any{"command": strings.TrimPrefix(what, "exec: ")})
	if !c.live.Paused() {
		ch.forward(r)
		ch.markStarted()
		return
	}
	// Nothing starts on the target while the session is paused. The wait
	// is off the channel's request loop, which must go on draining (the
	// SSH library blocks the whole connection when a channel's requests
	// are not read).
	go func() {
		if c.live.Wait(c.ctx) != nil {
			refuse(r)
			return
		}
		ch.forward(r)
		ch.markStarted()
	}()
}

// markStarted lets input flow to the target.
func (ch *channel) markStarted() { ch.startedOnce.Do(func() { close(ch.startedC) }) }

// isSCP reports whether an exec command is the legacy scp protocol: scp
// with -t or -f and nothing a shell would interpret (anything else is an
// ordinary command, with the exec action and command rules).
func isSCP(cmd string) bool {
	if strings.ContainsAny(cmd, ";&|$`<>(){}\n\\") {
		return false
	}
	f := strings.Fields(cmd)
	if len(f) == 0 || path.Base(f[0]) != "scp" {
		return false
	}
	return slices.Contains(f, "-t") || slices.Contains(f, "-f")
}

func envAllowed(allow []string, name string) bool {
	for _, a := range allow {
		if a == name || (strings.HasSuffix(a, "*") && strings.HasPrefix(name, strings.TrimSuffix(a, "*"))) {
			return true
		}
	}
	return false
}

// tell writes msg to the client's stderr, unless the client has been
// sent EOF.
func (ch *channel) tell(msg string) error {
	ch.eofMu.Lock()
	defer ch.eofMu.Unlock()
	if ch.eofSent {
		return io.EOF
	}
	_, err := ch.client.Stderr().Write([]byte(msg))
	return err
}

// closeClientWrite sends the client EOF, once.
func (ch *channel) closeClientWrite() {
	ch.eofMu.Lock()
	defer ch.eofMu.Unlock()
	if !ch.eofSent {
		ch.eofSent = true
		ch.client.CloseWrite()
	}
}
