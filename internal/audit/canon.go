package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The canonical form of an event, the bytes its hash covers, is the JSON
// array
//
//	[seq, time (Unix ns), type, actor, target, session, source, data]
//
// exactly as encoding/json marshals it (strings with HTML escaping,
// invalid UTF-8 as U+FFFD), with data being the stored canonical data
// bytes verbatim. appendCanonical builds it without reflection or
// allocation; a test holds it equal to json.Marshal's output.

// hasher is a reusable SHA-256 state and canonical-form buffer.
type hasher struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

var hasherPool = sync.Pool{New: func() any { return &hasher{h: sha256.New(), buf: make([]byte, 0, 512)} }}

// hexSum fills hs.hex with hex(SHA-256(prevHash ‖ canonical)) of a row
// and returns it; the slice is hs's, valid until hs is reused.
func (hs *hasher) hexSum(prevHash string, seq, timeNs int64, typ, actor, target, session, source string, data []byte) []byte {
	hs.buf = appendCanonical(hs.buf[:0], seq, timeNs, typ, actor, target, session, source, data)
	hs.h.Reset()
	hs.h.Write([]byte(prevHash))
	hs.h.Write(hs.buf)
	hs.h.Sum(hs.sum[:0])
	hex.Encode(hs.hex[:], hs.sum[:])
	return hs.hex[:]
}

// hashRow returns hex(SHA-256(prevHash ‖ canonical)) of a stored row.
func hashRow(prevHash string, seq, timeNs int64, typ, actor, target, session, source string, data []byte) string {
	hs := hasherPool.Get().(*hasher)
	defer hasherPool.Put(hs)
	return string(hs.hexSum(prevHash, seq, timeNs, typ, actor, target, session, source, data))
}

// matchRow reports whether hashRow(...) equals want without allocating
// the hex string.
func matchRow(want, prevHash string, seq, timeNs int64, typ, actor, target, session, source string, data []byte) bool {
	hs := hasherPool.Get().(*hasher)
	defer hasherPool.Put(hs)
	return string(hs.hexSum(prevHash, seq, timeNs, typ, actor, target, session, source, data)) == want
}

func appendCanonical(dst []byte, seq, timeNs int64, typ, actor, target, session, source string, data []byte) []byte {
	dst = append(dst, '[')
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, timeNs, 10)
	for _, s := range [...]string{typ, actor, target, session, source} {
		dst = append(dst, ',')
		dst = appendJSONString(dst, s)
	}
	dst = append(dst, ',')
	dst = append(dst, data...)
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json encodes a string with HTML
// escaping on (its default).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
