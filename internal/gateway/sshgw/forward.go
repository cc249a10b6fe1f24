package sshgw

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vigil-pam/vigil/internal/token"
	"golang.org/x/crypto/ssh"
)

// handleForward relays a direct-tcpip channel (ssh -L, ssh -W) through the
// target, only with the forward action. The destination is recorded and
// audited; the bytes are counted, not recorded.
func (c *conn) handleForward(nc ssh.NewChannel) {
	var p struct {
		DestAddr   string
		DestPort   uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	dest := net.JoinHostPort(p.DestAddr, strconv.Itoa(int(p.DestPort)))
	if !slices.Contains(c.info.grant.Actions, token.ActionForward) {
		c.audit("ssh.request_denied", map[string]any{"request": "direct-tcpip", "dest": dest, "needs": token.ActionForward})
		nc.Reject(ssh.Prohibited, fmt.Sprintf("port forwarding is not granted on %s", c.info.target.Name))
		return
	}
	up, upReqs, err := c.upstream.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "the target could not open "+dest)
		return
	}
	go ssh.DiscardRequests(upReqs)
	client, clientReqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	go ssh.DiscardRequests(clientReqs)
	what := "forward " + dest
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), what)
	}
	c.addCommand(what)
	c.audit("ssh.forward", map[string]any{"dest": dest})
	var wg sync.WaitGroup
	wg.Add(2)
	relay := func(dst, src ssh.Channel, bytes *atomic.Int64) {
		defer wg.Done()
		io.Copy(meter{w: dst, c: c, n: bytes}, src)
		dst.CloseWrite()
	}
	go relay(up, client, &c.bytesUp)
	go relay(client, up, &c.bytesDown)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-c.ctx.Done():
	}
	client.Close()
	up.Close()
	<-done
}

// meter counts bytes written through it and marks the session active.
type meter struct {
	w io.Writer
	c *conn
	n *atomic.Int64
}

func (m meter) Write(p []byte) (int, error) {
	// A paused session holds forwarded data (flow control) until resumed.
	if err := m.c.live.Wait(m.c.ctx); err != nil {
		return 0, err
	}
	m.n.Add(int64(len(p)))
	m.c.touch()
	return m.w.Write(p)
}
