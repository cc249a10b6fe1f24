package monitor

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/token"
)

// Evidence limits: an attempt's strings are the token's claims and
// header, chosen by whoever presented it, so evidence keeps only their
// start.
const (
	maxEvidence       = 128
	maxEvidenceDetail = 256
)

// firstUse is where and when a token was first accepted.
type firstUse struct {
	net netip.Prefix
	// at is Unix seconds.
	at int64
}

// detectors holds the state of the detectors that count or remember;
// every table is bounded by Config.MaxTracked. Used by one goroutine.
type detectors struct {
	cfg  *Config
	seed maphash.Seed

	burstBySource  *table[netip.Prefix, window]
	burstBySubject *table[uint64, window]
	kidStorm       *table[string, window]
	firstNet       *table[uint64, firstUse]
	hours          *baseline

	allowedAlgs map[string]bool
	ignoreUsers map[string]bool
}

func newDetectors(cfg *Config) (*detectors, error) {
	d := &detectors{cfg: cfg, seed: maphash.MakeSeed(),
		burstBySource:  newTable[netip.Prefix, window](cfg.MaxTracked),
		burstBySubject: newTable[uint64, window](cfg.MaxTracked),
		kidStorm:       newTable[string, window](cfg.MaxTracked),
		firstNet:       newTable[uint64, firstUse](cfg.MaxTracked),
		allowedAlgs:    make(map[string]bool), ignoreUsers: make(map[string]bool),
	}
	for _, a := range cfg.Alg.Allowed {
		d.allowedAlgs[a] = true
	}
	for _, u := range cfg.UnusualHours.Ignore {
		d.ignoreUsers[u] = true
	}
	var err error
	if d.hours, err = newBaseline(cfg.UnusualHours); err != nil {
		return nil, err
	}
	return d, nil
}

// detect appends to found what the enabled detectors find in a.
func (d *detectors) detect(a *token.Attempt, found []finding) []finding {
	c := d.cfg
	if c.Alg.Enabled {
		found = d.alg(a, found)
	}
	if c.SignatureBurst.Enabled && a.Reason == token.ReasonBadSignature {
		found = d.signatureBurst(a, found)
	}
	if c.UnknownKID.Enabled && a.Reason == token.ReasonUnknownKID {
		found = d.unknownKID(a, found)
	}
	if c.ExpiredReplay.Enabled && a.Reason == token.ReasonExpired {
		found = d.expiredReplay(a, found)
	}
	if c.RevokedReuse.Enabled && a.Reason == token.ReasonRevoked {
		found = d.revokedReuse(a, found)
	}
	if c.SourceChange.Enabled && (a.Accepted || a.Reason == token.ReasonSource) {
		found = d.sourceChange(a, found)
	}
	if c.Lifetime.Enabled {
		found = d.lifetime(a, found)
	}
	if c.HeaderInjection.Enabled {
		found = d.headerInjection(a, found)
	}
	if c.BreakGlass.Enabled && a.Accepted && a.BreakGlass {
		found = d.breakGlass(a, found)
	}
	if c.UnusualHours.Enabled && a.Accepted && a.Subject != "" && !d.ignoreUsers[a.Subject] {
		found = d.unusualHours(a, found)
	}
	return found
}

// alg: alg "none", an HMAC, an algorithm not allowed or not the key's;
// and, with alg_none.allowed, accepted tokens outside the list.
func (d *detectors) alg(a *token.Attempt, found []finding) []finding {
	switch a.Reason {
	case token.ReasonAlgNone, token.ReasonAlgHMAC, token.ReasonAlgNotAllowed, token.ReasonAlgKeyMismatch:
		f := newFinding(DetectorAlg, d.cfg.Alg.Severity, a, "src "+sourceOf(a)+" alg "+clip(a.Alg, 32),
			"token with alg %q refused (%s) from %s, subject %s", clip(a.Alg, 32), a.Reason, sourceOf(a), who(a))
		return append(found, f)
	case token.ReasonOK:
		if len(d.allowedAlgs) > 0 && !d.allowedAlgs[a.Alg] {
			f := newFinding(DetectorAlg, d.cfg.Alg.Severity, a, "accepted alg "+clip(a.Alg, 32)+" iss "+clip(a.Issuer, 64),
				"token of %s accepted with alg %s, outside the monitor's allowed algorithms", who(a), clip(a.Alg, 32))
			f.data["allowed"] = d.cfg.Alg.Allowed
			return append(found, f)
		}
	}
	return found
}

