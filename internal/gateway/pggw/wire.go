package pggw

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes (the first four bytes after the length).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	// maxStartupPacket is PostgreSQL's own limit on a startup packet.
	maxStartupPacket = 10000
	// tlsHandshakeByte opens a TLS record carrying a handshake: a client
	// that starts with it speaks TLS without an SSLRequest (PostgreSQL
	// 17's sslnegotiation=direct).
	tlsHandshakeByte = 0x16
)

// SQLSTATE codes the gateway answers with.
const (
	stateInvalidPassword    = "28P01" // invalid_password
	stateInvalidAuthSpec    = "28000" // invalid_authorization_specification
	stateProtocolViolation  = "08P01" // protocol_violation
	stateConnectionFailure  = "08006" // connection_failure
	stateRejectedConnection = "08004" // sqlserver_rejected_establishment_of_sqlconnection
	stateFeatureNotSupp     = "0A000" // feature_not_supported
	stateProgramLimit       = "54000" // program_limit_exceeded
	stateInsufficientPriv   = "42501" // insufficient_privilege
	stateReadOnlyTx         = "25006" // read_only_sql_transaction
	stateAdminShutdown      = "57P01" // admin_shutdown
	stateQueryCanceled      = "57014" // query_canceled
)

// errTooLarge is a message over the size limit.
type errTooLarge struct {
	typ  byte
	size int
	max  int
}

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("message %q of %d bytes exceeds the limit of %d bytes", e.typ, e.size, e.max)
}

// msgReader reads the framed messages of one direction: a type byte, a
// four-byte length (counting itself) and the body. The body is valid
// until the next read.
type msgReader struct {
	r   *bufio.Reader
	max int // bodies larger than this are refused
	buf []byte
}

// next reads the next message.
func (m *msgReader) next() (typ byte, body []byte, err error) {
	hdr, err := m.r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	typ = hdr[0]
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, nil, fmt.Errorf("message %q has an invalid length %d", typ, n)
	}
	n -= 4
	if n > m.max {
		return 0, nil, &errTooLarge{typ: typ, size: n, max: m.max}
	}
	m.r.Discard(5)
	if cap(m.buf) < n {
		m.buf = make([]byte, n, max(n, 2*cap(m.buf)))
	}
	body = m.buf[:n]
	if _, err := io.ReadFull(m.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	// Large one-off buffers are not kept for the life of the session.
	if cap(m.buf) > 1<<20 && n < 1<<16 {
		m.buf = nil
	}
	return typ, body, nil
}

// buffered reports how many bytes are read ahead: when none are, the
// other side is waiting for an answer and pending output is flushed.
func (m *msgReader) buffered() int { return m.r.Buffered() }

// writeRaw writes one message as read.
func writeRaw(w *bufio.Writer, typ byte, body []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)+4))
	w.Write(hdr[:])
	_, err := w.Write(body)
	return err
}

// encoder is a pgproto3 message that encodes itself.
type encoder interface {
	Encode(dst []byte) ([]byte, error)
}

// writeMsg encodes msgs onto w.
func writeMsg(w io.Writer, msgs ...encoder) error {
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			return fmt.Errorf("pggw: encode: %w", err)
		}
	}
	_, err := w.Write(buf)
	return err
}

// pgError is an ErrorResponse (severity ERROR or FATAL).
func pgError(severity, code, msg, hint string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg, Hint: hint}
}

// notice is a NoticeResponse shown to the user (psql prints it).
func notice(msg string) *pgproto3.NoticeResponse {
	return &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "01000", Message: msg}
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}
