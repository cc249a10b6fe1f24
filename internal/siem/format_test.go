package siem

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-pam/vigil/internal/audit"
)

// t0 is the time of the test events: 1772366400123 ms since the epoch.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// authDenied is a typical event: a refused SSH login from an IPv4 source.
var authDenied = audit.Event{Seq: 7, Time: t0, Type: "ssh.auth", Actor: "alice", Target: "db-prod", Source: "192.0.2.10:51234",
	Data:     map[string]any{"outcome": "denied", "reason": "locked", "user": "root@db-prod"},
	PrevHash: "aa01", Hash: "bb02"}

// version replaces VERSION in the CEF goldens: the build's version.
func version(s string) string { return strings.Replace(s, "VERSION", deviceVersion, 1) }

func TestJSONL(t *testing.T) {
	tests := []struct {
		name string
		ev   audit.Event
		want string
	}{
		{"auth denied", authDenied,
			`{"seq":7,"time":"2026-03-01T12:00:00.123456789Z","type":"ssh.auth","actor":"alice","target":"db-prod","session":"","source":"192.0.2.10:51234","data":{"outcome":"denied","reason":"locked","user":"root@db-prod"},"prev_hash":"aa01","hash":"bb02"}` + "\n"},
		{"no data, non-UTC time, HTML and a newline kept as JSON",
			audit.Event{Seq: 1, Time: time.Date(2026, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600)), Type: "vigil.start",
				Actor: "<b>&\n", Hash: "h"},
			`{"seq":1,"time":"2026-03-01T12:00:00Z","type":"vigil.start","actor":"<b>&\n","target":"","session":"","source":"","data":{},"prev_hash":"","hash":"h"}` + "\n"},
		{"data that cannot be encoded",
			audit.Event{Seq: 2, Time: t0, Type: "x", Data: map[string]any{"f": func() {}}},
			`{"seq":2,"time":"2026-03-01T12:00:00.123456789Z","type":"x","actor":"","target":"","session":"","source":"","data":{"encoding_error":"json: unsupported type: func()"},"prev_hash":"","hash":""}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(JSONL(tc.ev))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if strings.Count(got, "\n") != 1 {
				t.Fatalf("got %d newlines, want 1", strings.Count(got, "\n"))
			}
		})
	}
}

// TestJSONLRoundTrip checks that a JSONL line decodes back to the event.
func TestJSONLRoundTrip(t *testing.T) {
	var got audit.Event
	if err := json.Unmarshal(JSONL(authDenied), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(authDenied.Time) {
		t.Fatalf("time: got %v, want %v", got.Time, authDenied.Time)
	}
	got.Time = authDenied.Time
	if !reflect.DeepEqual(got, authDenied) {
		t.Fatalf("got %+v, want %+v", got, authDenied)
	}
}

func TestCEF(t *testing.T) {
	tests := []struct {
		name string
		ev   audit.Event
		want string
	}{
		{"auth denied", authDenied,
			`CEF:0|Vigil|Vigil|VERSION|ssh.auth|ssh auth denied|7|rt=1772366400123 externalId=7 cat=ssh.auth suser=alice dhost=db-prod destinationServiceName=db-prod src=192.0.2.10 spt=51234 cs2Label=hash cs2=bb02 cs3Label=prevHash cs3=aa01 outcome=denied msg={"outcome":"denied","reason":"locked","user":"root@db-prod"}`},
		{"rule hit in a session from IPv6",
			audit.Event{Seq: 12, Time: t0, Type: "rule.hit", Actor: "bob", Target: "web-1", Session: "s-42", Source: "[2001:db8::1]:2222",
				Data: map[string]any{"rule": "rm-rf", "severity": "critical", "text": "rm -rf /"}, PrevHash: "p", Hash: "h"},
			`CEF:0|Vigil|Vigil|VERSION|rule.hit|rule hit|10|rt=1772366400123 externalId=12 cat=rule.hit suser=bob dhost=web-1 destinationServiceName=web-1 c6a2Label=Source IPv6 Address c6a2=2001:db8::1 spt=2222 cs1Label=session cs1=s-42 cs2Label=hash cs2=h cs3Label=prevHash cs3=p msg={"rule":"rm-rf","severity":"critical","text":"rm -rf /"}`},
		{"IPv4-mapped source without a port, no data",
			audit.Event{Seq: 1, Time: t0, Type: "vigil.start", Actor: "vigil", Source: "::ffff:10.0.0.1", Hash: "h"},
			`CEF:0|Vigil|Vigil|VERSION|vigil.start|vigil start|3|rt=1772366400123 externalId=1 cat=vigil.start suser=vigil src=10.0.0.1 cs2Label=hash cs2=h msg={}`},
		{"source that is not an address",
			audit.Event{Seq: 3, Time: t0, Type: "token.issue", Actor: "admin", Source: "api", Hash: "h"},
			`CEF:0|Vigil|Vigil|VERSION|token.issue|token issue|3|rt=1772366400123 externalId=3 cat=token.issue suser=admin cs2Label=hash cs2=h cs4Label=source cs4=api msg={}`},
		{"header escaping: pipe, backslash, newline",
			audit.Event{Seq: 4, Time: t0, Type: "a|b\\c\nd", Hash: "h"},
			`CEF:0|Vigil|Vigil|VERSION|a\|b\\c` + "\uFFFD" + `d|a\|b\\c` + "\uFFFD" + `d|3|rt=1772366400123 externalId=4 cat=a|b\\c\nd cs2Label=hash cs2=h msg={}`},
		{"extension escaping: equals, backslash, CR, LF, pipe kept",
			audit.Event{Seq: 5, Time: t0, Type: "x", Actor: "a=b\\c\r\nd|e", Target: "t x", Hash: "h",
				Data: map[string]any{"k": "v=1\n"}},
			`CEF:0|Vigil|Vigil|VERSION|x|x|3|rt=1772366400123 externalId=5 cat=x suser=a\=b\\c\r\nd|e dhost=t x destinationServiceName=t x cs2Label=hash cs2=h msg={"k":"v\=1\\n"}`},
		{"control characters and invalid UTF-8",
			audit.Event{Seq: 6, Time: t0, Type: "x\x00", Actor: "\x1b[31mred\u2028\xff", Hash: "h"},
			"CEF:0|Vigil|Vigil|VERSION|x\uFFFD|x\uFFFD|3|rt=1772366400123 externalId=6 cat=x\uFFFD suser=\uFFFD[31mred\uFFFD\uFFFD cs2Label=hash cs2=h msg={}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(CEF(tc.ev))
			want := version(tc.want) + "\n"
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestSeverity(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		data map[string]any
		want int
	}{
		{"break-glass", "breakglass.use", nil, 10},
		{"rule low", "rule.hit", map[string]any{"severity": "low"}, 3},
		{"rule medium", "rule.hit", map[string]any{"severity": "medium"}, 5},
		{"rule high", "rule.hit", map[string]any{"severity": "HIGH"}, 8},
		{"rule critical", "rule.hit", map[string]any{"severity": "critical"}, 10},
		{"rule unknown", "rule.hit", map[string]any{"severity": 3}, 5},
		{"host key mismatch", "target.host_key_mismatch", nil, 8},
		{"request denied", "ssh.request_denied", nil, 7},
		{"dotted denied", "token.denied", nil, 7},
		{"auth denied by outcome", "ssh.auth", map[string]any{"outcome": "denied"}, 7},
		{"auth allowed", "ssh.auth", map[string]any{"outcome": "allowed"}, 3},
		{"failed", "recording.failed", nil, 6},
		{"underscore failed", "ssh.handshake_failed", nil, 6},
		{"failed as part of a word", "ssh.unfailed", nil, 3},
		{"routine", "session.start", nil, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Severity(audit.Event{Type: tc.typ, Data: tc.data}); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name    string
		want    func(audit.Event) []byte
		wantErr string
	}{
		{"jsonl", JSONL, ""},
		{"cef", CEF, ""},
		{"", nil, `siem: unknown format "" (want "jsonl" or "cef")`},
		{"JSON", nil, `siem: unknown format "JSON" (want "jsonl" or "cef")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Format(tc.name)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g, w := string(got(authDenied)), string(tc.want(authDenied)); g != w {
				t.Fatalf("got %s, want %s", g, w)
			}
		})
	}
}