// signatureBurst: threshold bad signatures within the window from one
// source network, or else for one claimed subject (from many sources).
func (d *detectors) signatureBurst(a *token.Attempt, found []finding) []finding {
	c := d.cfg.SignatureBurst
	net := network(addrOf(a), c.IPv4Prefix, c.IPv6Prefix)
	w, _ := d.burstBySource.put(net)
	bySource := w.add(a.Time, c.Window)
	w, _ = d.burstBySubject.put(d.hash(a.Issuer, a.Subject))
	bySubject := w.add(a.Time, c.Window)
	switch {
	case bySource >= c.Threshold:
		f := newFinding(DetectorSignatureBurst, c.Severity, a, "src "+netString(net),
			"%d bad signatures within %s from %s (last for subject %s)", bySource, c.Window, netString(net), who(a))
		f.data["failures"], f.data["window"], f.data["network"] = bySource, c.Window.String(), netString(net)
		return append(found, f)
	case bySubject >= c.Threshold && a.Subject != "":
		f := newFinding(DetectorSignatureBurst, c.Severity, a, "sub "+clip(a.Issuer, 64)+" "+clip(a.Subject, 64),
			"%d bad signatures within %s for subject %s (last from %s)", bySubject, c.Window, who(a), sourceOf(a))
		f.data["failures"], f.data["window"] = bySubject, c.Window.String()
		return append(found, f)
	}
	return found
}

// unknownKID: a kid no trusted key set has, from one source; or a storm
// of them against one issuer.
func (d *detectors) unknownKID(a *token.Attempt, found []finding) []finding {
	c := d.cfg.UnknownKID
	iss := clip(a.Issuer, 64)
	w, _ := d.kidStorm.put(iss)
	if n := w.add(a.Time, c.StormWindow); n >= c.StormThreshold {
		f := newFinding(DetectorUnknownKID, c.StormSeverity, a, "storm "+iss,
			"%d tokens with unknown key ids for issuer %q within %s (each may make Vigil refetch its keys); last kid %q from %s",
			n, iss, c.StormWindow, clip(a.KID, 64), sourceOf(a))
		f.data["pattern"], f.data["attempts"], f.data["window"] = "storm", n, c.StormWindow.String()
		return append(found, f)
	}
	f := newFinding(DetectorUnknownKID, c.Severity, a, "src "+sourceOf(a)+" iss "+iss,
		"token with unknown kid %q for issuer %q from %s, subject %s", clip(a.KID, 64), iss, sourceOf(a), who(a))
	return append(found, f)
}

// expiredReplay: an expired token presented more than the grace after
// its exp (the signature was valid, so exp is the issuer's).
func (d *detectors) expiredReplay(a *token.Attempt, found []finding) []finding {
	c := d.cfg.ExpiredReplay
	if a.ExpiresAt.IsZero() {
		return found
	}
	late := a.Time.Sub(a.ExpiresAt)
	if late <= c.Grace {
		return found
	}
	f := newFinding(DetectorExpiredReplay, c.Severity, a, "token "+tokenRef(a),
		"token %s of %s presented %s after it expired, from %s", tokenRef(a), who(a), late.Round(time.Second), sourceOf(a))
	f.data["past_expiry"], f.data["grace"] = late.Round(time.Second).String(), c.Grace.String()
	return append(found, f)
}

