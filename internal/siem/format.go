package siem

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-pam/vigil/internal/audit"
)

// Format names, as in the configuration (audit.forward[].format).
const (
	FormatJSONL = "jsonl"
	FormatCEF   = "cef"
)

// Format returns the formatter called name: JSONL for "jsonl", CEF for
// "cef". Any other name, the empty one included, is an error (the
// configuration's default is applied by Build).
func Format(name string) (func(audit.Event) []byte, error) {
	f, err := lookupFormat(name)
	if err != nil {
		return nil, fmt.Errorf("siem: %w", err)
	}
	return f, nil
}

// lookupFormat is Format with an error for callers to prefix.
func lookupFormat(name string) (func(audit.Event) []byte, error) {
	switch name {
	case FormatJSONL:
		return JSONL, nil
	case FormatCEF:
		return CEF, nil
	}
	return nil, fmt.Errorf("unknown format %q (want %q or %q)", name, FormatJSONL, FormatCEF)
}

// jsonlEvent is the JSONL form of an event: audit.Event with its time in
// RFC 3339 UTC and data never null.
type jsonlEvent struct {
	Seq      int64          `json:"seq"`
	Time     string         `json:"time"`
	Type     string         `json:"type"`
	Actor    string         `json:"actor"`
	Target   string         `json:"target"`
	Session  string         `json:"session"`
	Source   string         `json:"source"`
	Data     map[string]any `json:"data"`
	PrevHash string         `json:"prev_hash"`
	Hash     string         `json:"hash"`
}

// JSONL returns ev as one line of JSON Lines: a JSON object with the keys
// seq, time (RFC 3339 with nanoseconds, UTC), type, actor, target,
// session, source, data (an object, "{}" when empty), prev_hash and hash,
// followed by "\n". Data keys are sorted; <, > and & are not escaped.
func JSONL(ev audit.Event) []byte {
	data := ev.Data
	if data == nil {
		data = map[string]any{}
	}
	b, err := marshal(jsonlEvent{Seq: ev.Seq, Time: ev.Time.UTC().Format(time.RFC3339Nano), Type: ev.Type,
		Actor: ev.Actor, Target: ev.Target, Session: ev.Session, Source: ev.Source, Data: data,
		PrevHash: ev.PrevHash, Hash: ev.Hash})
	if err != nil {
		// Data read back from the store is always encodable; an event
		// built in memory may not be. Say so rather than drop it.
		b, _ = marshal(jsonlEvent{Seq: ev.Seq, Time: ev.Time.UTC().Format(time.RFC3339Nano), Type: ev.Type,
			Actor: ev.Actor, Target: ev.Target, Session: ev.Session, Source: ev.Source,
			Data: map[string]any{"encoding_error": err.Error()}, PrevHash: ev.PrevHash, Hash: ev.Hash})
	}
	return append(b, '\n')
}

// marshal is json.Marshal without HTML escaping (a SIEM is not a web page,
// and "\u003c" only hinders a reader) and without the trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// compactData is ev.Data as compact JSON, "{}" when empty.
func compactData(d map[string]any) string {
	if len(d) == 0 {
		return "{}"
	}
	b, err := marshal(d)
	if err != nil {
		b, _ = marshal(map[string]string{"encoding_error": err.Error()})
	}
	return string(b)
}

// CEF vendor and product, the second and third header fields.
const (
	cefVendor  = "Vigil"
	cefProduct = "Vigil"
)

// deviceVersion is the CEF Device Version: the main module's version as
// stamped by the go command, or "dev". Set once at start-up.
var deviceVersion = buildVersion()

