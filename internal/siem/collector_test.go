package siem

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// syslogMsg is one parsed RFC 5424 message.
type syslogMsg struct {
	PRI                                         int
	Timestamp, Hostname, AppName, ProcID, MsgID string
	// SDID is the structured data element's ID, SD its parameters.
	SDID string
	SD   map[string]string
	// BOM reports whether MSG started with a UTF-8 BOM (removed from Msg).
	BOM bool
	Msg string
}

// seq returns the message's seq parameter.
func (m syslogMsg) seq() int64 {
	n, _ := strconv.ParseInt(m.SD["seq"], 10, 64)
	return n
}

// collector is an RFC 5425/6587 syslog collector on 127.0.0.1: it reads
// octet-counted frames, parses their RFC 5424 headers and records the
// messages. It serves one connection at a time, in the order they were
// made (as the forwarder makes them), so what it records is in the order
// sent. It can stop (closing its listener and connection), restart on the
// same port, and pause (stop reading).
type collector struct {
	t    testing.TB
	tls  *tls.Config
	addr string

	// gate is held for writing while the collector is paused; the reader
	// takes it for reading before each frame.
	gate sync.RWMutex

	// mu guards ln, conn, done, msgs and conns.
	mu    sync.Mutex
	ln    net.Listener
	conn  net.Conn
	done  chan struct{}
	msgs  []syslogMsg
	conns int
}

// startCollector starts a collector on 127.0.0.1:0, over TLS when cfg is
// not nil, stopped when the test ends.
func startCollector(t testing.TB, cfg *tls.Config) *collector {
	t.Helper()
	c := &collector{t: t, tls: cfg, addr: "127.0.0.1:0"}
	c.start()
	t.Cleanup(c.stop)
	return c
}

// start listens on c.addr (the same port after a stop) and serves.
func (c *collector) start() {
	c.t.Helper()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatalf("collector: listen: %v", err)
	}
	c.addr = ln.Addr().String()
	if c.tls != nil {
		ln = tls.NewListener(ln, c.tls)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.ln, c.done = ln, done
	c.mu.Unlock()
	go c.serve(ln, done)
}

// serve accepts connections and reads each to its end, one at a time.
func (c *collector) serve(ln net.Listener, done chan struct{}) {
	defer close(done)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.ln != ln {
			// Stopped between Accept and here.
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conn = conn
		c.conns++
		c.mu.Unlock()
		c.read(conn)
		conn.Close()
	}
}

// read records the messages of one connection until it ends.
func (c *collector) read(conn net.Conn) {
	br := bufio.NewReader(conn)
	for frames := 0; ; frames++ {
		c.gate.RLock()
		c.gate.RUnlock()
		frame, err := readFrame(br)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err):
			case frames == 0 && strings.Contains(err.Error(), "tls:"):
				// A client that rejects the collector's certificate.
				c.t.Logf("collector: %v", err)
			default:
				c.t.Errorf("collector: %v", err)
			}
			return
		}
		m, err := parseMessage(frame)
		if err != nil {
			c.t.Errorf("collector: %v in %q", err, frame)
			return
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	}
}

// isReset reports whether err is a connection reset or a read on a
// connection the collector closed itself (stop).
func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "use of closed")
}

// stop closes the listener and the connection being read and waits for
// the collector to end. It must not be called while paused.
func (c *collector) stop() {
	c.mu.Lock()
	ln, conn, done := c.ln, c.conn, c.done
	c.ln, c.conn = nil, nil
	c.mu.Unlock()
	if ln == nil {
		return
	}
	ln.Close()
	if conn != nil {
		conn.Close()
	}
	<-done
}

// restart starts the collector again on the same port.
func (c *collector) restart() { c.start() }

// pause stops reading (after the frame being read); resume reads again.
func (c *collector) pause()  { c.gate.Lock() }
func (c *collector) resume() { c.gate.Unlock() }

// messages returns what the collector has recorded.
func (c *collector) messages() []syslogMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]syslogMsg(nil), c.msgs...)
}

