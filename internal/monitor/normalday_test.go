package monitor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/token"
)

var update = flag.Bool("update", false, "rewrite testdata/normal-day.jsonl from its generator")

// normalDayFile is a realistic day of verifications: ~20 users in their
// working hours, from an office, home or VPN, Vigil and IdP tokens, one
// signing key rotation, clients presenting a just-expired token before
// refreshing, and the odd pasted or corrupted token.
const normalDayFile = "testdata/normal-day.jsonl"

// fixtureAttempt is one line of the fixture: a token.Attempt.
type fixtureAttempt struct {
	Time           time.Time `json:"time"`
	Accepted       bool      `json:"accepted"`
	Reason         string    `json:"reason"`
	Detail         string    `json:"detail,omitempty"`
	Issuer         string    `json:"iss,omitempty"`
	Subject        string    `json:"sub,omitempty"`
	JTI            string    `json:"jti,omitempty"`
	KID            string    `json:"kid,omitempty"`
	Alg            string    `json:"alg,omitempty"`
	Source         string    `json:"source"`
	Kind           string    `json:"kind"`
	Cached         bool      `json:"cached,omitempty"`
	SignatureValid bool      `json:"sig_valid,omitempty"`
	ExpiresAt      time.Time `json:"exp,omitzero"`
	IssuedAt       time.Time `json:"iat,omitzero"`
	BreakGlass     bool      `json:"bg,omitempty"`
}

func (f fixtureAttempt) attempt() token.Attempt {
	return token.Attempt{Time: f.Time, Accepted: f.Accepted, Reason: token.Reason(f.Reason), Detail: f.Detail,
		Issuer: f.Issuer, Subject: f.Subject, JTI: f.JTI, KID: f.KID, Alg: f.Alg, Source: f.Source, Kind: f.Kind,
		Cached: f.Cached, SignatureValid: f.SignatureValid, ExpiresAt: f.ExpiresAt, IssuedAt: f.IssuedAt, BreakGlass: f.BreakGlass}
}

// profile is how one user works.
type profile struct {
	name       string
	start, end int // working hours, UTC
	external   bool
	// office, home and vpn are the user's addresses; where is "office",
	// "home", "mixed" (home, then office) or "fixed" (office, all hours).
	office, home, vpn string
	where             string
	ttl               time.Duration
	allHours          bool
}

// Keys of the fixture: Vigil rotates its signing key at 13:00.
const (
	kidBefore  = "3sXJqnV0vSUmWw6kS8iC3G0p1nq4Jd0W1fQ5m6F2h9c"
	kidAfter   = "Yp0Qf0qK3zq6l8mV1eN2c7b5T4xR9wS3uJ6kH1gF0dA"
	kidIdP     = "idp-2026-09"
	rotationAt = 13
)

func profiles(rng *rand.Rand) []profile {
	names := []string{"alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "ivan", "judy",
		"ken", "laura", "mallet", "nina", "oscar", "peggy", "quinn", "rupert", "sybil"}
	var ps []profile
	for i, n := range names {
		p := profile{name: n, start: 7 + rng.IntN(3), end: 16 + rng.IntN(3), external: i%3 == 0, ttl: time.Hour,
			office: fmt.Sprintf("10.20.%d.%d", 1+i%3, 20+i), home: fmt.Sprintf("192.0.2.%d", 30+i),
			vpn: fmt.Sprintf("10.8.0.%d", 10+i)}
		switch r := rng.IntN(4); {
		case r < 2:
			p.where = "office"
		case r < 3:
			p.where = "mixed"
		default:
			p.where = "home"
		}
		ps = append(ps, p)
	}
	ps = append(ps,
		profile{name: "admin", start: 9, end: 18, ttl: 8 * time.Hour, office: "127.0.0.1", where: "fixed"},
		profile{name: "backup-bot", start: 0, end: 24, ttl: 15 * time.Minute, office: "10.30.0.5", where: "fixed", allHours: true})
	return ps
}

// source is where p works from at t.
func (p profile) source(t time.Time) string {
	switch p.where {
	case "home":
		if p.vpn != "" && t.Hour() >= 12 {
			return p.vpn // on the VPN after lunch
		}
		return p.home
	case "mixed":
		if t.Hour() < 10 {
			return p.home
		}
	}
	return p.office
}

