package siem

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
)

// Syslog timing defaults.
const (
	// syslogDialTimeout bounds connecting to the collector, the TLS
	// handshake included.
	syslogDialTimeout = 10 * time.Second
	// syslogWriteTimeout bounds writing one batch: a collector that stops
	// reading for longer is treated as gone and the batch is sent again on
	// a new connection.
	syslogWriteTimeout = 30 * time.Second
	// syslogAckTimeout bounds the wait for the collector's TCP stack to
	// acknowledge a batch once written.
	syslogAckTimeout = 30 * time.Second
	// syslogKeepAlive is the TCP keep-alive period: an idle connection to
	// a collector that vanished is noticed before the next batch.
	syslogKeepAlive = 30 * time.Second
	// probeWindow is how long the health probe waits for the read it
	// expects to time out. The runtime first tries one non-blocking read,
	// which returns at once if an EOF, a reset or data is queued; the
	// window only has to be long enough for that, and it is paid once per
	// batch.
	probeWindow = time.Millisecond
)

// syslogFacility is authpriv: audit events are security messages that
// may name users and hosts.
const syslogFacility = 10

// sdID is the SD-ID of the structured data element carrying seq and
// hash. 32473 is the private enterprise number IANA reserves for
// documentation (RFC 5612).
const sdID = "vigil@32473"

// maxMsgID is the length limit of an RFC 5424 MSGID.
const maxMsgID = 32

// Syslog is a Sink sending each event as an RFC 5424 message, framed by
// octet counting (RFC 6587), over TCP or, with TLS set, over TLS (RFC
// 5425). The package documentation describes the message and when a batch
// counts as delivered. Its zero value is not usable: SinkName and Addr
// are required. Send and Close may be called from different goroutines.
type Syslog struct {
	// SinkName names the sink (and its forwarding cursor).
	SinkName string
	// Addr is the collector's HOST:PORT.
	Addr string
	// TLS, when not nil, is the client TLS configuration (root CAs,
	// server name); nil means plain TCP. Versions below TLS 1.2 are never
	// used.
	TLS *tls.Config
	// Format is "jsonl" or "cef"; empty means "jsonl".
	Format string
	// Hostname is the HOSTNAME of each message; empty means the local
	// host name (os.Hostname). Characters outside printable ASCII are
	// replaced with '_'.
	Hostname string

	// dialTimeout, writeTimeout and ackTimeout are the timing; zero means
	// the defaults above, and tests shorten them.
	dialTimeout, writeTimeout, ackTimeout time.Duration

	// mu guards conn, raw and host, and serialises Send and Close.
	mu sync.Mutex
	// conn is the connection (a *tls.Conn with TLS), raw the TCP
	// connection under it; both nil when not connected.
	conn net.Conn
	raw  *net.TCPConn
	// host is the HOSTNAME in use, resolved on the first Send.
	host string
}

// Name returns s.SinkName.
func (s *Syslog) Name() string { return s.SinkName }

// Validate checks the configuration; NewForwarder calls it.
func (s *Syslog) Validate() error {
	if s.SinkName == "" {
		return errors.New("siem: syslog sink without a name")
	}
	if err := validateAddr(s.Addr); err != nil {
		return fmt.Errorf("siem: syslog %s: %w", s.SinkName, err)
	}
	if _, err := s.formatter(); err != nil {
		return fmt.Errorf("siem: syslog %s: %w", s.SinkName, err)
	}
	return nil
}

// validateAddr checks a HOST:PORT with a non-empty host and a port from 1
// to 65535.
func validateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not HOST:PORT", addr)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// formatter returns the function formatting one event.
func (s *Syslog) formatter() (func(audit.Event) []byte, error) {
	if s.Format == "" {
		return JSONL, nil
	}
	return lookupFormat(s.Format)
}