// revokedReuse: a revoked token presented again.
func (d *detectors) revokedReuse(a *token.Attempt, found []finding) []finding {
	f := newFinding(DetectorRevokedReuse, d.cfg.RevokedReuse.Severity, a, "token "+tokenRef(a),
		"revoked token %s of %s presented again from %s", tokenRef(a), who(a), sourceOf(a))
	return append(found, f)
}

// sourceChange: an accepted token used from a network other than the one
// it was first accepted from, or a token refused for being presented
// outside the networks its src claim binds it to.
func (d *detectors) sourceChange(a *token.Attempt, found []finding) []finding {
	c := d.cfg.SourceChange
	if a.Reason == token.ReasonSource {
		if !a.SignatureValid {
			return found
		}
		f := newFinding(DetectorSourceChange, c.Severity, a, "token "+tokenRef(a)+" outside src",
			"token %s of %s presented from %s, outside the networks it is bound to (refused)", tokenRef(a), who(a), sourceOf(a))
		f.data["pattern"] = "outside_src"
		return append(found, f)
	}
	addr := addrOf(a)
	if !addr.IsValid() {
		return found
	}
	net := network(addr, c.IPv4Prefix, c.IPv6Prefix)
	first, seen := d.firstNet.put(d.tokenHash(a))
	if !seen {
		*first = firstUse{net: net, at: a.Time.Unix()}
		return found
	}
	if first.net == net {
		return found
	}
	firstAt := time.Unix(first.at, 0).UTC()
	f := newFinding(DetectorSourceChange, c.Severity, a, "token "+tokenRef(a)+" net "+net.String(),
		"token %s of %s used from %s, first used from %s at %s (possible theft)", tokenRef(a), who(a), net, first.net,
		firstAt.Format(time.RFC3339))
	f.data["network"], f.data["first_network"], f.data["first_used"] = net.String(), first.net.String(), firstAt.Format(time.RFC3339)
	return append(found, f)
}

// lifetime: a validly signed token without exp, one refused for its
// lifetime, or an accepted one living longer than policy.
func (d *detectors) lifetime(a *token.Attempt, found []finding) []finding {
	c := d.cfg.Lifetime
	iss := clip(a.Issuer, 64)
	switch {
	case a.NoExpiry && a.SignatureValid:
		f := newFinding(DetectorLifetime, c.Severity, a, "no_exp "+iss,
			"issuer %q signed a token without exp (subject %s, refused)", iss, who(a))
		f.data["problem"] = "no_exp"
		return append(found, f)
	case a.Reason == token.ReasonLifetime:
		f := newFinding(DetectorLifetime, c.Severity, a, "refused "+iss,
			"token of issuer %q for %s refused: lifetime over the verifier's cap", iss, who(a))
		f.data["problem"] = "over_verifier_cap"
		if life, ok := lifetimeOf(a); ok {
			f.data["lifetime"] = life.String()
		}
		return append(found, f)
	case a.Accepted:
		limit := c.MaxLifetime
		if l, ok := c.ByIssuer[a.Issuer]; ok {
			limit = l
		}
		life, ok := lifetimeOf(a)
		if limit <= 0 || !ok || life <= limit {
			return found
		}
		f := newFinding(DetectorLifetime, c.Severity, a, "over "+iss,
			"issuer %q issued a token living %s, over the policy of %s (subject %s)", iss, life, limit, who(a))
		f.data["problem"], f.data["lifetime"], f.data["max_lifetime"] = "over_policy", life.String(), limit.String()
		return append(found, f)
	}
	return found
}

// lifetimeOf is exp - iat, or without iat exp - the time presented (a
// lower bound).
func lifetimeOf(a *token.Attempt) (time.Duration, bool) {
	switch {
	case a.ExpiresAt.IsZero():
		return 0, false
	case !a.IssuedAt.IsZero():
		return a.ExpiresAt.Sub(a.IssuedAt), true
	default:
		return a.ExpiresAt.Sub(a.Time), true
	}
}