// generateNormalDay returns four weeks of session starts before the day
// (the history the usual hours are learned from) and the day's
// verifications, from fixed seeds.
func generateNormalDay() (history []audit.Event, day []fixtureAttempt) {
	rng := rand.New(rand.NewPCG(2026, 11))
	ps := profiles(rng)
	date := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) // a Tuesday
	for _, p := range ps {
		for d := 28; d >= 1; d-- {
			day := date.AddDate(0, 0, -d)
			if !p.allHours && (day.Weekday() == time.Saturday || day.Weekday() == time.Sunday) {
				continue
			}
			for h := p.start; h < p.end; h++ {
				if p.allHours || rng.Float64() < 0.85 {
					at := day.Add(time.Duration(h)*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
					history = append(history, audit.Event{Time: at, Type: EventSessionStart, Actor: p.name, Source: p.source(at)})
				}
			}
		}
		day = append(day, p.day(rng, date)...)
	}
	// The odd mistake: a truncated paste, a corrupted copy, a token for
	// another service.
	day = append(day,
		fixtureAttempt{Time: date.Add(11*time.Hour + 7*time.Minute), Reason: string(token.ReasonMalformed),
			Detail: "compact serialization has 3 parts, got 2", Source: "10.20.1.21", Kind: "unknown"},
		fixtureAttempt{Time: date.Add(14*time.Hour + 41*time.Minute), Reason: string(token.ReasonBadSignature),
			Detail: fmt.Sprintf("kid %q", kidAfter), Issuer: "vigil", Subject: "erin", JTI: "7d0c2f61a8b39e54",
			KID: kidAfter, Alg: token.AlgEdDSA, Source: "10.20.2.24", Kind: "vigil"},
		fixtureAttempt{Time: date.Add(15*time.Hour + 2*time.Minute), Reason: string(token.ReasonAudience),
			Detail: `aud [grafana] does not include "vigil"`, Issuer: "https://idp.example.com", Subject: "judy",
			JTI: "a3f9c1d2e4b50617", KID: kidIdP, Alg: token.AlgRS256, Source: "10.20.1.29", Kind: "external", SignatureValid: true,
			IssuedAt: date.Add(14*time.Hour + 50*time.Minute), ExpiresAt: date.Add(15*time.Hour + 50*time.Minute)})
	slices.SortStableFunc(day, func(a, b fixtureAttempt) int { return a.Time.Compare(b.Time) })
	return history, day
}

// day is p's verifications on date: bursts of API calls and sessions
// every 10 to 50 minutes, each with the current token, a new token when
// it expires or the user moves; some clients first present the expired
// token (refused, within the grace) before they refresh.
func (p profile) day(rng *rand.Rand, date time.Time) []fixtureAttempt {
	var out []fixtureAttempt
	t := date.Add(time.Duration(p.start)*time.Hour + time.Duration(rng.IntN(1800))*time.Second)
	end := date.Add(time.Duration(p.end)*time.Hour - time.Duration(rng.IntN(1800))*time.Second)
	var tok *fixtureAttempt
	for t.Before(end) {
		src := p.source(t)
		if tok != nil && !t.Before(tok.ExpiresAt) && t.Sub(tok.ExpiresAt) < 8*time.Minute && rng.IntN(3) == 0 {
			late := *tok
			late.Time, late.Accepted, late.Reason, late.Cached = t, false, string(token.ReasonExpired), false
			late.Detail = "expired at " + tok.ExpiresAt.Format(time.RFC3339)
			out = append(out, late)
			t = t.Add(time.Duration(2+rng.IntN(10)) * time.Second)
		}
		if tok == nil || !t.Before(tok.ExpiresAt.Add(-30*time.Second)) || tok.Source != src {
			tok = p.newToken(rng, t, src)
		}
		n := 1 + rng.IntN(5)
		at := t
		for i := 0; i < n; i++ {
			a := *tok
			a.Time, a.Cached = at, i > 0 && !p.external
			if i > 0 && rng.IntN(20) == 0 && p.where != "fixed" {
				// DHCP or Wi-Fi roaming inside the office /24.
				a.Source = fmt.Sprintf("%s%d", src[:len(src)-len(lastOctet(src))], 100+rng.IntN(100))
			}
			out = append(out, a)
			at = at.Add(time.Duration(1+rng.IntN(15)) * time.Second)
		}
		t = t.Add(time.Duration(10+rng.IntN(40)) * time.Minute)
	}
	return out
}

func (p profile) newToken(rng *rand.Rand, t time.Time, src string) *fixtureAttempt {
	tok := &fixtureAttempt{Accepted: true, Reason: string(token.ReasonOK), Issuer: "vigil", Subject: p.name,
		JTI: fmt.Sprintf("%016x", rng.Uint64()), KID: kidBefore, Alg: token.AlgEdDSA, Source: src, Kind: "vigil",
		SignatureValid: true, IssuedAt: t.Truncate(time.Second), ExpiresAt: t.Truncate(time.Second).Add(p.ttl)}
	if t.Hour() >= rotationAt {
		tok.KID = kidAfter
	}
	if p.external {
		tok.Issuer, tok.KID, tok.Alg, tok.Kind = "https://idp.example.com", kidIdP, token.AlgRS256, "external"
	}
	return tok
}

