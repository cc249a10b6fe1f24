package sshgw

import (
	"regexp"
	"strings"
	"unicode"
)

// What Vigil keeps out of session.command audit events (which go to the
// database, the full-text index, SIEMs and reports, unlike recordings,
// which are encrypted): lines typed at password prompts, and secrets
// written inline in commands. Rules always see the real line.

// secretPromptRE matches a prompt for a secret: a keyword, then at most a
// few words, then ':' or '?' at the end. ('>' is left out: shell prompts
// such as "PS C:\secrets>" end in it, and every command there would be
// hidden.)
var secretPromptRE = regexp.MustCompile(`(?i)(password|passphrase|pass phrase|passcode|passwort|secret|\bpin\b|token|\botp\b|one-time|verification code)[^\n]{0,60}[:?]\s*$`)

// ansiRE matches terminal escape sequences (CSI, OSC, and two-byte
// escapes) that colour or move a prompt.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]`)

// secretPrompt reports whether prompt, what the target printed since its
// last newline, ends in a request for a secret (sudo, su, ssh, mysql -p,
// openssl, read -s -p …) with nothing typed echoed after it.
func secretPrompt(prompt string) bool {
	if prompt == "" {
		return false
	}
	prompt = ansiRE.ReplaceAllString(prompt, "")
	prompt = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, prompt)
	return secretPromptRE.MatchString(prompt)
}

// inlineSecretRE matches NAME=VALUE or NAME: VALUE where NAME says it is
// a secret; the value is replaced.
var inlineSecretRE = regexp.MustCompile(`(?i)(\b[\w-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|auth[_-]?token|credentials?)[\w-]*\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s'"]+)`)

// schemeSecretRE matches an HTTP credential after its scheme
// (Authorization: Bearer TOKEN, Basic BASE64).
var schemeSecretRE = regexp.MustCompile(`(?i)\b(bearer|basic|digest)\s+([A-Za-z0-9._~+/=-]{8,})`)

// mysqlPasswordRE matches mysql's -pSECRET (the password glued to -p).
var mysqlPasswordRE = regexp.MustCompile(`(\s-p)(\S+)`)

// base64LineRE matches a line of base64 key material (a pasted PEM body).
var base64LineRE = regexp.MustCompile(`^[A-Za-z0-9+/]{40,}={0,2}$`)

// redactSecrets returns line with inline secrets replaced by ***.
func redactSecrets(line string) string {
	trimmed := strings.TrimSpace(line)
	if base64LineRE.MatchString(trimmed) {
		return "[base64 data]"
	}
	line = schemeSecretRE.ReplaceAllString(line, "${1} ***")
	line = inlineSecretRE.ReplaceAllString(line, "${1}***")
	if strings.Contains(line, "mysql") || strings.Contains(line, "mariadb") {
		line = mysqlPasswordRE.ReplaceAllString(line, "${1}***")
	}
	return line
}

// secretLooking reports whether a line typed ahead looks like a password
// rather than a command: one word, long, of mixed character classes, not
// a path.
func secretLooking(line string) bool {
	w := strings.TrimSpace(line)
	if len(w) < 8 || strings.ContainsAny(w, " \t/") {
		return false
	}
	var lower, upper, digit, other bool
	for _, r := range w {
		switch {
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	return classes >= 3 || (classes == 2 && len(w) >= 16)
}