// headerInjection: a header naming or embedding a key, an unsupported
// extension, or a kid crafted as a path, URL, query or command.
func (d *detectors) headerInjection(a *token.Attempt, found []finding) []finding {
	c := d.cfg.HeaderInjection
	if a.Reason == token.ReasonKeyReference || a.Reason == token.ReasonCrit {
		hdr := headerName(a.Detail)
		f := newFinding(DetectorHeaderInjection, c.Severity, a, "src "+sourceOf(a)+" header "+hdr,
			"token with a %q header refused from %s (%s), subject %s", hdr, sourceOf(a), a.Reason, who(a))
		f.data["header"] = hdr
		found = append(found, f)
	}
	if why := suspiciousKID(a.KID, c.MaxKIDLength); why != "" {
		f := newFinding(DetectorHeaderInjection, c.Severity, a, "src "+sourceOf(a)+" kid "+why,
			"token with a suspicious kid (%s) %q from %s, subject %s", why, clip(a.KID, 64), sourceOf(a), who(a))
		f.data["header"], f.data["kid_problem"], f.data["kid_length"] = "kid", why, len(a.KID)
		found = append(found, f)
	}
	return found
}

// headerName reads the header name out of a key-reference or crit
// refusal's detail (`header "jku"`).
func headerName(detail string) string {
	if _, rest, ok := strings.Cut(detail, `"`); ok {
		if name, _, ok := strings.Cut(rest, `"`); ok {
			return clip(name, 16)
		}
	}
	return "unknown"
}

// suspiciousKID says why kid looks like an injection, or "". Real kids are
// thumbprints, UUIDs, hex or base64 (standard or URL alphabet) and short
// names such as "key-2026-01".
func suspiciousKID(kid string, maxLen int) string {
	switch {
	case kid == "":
		return ""
	case len(kid) > maxLen:
		return "overlong"
	case strings.Contains(kid, ".."):
		return "path_traversal"
	case strings.Contains(kid, "://") || hasPrefixFold(kid, "file:") || hasPrefixFold(kid, "data:"):
		return "url"
	case strings.Contains(kid, "/*"), strings.Contains(kid, "--") && !urlSafe(kid):
		// A base64url thumbprint (Vigil's own kids) holds "--" about once
		// in a hundred keys; without a space or quote it comments nothing.
		return "sql"
	}
	for i := 0; i < len(kid); i++ {
		switch c := kid[i]; {
		case c < 0x20 || c == 0x7f:
			return "control_character"
		case strings.IndexByte("'\"`;|&$<>\\", c) >= 0:
			return "metacharacter"
		}
	}
	return ""
}

// urlSafe reports whether s is only base64url characters.
func urlSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// breakGlass: every accepted break-glass token.
func (d *detectors) breakGlass(a *token.Attempt, found []finding) []finding {
	f := newFinding(DetectorBreakGlass, d.cfg.BreakGlass.Severity, a, "token "+tokenRef(a)+" src "+sourceOf(a),
		"break-glass token %s used by %s from %s", tokenRef(a), who(a), sourceOf(a))
	return append(found, f)
}

// unusualHours: an accepted token of a user with enough history, at an
// hour of the week they are (almost) never active.
func (d *detectors) unusualHours(a *token.Attempt, found []finding) []finding {
	c := d.cfg.UnusualHours
	j := d.hours.observe(a.Subject, a.Time)
	if !j.judged || j.share >= c.MinShare {
		return found
	}
	f := newFinding(DetectorUnusualHours, c.Severity, a, "user "+clip(a.Subject, 128),
		"%s active %s %s, outside their usual hours (%.1f%% of %d active hours within %dh of it)",
		who(a), j.local.Format("Mon 15:04"), j.zone, 100*j.share, j.total, c.Spread)
	f.data["local_time"], f.data["time_zone"] = j.local.Format("Mon 15:04"), j.zone
	f.data["share"], f.data["active_hours"], f.data["history_days"] = j.share, j.total, j.days
	return append(found, f)
}