// Send writes events to the collector, connecting first if need be, and
// returns len(events) once they count as delivered (see the package
// documentation). On any failure it drops the connection and returns 0:
// what the collector got of the batch is unknown, so all of it is sent
// again. It returns early when ctx ends.
func (s *Syslog) Send(ctx context.Context, events []audit.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	format, err := s.formatter()
	if err != nil {
		return 0, fmt.Errorf("siem: syslog %s: %w", s.SinkName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host == "" {
		s.host = s.hostname()
	}
	var buf bytes.Buffer
	for _, ev := range events {
		msg := Message(ev, s.host, format)
		buf.WriteString(strconv.Itoa(len(msg)))
		buf.WriteByte(' ')
		buf.Write(msg)
	}
	if s.conn != nil {
		// A collector that restarted since the last batch left a
		// connection that accepts a write and loses it: check first.
		if err := s.healthy(!ackSupported); err != nil {
			s.drop()
		}
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return 0, err
		}
	}
	if err := s.write(ctx, buf.Bytes()); err != nil {
		s.drop()
		if ctx.Err() != nil {
			return 0, fmt.Errorf("siem: syslog %s: %w", s.SinkName, context.Cause(ctx))
		}
		return 0, fmt.Errorf("siem: syslog %s: events %d-%d: %w", s.SinkName, events[0].Seq, events[len(events)-1].Seq, err)
	}
	return len(events), nil
}

// write sends b and waits until it counts as delivered.
func (s *Syslog) write(ctx context.Context, b []byte) error {
	conn := s.conn
	if err := conn.SetWriteDeadline(time.Now().Add(orDefault(s.writeTimeout, syslogWriteTimeout))); err != nil {
		return err
	}
	// Ending ctx unblocks a write or a probe in progress.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := waitAcked(ctx, s.raw, orDefault(s.ackTimeout, syslogAckTimeout)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.healthy(true)
}

// healthy checks the connection: on Linux the TCP state must still be
// ESTABLISHED and, with probe, a read must time out (a collector never
// sends; data, an EOF or a reset mean it has gone).
func (s *Syslog) healthy(probe bool) error {
	if _, err := tcpState(s.raw); err != nil {
		return err
	}
	if !probe {
		return nil
	}
	if err := s.conn.SetReadDeadline(time.Now().Add(probeWindow)); err != nil {
		return err
	}
	var one [1]byte
	n, err := s.conn.Read(one[:])
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && n == 0 {
		return nil
	}
	if err == nil {
		return errors.New("collector sent data (a syslog collector never does); dropping the connection")
	}
	return fmt.Errorf("collector closed the connection: %w", err)
}

// dial connects to the collector.
func (s *Syslog) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: orDefault(s.dialTimeout, syslogDialTimeout), KeepAlive: syslogKeepAlive}
	var conn net.Conn
	var err error
	if s.TLS != nil {
		cfg := s.TLS.Clone()
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(s.Addr)
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", s.Addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.Addr)
	}
	if err != nil {
		return fmt.Errorf("siem: syslog %s: connect: %w", s.SinkName, err)
	}
	under := conn
	if tc, ok := conn.(*tls.Conn); ok {
		under = tc.NetConn()
	}
	raw, ok := under.(*net.TCPConn)
	if !ok {
		conn.Close()
		return fmt.Errorf("siem: syslog %s: connect: not a TCP connection (%T)", s.SinkName, under)
	}
	s.conn, s.raw = conn, raw
	return nil
}

// drop closes the connection without a TLS close_notify, which could
// block on a collector that stopped reading.
func (s *Syslog) drop() {
	if s.raw != nil {
		s.raw.Close()
	}
	s.conn, s.raw = nil, nil
}

// Close closes the connection, if any. The next Send reconnects.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	s.conn.SetDeadline(time.Now().Add(time.Second))
	err := s.conn.Close()
	s.conn, s.raw = nil, nil
	if err != nil {
		return fmt.Errorf("siem: syslog %s: close: %w", s.SinkName, err)
	}
	return nil
}

// hostname is s.Hostname or the local host name, as an RFC 5424
// HOSTNAME.
func (s *Syslog) hostname() string {
	h := s.Hostname
	if h == "" {
		h, _ = os.Hostname()
	}
	return headerField(h, 255)
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Message returns ev as an RFC 5424 syslog message (without framing):
//
//	<PRI>1 TIMESTAMP HOSTNAME vigil - MSGID [vigil@32473 seq="N" hash="H"] MSG
//
// PRI is facility authpriv with a severity derived from the CEF severity;
// TIMESTAMP the event's time in UTC with microseconds; MSGID the event
// type; MSG format(ev) without its final newline, preceded by a UTF-8 BOM
// when it is not pure ASCII. hostname must already be a valid HOSTNAME.
func Message(ev audit.Event, hostname string, format func(audit.Event) []byte) []byte {
	var b bytes.Buffer
	b.WriteByte('<')
	b.WriteString(strconv.Itoa(syslogFacility*8 + syslogSeverity(Severity(ev))))
	b.WriteString(">1 ")
	b.WriteString(timestamp(ev.Time))
	b.WriteByte(' ')
	if hostname == "" {
		hostname = "-"
	}
	b.WriteString(hostname)
	b.WriteString(" vigil - ")
	b.WriteString(headerField(ev.Type, maxMsgID))
	b.WriteString(" [" + sdID + ` seq="`)
	writeParam(&b, strconv.FormatInt(ev.Seq, 10))
	b.WriteString(`" hash="`)
	writeParam(&b, ev.Hash)
	b.WriteString(`"]`)
	msg := bytes.TrimSuffix(format(ev), []byte{'\n'})
	if len(msg) > 0 {
		b.WriteByte(' ')
		if !isASCII(msg) {
			b.WriteString("\uFEFF")
		}
		b.Write(msg)
	}
	return b.Bytes()
}

// syslogSeverity maps a CEF severity to an RFC 5424 severity.
func syslogSeverity(cef int) int {
	switch {
	case cef >= 9:
		return 2 // critical
	case cef >= 7:
		return 4 // warning
	case cef >= 4:
		return 5 // notice
	}
	return 6 // informational
}

// timestamp formats t as an RFC 5424 TIMESTAMP: UTC, at most six
// fractional digits; "-" (the NILVALUE) for a time it cannot express.
func timestamp(t time.Time) string {
	t = t.UTC()
	if t.IsZero() || t.Year() < 0 || t.Year() > 9999 {
		return "-"
	}
	return t.Format("2006-01-02T15:04:05.000000Z07:00")
}

// headerField makes s a header field of at most max characters of
// printable ASCII (33 to 126), other bytes replaced with '_'; "-" when s
// is empty.
func headerField(s string, max int) string {
	if s == "" {
		return "-"
	}
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// writeParam writes an SD-PARAM value: '"', '\' and ']' escaped with a
// backslash (RFC 5424 §6.3.3).
func writeParam(b *bytes.Buffer, v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' || c == ']' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
}

// isASCII reports whether b is 7-bit.
func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