// buildVersion reads the version the go command stamped into the binary.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// CEF returns ev as one ArcSight CEF line followed by "\n":
//
//	CEF:0|Vigil|Vigil|VERSION|TYPE|NAME|SEVERITY|EXTENSIONS
//
// The package documentation lists the severities and extension keys. The
// line never contains CR or LF before its end, whatever the event holds.
func CEF(ev audit.Event) []byte {
	var b strings.Builder
	b.WriteString("CEF:0|")
	for _, f := range []string{cefVendor, cefProduct, deviceVersion, ev.Type, cefName(ev), strconv.Itoa(Severity(ev))} {
		writeHeader(&b, f)
		b.WriteByte('|')
	}
	ext := extensions{b: &b}
	ext.add("rt", strconv.FormatInt(ev.Time.UnixMilli(), 10))
	ext.add("externalId", strconv.FormatInt(ev.Seq, 10))
	ext.add("cat", ev.Type)
	ext.add("suser", ev.Actor)
	ext.add("dhost", ev.Target)
	ext.add("destinationServiceName", ev.Target)
	addr, port, isAddr := parseSource(ev.Source)
	if isAddr {
		if addr.Is4() {
			ext.add("src", addr.String())
		} else {
			ext.add("c6a2Label", "Source IPv6 Address")
			ext.add("c6a2", addr.String())
		}
		if port != 0 {
			ext.add("spt", strconv.Itoa(int(port)))
		}
	}
	if ev.Session != "" {
		ext.add("cs1Label", "session")
		ext.add("cs1", ev.Session)
	}
	if ev.Hash != "" {
		ext.add("cs2Label", "hash")
		ext.add("cs2", ev.Hash)
	}
	if ev.PrevHash != "" {
		ext.add("cs3Label", "prevHash")
		ext.add("cs3", ev.PrevHash)
	}
	if !isAddr && ev.Source != "" {
		ext.add("cs4Label", "source")
		ext.add("cs4", ev.Source)
	}
	if o, ok := ev.Data["outcome"].(string); ok {
		ext.add("outcome", o)
	}
	ext.add("msg", compactData(ev.Data))
	b.WriteByte('\n')
	return []byte(b.String())
}

// cefName is the CEF Name: the type in words, and the outcome if any.
func cefName(ev audit.Event) string {
	name := strings.NewReplacer(".", " ", "_", " ").Replace(ev.Type)
	if o, ok := ev.Data["outcome"].(string); ok && o != "" {
		name += " " + o
	}
	return name
}

// Severity returns the CEF severity (0 to 10) of ev; the package
// documentation has the table. The syslog sink derives its message
// severity from it.
func Severity(ev audit.Event) int {
	outcome, _ := ev.Data["outcome"].(string)
	switch {
	case strings.HasPrefix(ev.Type, "breakglass."):
		return 10
	case ev.Type == "rule.hit":
		s, _ := ev.Data["severity"].(string)
		switch strings.ToLower(s) {
		case "low":
			return 3
		case "medium":
			return 5
		case "high":
			return 8
		case "critical":
			return 10
		}
		return 5
	case hasSuffixWord(ev.Type, "mismatch"):
		return 8
	case hasSuffixWord(ev.Type, "denied") || outcome == "denied":
		return 7
	case hasSuffixWord(ev.Type, "failed") || outcome == "failed":
		return 6
	}
	return 3
}

// hasSuffixWord reports whether typ ends in word after a '.' or '_'
// ("ssh.request_denied", "x.denied"), or is the word itself.
func hasSuffixWord(typ, word string) bool {
	rest, ok := strings.CutSuffix(typ, word)
	return ok && (rest == "" || strings.HasSuffix(rest, ".") || strings.HasSuffix(rest, "_"))
}

// parseSource splits an event's source into an address and port: it
// accepts "IP:PORT", "[IPv6]:PORT" and a bare IP. IPv4-mapped IPv6
// addresses are unmapped and zones dropped.
func parseSource(s string) (netip.Addr, uint16, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), ap.Port(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), 0, true
	}
	return netip.Addr{}, 0, false
}

// writeHeader writes a CEF header field: `\` and `|` escaped, control
// characters and invalid UTF-8 as U+FFFD.
func writeHeader(b *strings.Builder, s string) {
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\\' || r == '|':
			b.WriteByte('\\')
			b.WriteRune(r)
		case isControl(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
}

// extensions writes CEF key=value pairs, space separated.
type extensions struct {
	b *strings.Builder
	// started is set once a pair is written: the next needs a space.
	started bool
}

// add writes key=value, leaving out an empty value. Keys are constants
// of this package and need no escaping.
func (e *extensions) add(key, value string) {
	if value == "" {
		return
	}
	if e.started {
		e.b.WriteByte(' ')
	}
	e.started = true
	e.b.WriteString(key)
	e.b.WriteByte('=')
	for _, r := range strings.ToValidUTF8(value, "\uFFFD") {
		switch {
		case r == '\\' || r == '=':
			e.b.WriteByte('\\')
			e.b.WriteRune(r)
		case r == '\n':
			e.b.WriteString(`\n`)
		case r == '\r':
			e.b.WriteString(`\r`)
		case isControl(r):
			e.b.WriteRune(utf8.RuneError)
		default:
			e.b.WriteRune(r)
		}
	}
}

// isControl reports whether r is a C0 or C1 control character or a
// Unicode line or paragraph separator: characters CEF cannot escape and
// that some readers take as the end of a line. A tab is kept.
func isControl(r rune) bool {
	return (r < 0x20 && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}