// newFinding is a finding with a's evidence.
func newFinding(detector string, sev alert.Severity, a *token.Attempt, key, format string, args ...any) finding {
	f := finding{detector: detector, key: key, severity: sev, time: a.Time, summary: fmt.Sprintf(format, args...),
		source: a.Source, data: evidence(a)}
	if a.Accepted || a.SignatureValid {
		f.actor = clip(a.Subject, maxEvidence)
	}
	return f
}

// evidence is what an alert says about a: never the token, and the
// claims of a token whose signature was not valid marked unverified.
func evidence(a *token.Attempt) map[string]any {
	d := make(map[string]any, 16)
	d["reason"], d["issuer_kind"], d["claims_verified"] = string(a.Reason), a.Kind, a.Accepted || a.SignatureValid
	if a.Accepted {
		d["outcome"] = "accepted"
	} else {
		d["outcome"] = "rejected"
	}
	for _, kv := range [...]struct{ k, v string }{{"iss", a.Issuer}, {"sub", a.Subject}, {"jti", a.JTI},
		{"kid", a.KID}, {"alg", a.Alg}, {"source", a.Source}} {
		if kv.v != "" {
			d[kv.k] = clip(kv.v, maxEvidence)
		}
	}
	if a.Detail != "" {
		d["detail"] = clip(a.Detail, maxEvidenceDetail)
	}
	if !a.ExpiresAt.IsZero() {
		d["exp"] = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if !a.IssuedAt.IsZero() {
		d["iat"] = a.IssuedAt.UTC().Format(time.RFC3339)
	}
	if a.BreakGlass {
		d["break_glass"] = true
	}
	if a.Cached {
		d["cached"] = true
	}
	return d
}

// clip returns s as valid UTF-8 of at most n bytes (and an ellipsis).
func clip(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// who names a's subject, marked unverified when the signature was not.
func who(a *token.Attempt) string {
	switch {
	case a.Subject == "":
		return "(none)"
	case a.Accepted || a.SignatureValid:
		return fmt.Sprintf("%q", clip(a.Subject, 64))
	default:
		return fmt.Sprintf("%q (claimed, unverified)", clip(a.Subject, 64))
	}
}

// tokenRef names a's token by jti, or by subject and expiry without one.
func tokenRef(a *token.Attempt) string {
	if a.JTI != "" {
		return "jti " + clip(a.JTI, 64)
	}
	return fmt.Sprintf("(no jti, exp %s)", a.ExpiresAt.UTC().Format(time.RFC3339))
}

// sourceOf is a's source address, or "unknown source".
func sourceOf(a *token.Attempt) string {
	if a.Source == "" {
		return "unknown source"
	}
	return clip(a.Source, 64)
}

func addrOf(a *token.Attempt) netip.Addr {
	addr, _ := netip.ParseAddr(a.Source)
	return addr
}

func netString(p netip.Prefix) string {
	if !p.IsValid() {
		return "unknown source"
	}
	return p.String()
}

// hash is a 64-bit key for issuer and subject: bounded memory whatever
// their length.
func (d *detectors) hash(iss, sub string) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(iss)
	h.WriteByte(0)
	h.WriteString(sub)
	return h.Sum64()
}

// tokenHash identifies a's token: issuer and jti, or without a jti
// issuer, subject, iat and exp.
func (d *detectors) tokenHash(a *token.Attempt) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(a.Issuer)
	h.WriteByte(0)
	if a.JTI != "" {
		h.WriteString(a.JTI)
		return h.Sum64()
	}
	h.WriteByte(1)
	h.WriteString(a.Subject)
	fmt.Fprintf(&h, "\x00%d\x00%d", a.IssuedAt.UnixNano(), a.ExpiresAt.UnixNano())
	return h.Sum64()
}