// parseCEF splits a CEF line into its seven header fields (unescaped)
// and its extensions (unescaped), as a SIEM would.
func parseCEF(t *testing.T, line string) ([]string, map[string]string) {
	t.Helper()
	var header []string
	var cur strings.Builder
	i := 0
	for ; i < len(line) && len(header) < 7; i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && (line[i+1] == '\\' || line[i+1] == '|'):
			i++
			cur.WriteByte(line[i])
		case c == '|':
			header = append(header, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(header) != 7 {
		t.Fatalf("got %d header fields in %q, want 7", len(header), line)
	}
	ext := map[string]string{}
	rest := line[i:]
	// Unescaped '=' signs end keys; the key is the word before each.
	var eqs []int
	for j := 0; j < len(rest); j++ {
		if rest[j] == '\\' {
			j++
			continue
		}
		if rest[j] == '=' {
			eqs = append(eqs, j)
		}
	}
	keyStart := 0
	for k, eq := range eqs {
		key := rest[keyStart:eq]
		end := len(rest)
		if k+1 < len(eqs) {
			end = strings.LastIndexByte(rest[:eqs[k+1]], ' ')
			if end <= eq {
				t.Fatalf("no key before '=' at %d in %q", eqs[k+1], rest)
			}
		}
		ext[key] = unescapeExt(rest[eq+1 : end])
		keyStart = end + 1
	}
	return header, ext
}

// unescapeExt undoes the escaping of a CEF extension value.
func unescapeExt(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(v[i])
			}
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// sanitized is what CEF keeps of s: valid UTF-8 with the control
// characters it cannot escape (all but CR and LF in extensions) as U+FFFD.
func sanitized(s string, keepCRLF bool) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if isControl(r) && !(keepCRLF && (r == '\n' || r == '\r')) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestParseCEFGolden(t *testing.T) {
	h, ext := parseCEF(t, strings.TrimSuffix(string(CEF(authDenied)), "\n"))
	if want := []string{"CEF:0", "Vigil", "Vigil", deviceVersion, "ssh.auth", "ssh auth denied", "7"}; !reflect.DeepEqual(h, want) {
		t.Fatalf("header: got %q, want %q", h, want)
	}
	if got, want := ext["msg"], `{"outcome":"denied","reason":"locked","user":"root@db-prod"}`; got != want {
		t.Fatalf("msg: got %s, want %s", got, want)
	}
}

// FuzzCEF checks that a CEF line is always one line and that a parser
// gets back the header fields and the user-controlled extension values.
func FuzzCEF(f *testing.F) {
	f.Add("ssh.auth", "alice", "db-prod", "s-1", "192.0.2.1:22", "k", "v")
	f.Add("a|b\\c", "x=y\\", "t\r\nu", "", "[::1]:1", "=", "\n|\\")
	f.Add("\xff\x00|", "\u2028\x1b", " ", "=", "api", "outcome", "denied")
	f.Add("rule.hit", "", "", "", "", "severity", "high")
	f.Fuzz(func(t *testing.T, typ, actor, target, session, source, key, value string) {
		ev := audit.Event{Seq: 9, Time: t0, Type: typ, Actor: actor, Target: target, Session: session, Source: source,
			Data: map[string]any{key: value}, PrevHash: "p", Hash: "h"}
		out := string(CEF(ev))
		line, ok := strings.CutSuffix(out, "\n")
		if !ok {
			t.Fatalf("%q does not end in a newline", out)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("%q is more than one line", out)
		}
		if !utf8.ValidString(line) {
			t.Fatalf("%q is not UTF-8", line)
		}
		h, ext := parseCEF(t, line)
		want := []string{"CEF:0", "Vigil", "Vigil", deviceVersion, sanitized(typ, false), sanitized(cefName(ev), false), strconv.Itoa(Severity(ev))}
		if !reflect.DeepEqual(h, want) {
			t.Fatalf("header: got %q, want %q", h, want)
		}
		for k, v := range map[string]string{"suser": actor, "dhost": target, "cs1": session, "cat": typ} {
			if got, ok := ext[k]; v != "" && (!ok || got != sanitized(v, true)) {
				t.Fatalf("%s: got %q, want %q (line %q)", k, got, sanitized(v, true), line)
			}
		}
		if ext["externalId"] != "9" || ext["cs2"] != "h" {
			t.Fatalf("externalId, cs2: got %q, %q, want 9, h", ext["externalId"], ext["cs2"])
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(ext["msg"]), &data); err != nil {
			t.Fatalf("msg %q: %v", ext["msg"], err)
		}
	})
}

func BenchmarkJSONL(b *testing.B) {
	for b.Loop() {
		JSONL(authDenied)
	}
}

func BenchmarkCEF(b *testing.B) {
	for b.Loop() {
		CEF(authDenied)
	}
}