func lastOctet(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '.' {
			return addr[i+1:]
		}
	}
	return addr
}

func encodeFixture(day []fixtureAttempt) []byte {
	var b bytes.Buffer
	for _, a := range day {
		line, err := json.Marshal(a)
		if err != nil {
			panic(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func readFixture(t *testing.T, path string) []fixtureAttempt {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fixtureAttempt
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a fixtureAttempt
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%s line %d: %v", path, len(out)+1, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNormalDay learns four weeks of history from a real audit log, then
// replays a normal day through every detector: not one finding.
func TestNormalDay(t *testing.T) {
	history, generated := generateNormalDay()
	if *update {
		if err := os.MkdirAll(filepath.Dir(normalDayFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(normalDayFile, encodeFixture(generated), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(normalDayFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, encodeFixture(generated)) {
		t.Fatalf("%s differs from its generator; run go test -run TestNormalDay -update", normalDayFile)
	}
	day := readFixture(t, normalDayFile)
	checkRealistic(t, day)

	e := newEnv(t, nil)
	log, err := audit.Open(t.Context(), e.db, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	appendEvents(t, log, history)
	e.clock.Set(day[0].Time.Truncate(24 * time.Hour))
	learned, err := e.m.LearnBaseline(t.Context(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	if learned != len(history) {
		t.Fatalf("got %d history events learned, want %d", learned, len(history))
	}
	next := day[0].Time.Add(tickEvery)
	for _, f := range day {
		for !f.Time.Before(next) {
			e.clock.Set(next)
			e.flush(false)
			next = next.Add(tickEvery)
		}
		a := f.attempt()
		e.feed(a)
	}
	e.clock.Set(day[len(day)-1].Time.Add(2 * time.Hour))
	e.flush(false)
	e.flush(true)
	if got := e.alerts(t, ""); len(got) != 0 {
		t.Errorf("got %d alerts on a normal day, want 0:\n%v", len(got), summaries(got))
	}
	for _, d := range detectorNames {
		if n := e.counter("findings", d); n != 0 {
			t.Errorf("got %v %s findings, want 0", n, d)
		}
	}
	t.Logf("replayed %d verifications of %d users after %d history events: no findings", len(day), users(day), len(history))

	// Controls: the same monitor, fed after the day, does see a user at
	// 03:00 and a token of the day moving to another network.
	var last token.Attempt
	for _, f := range day {
		if f.Accepted && f.Subject == "alice" {
			last = f.attempt()
		}
	}
	night := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	stolen := with(last, func(a *token.Attempt) { a.Time, a.Source = last.Time.Add(time.Minute), "203.0.113.99" })
	e.feed(stolen, ok(night, "alice", office, "night"))
	for _, rule := range []string{DetectorSourceChange, DetectorUnusualHours} {
		if got := e.alerts(t, rule); len(got) != 1 {
			t.Errorf("control: got %d %s alerts, want 1", len(got), rule)
		}
	}
}

func users(day []fixtureAttempt) int {
	seen := map[string]bool{}
	for _, a := range day {
		if a.Accepted {
			seen[a.Subject] = true
		}
	}
	return len(seen)
}

// checkRealistic checks the fixture has what a normal day has.
func checkRealistic(t *testing.T, day []fixtureAttempt) {
	t.Helper()
	kids, kinds, reasons := map[string]bool{}, map[string]bool{}, map[string]int{}
	sources := map[string]map[string]bool{}
	for _, a := range day {
		kids[a.KID], kinds[a.Kind] = true, true
		reasons[a.Reason]++
		if sources[a.Subject] == nil {
			sources[a.Subject] = map[string]bool{}
		}
		sources[a.Subject][a.Source] = true
	}
	multi := 0
	for _, s := range sources {
		if len(s) > 1 {
			multi++
		}
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"about 20 users", users(day) >= 20},
		{"a day's worth of verifications", len(day) >= 1000},
		{"a key rotation (two Vigil kids and the IdP's)", kids[kidBefore] && kids[kidAfter] && kids[kidIdP]},
		{"Vigil and external tokens", kinds["vigil"] && kinds["external"]},
		{"late refreshes", reasons[string(token.ReasonExpired)] >= 3},
		{"users with several sources", multi >= 5},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("fixture lacks %s (reasons %v)", c.name, reasons)
		}
	}
}