// seqs returns the seqs of the messages recorded, in order.
func (c *collector) seqs() []int64 {
	var out []int64
	for _, m := range c.messages() {
		out = append(out, m.seq())
	}
	return out
}

// count returns how many messages the collector has recorded.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// connections returns how many connections the collector has accepted.
func (c *collector) connections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns
}

// maxFrame bounds a frame the collector accepts.
const maxFrame = 8 << 20

// readFrame reads one RFC 6587 octet-counted frame: MSG-LEN SP MSG.
func readFrame(br *bufio.Reader) ([]byte, error) {
	lenStr, err := br.ReadString(' ')
	if err != nil {
		if lenStr == "" && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("frame length: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
	if err != nil || n <= 0 || n > maxFrame || lenStr[0] == '0' {
		return nil, fmt.Errorf("bad frame length %q", lenStr)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(br, frame); err != nil {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
	}
	return frame, nil
}

// parseMessage parses an RFC 5424 message with one SD element (or none).
func parseMessage(b []byte) (syslogMsg, error) {
	var m syslogMsg
	s := string(b)
	if !strings.HasPrefix(s, "<") {
		return m, errors.New("no PRI")
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return m, errors.New("bad PRI")
	}
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || pri > 191 {
		return m, fmt.Errorf("bad PRI %q", s[1:end])
	}
	m.PRI = pri
	s = s[end+1:]
	rest, ok := strings.CutPrefix(s, "1 ")
	if !ok {
		return m, errors.New("VERSION is not 1")
	}
	fields := strings.SplitN(rest, " ", 6)
	if len(fields) != 6 {
		return m, errors.New("short header")
	}
	m.Timestamp, m.Hostname, m.AppName, m.ProcID, m.MsgID = fields[0], fields[1], fields[2], fields[3], fields[4]
	for _, f := range fields[1:5] {
		for i := 0; i < len(f); i++ {
			if f[i] < 33 || f[i] > 126 {
				return m, fmt.Errorf("header field %q is not printable ASCII", f)
			}
		}
	}
	if len(m.MsgID) > 32 {
		return m, fmt.Errorf("MSGID %q longer than 32", m.MsgID)
	}
	s = fields[5]
	if strings.HasPrefix(s, "-") {
		s = s[1:]
	} else {
		if m.SDID, m.SD, s, err = parseSD(s); err != nil {
			return m, err
		}
	}
	if s == "" {
		return m, nil
	}
	s, ok = strings.CutPrefix(s, " ")
	if !ok {
		return m, errors.New("no space before MSG")
	}
	s, m.BOM = strings.CutPrefix(s, "\uFEFF")
	m.Msg = s
	return m, nil
}

// parseSD parses one SD-ELEMENT, [ID NAME="VALUE" ...], and returns the
// text after it.
func parseSD(s string) (id string, params map[string]string, rest string, err error) {
	if !strings.HasPrefix(s, "[") {
		return "", nil, "", errors.New("no SD element")
	}
	s = s[1:]
	sp := strings.IndexAny(s, " ]")
	if sp < 1 {
		return "", nil, "", errors.New("bad SD-ID")
	}
	id, s = s[:sp], s[sp:]
	params = map[string]string{}
	for {
		if strings.HasPrefix(s, "]") {
			return id, params, s[1:], nil
		}
		s, _ = strings.CutPrefix(s, " ")
		eq := strings.Index(s, `="`)
		if eq < 1 {
			return "", nil, "", errors.New("bad SD-PARAM")
		}
		name := s[:eq]
		s = s[eq+2:]
		var v bytes.Buffer
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\]`, s[i+1]) >= 0 {
				i++
			} else if s[i] == ']' {
				return "", nil, "", errors.New("unescaped ] in PARAM-VALUE")
			}
			v.WriteByte(s[i])
		}
		if i == len(s) {
			return "", nil, "", errors.New("unterminated PARAM-VALUE")
		}
		params[name] = v.String()
		s = s[i+1:]
	}
}
