package monitor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/token"
)

const (
	attacker  = "203.0.113.7"
	office    = "10.20.1.15"
	home      = "198.51.100.23"
	idpIssuer = "https://idp.example.com"
)

// external is an accepted token of a trusted external issuer.
func external(at time.Time, sub, src string, life time.Duration) token.Attempt {
	return with(ok(at, sub, src, "idp-"+sub), func(a *token.Attempt) {
		a.Issuer, a.Kind, a.KID, a.Alg = idpIssuer, "external", "idp-key-1", token.AlgRS256
		a.IssuedAt, a.ExpiresAt = at.Add(-time.Minute), at.Add(life-time.Minute)
	})
}

// signedRefusal is a token refused for reason after its signature was
// found valid.
func signedRefusal(at time.Time, reason token.Reason, sub, src string) token.Attempt {
	return with(ok(at, sub, src, "jti-"+sub), func(a *token.Attempt) { a.Accepted, a.Reason, a.Detail = false, reason, string(reason) })
}

func TestAlgNone(t *testing.T) {
	none := with(refused(t0, token.ReasonAlgNone, "mallory", attacker), func(a *token.Attempt) { a.Alg = "none" })
	runDetectorCases(t, DetectorAlg, []detectorCase{
		{name: "alg none", attempts: []token.Attempt{none}, want: []want{{severity: alert.High, actor: "-",
			data: map[string]any{"alg": "none", "reason": "alg_none", "sub": "mallory", "claims_verified": false, "source": attacker}}}},
		{name: "HMAC with the public key", attempts: []token.Attempt{with(refused(t0, token.ReasonAlgHMAC, "mallory", attacker),
			func(a *token.Attempt) { a.Alg = "HS256" })}, want: []want{{severity: alert.High, data: map[string]any{"alg": "HS256"}}}},
		{name: "algorithm not the key's", attempts: []token.Attempt{with(refused(t0, token.ReasonAlgKeyMismatch, "mallory", attacker),
			func(a *token.Attempt) { a.Alg = "RS256" })}, want: []want{{severity: alert.High, data: map[string]any{"reason": "alg_key_mismatch"}}}},
		{name: "repeats are one alert", attempts: repeat(none, 5, time.Second), suppressed: 4,
			want: []want{{severity: alert.High, data: map[string]any{"occurrences": 1}}}},
		{name: "two sources are two alerts", attempts: []token.Attempt{none, with(none, func(a *token.Attempt) { a.Source = "203.0.113.8" })},
			want: []want{{severity: alert.High}, {severity: alert.High}}},
		{name: "severity configurable", cfg: func(c *Config) { c.Alg.Severity = alert.Critical },
			attempts: []token.Attempt{none}, want: []want{{severity: alert.Critical}}},
		{name: "accepted outside the allowed list", cfg: func(c *Config) { c.Alg.Allowed = []string{token.AlgEdDSA} },
			attempts: []token.Attempt{with(ok(t0, "alice", office, "j1"), func(a *token.Attempt) { a.Alg = token.AlgRS256 })},
			want:     []want{{severity: alert.High, actor: "alice", data: map[string]any{"alg": "RS256", "outcome": "accepted"}}}},
		{name: "quiet on accepted and other refusals", attempts: []token.Attempt{ok(t0, "alice", office, "j1"),
			refused(t0, token.ReasonBadSignature, "bob", office)}},
		{name: "disabled", cfg: func(c *Config) { c.Alg.Enabled = false }, attempts: []token.Attempt{none}},
	})
}

func TestSignatureBurst(t *testing.T) {
	bad := refused(t0, token.ReasonBadSignature, "alice", attacker)
	fromMany := make([]token.Attempt, 10)
	for i := range fromMany {
		fromMany[i] = with(bad, func(a *token.Attempt) {
			a.Time = t0.Add(time.Duration(i) * time.Second)
			a.Source = fmt.Sprintf("198.51.100.%d", 10+i)
		})
	}
	sameV6 := make([]token.Attempt, 10)
	for i := range sameV6 {
		sameV6[i] = with(bad, func(a *token.Attempt) { a.Source = fmt.Sprintf("2001:db8:1:2::%x", i+1) })
	}
	runDetectorCases(t, DetectorSignatureBurst, []detectorCase{
		{name: "10 from one source in a minute", attempts: repeat(bad, 10, time.Second),
			want: []want{{severity: alert.High, data: map[string]any{"failures": 10, "network": attacker + "/32", "window": "1m0s",
				"sub": "alice", "claims_verified": false}}}},
		{name: "9 are quiet", attempts: repeat(bad, 9, time.Second)},
		{name: "spread over 10 minutes is quiet", attempts: repeat(bad, 10, time.Minute)},
		{name: "one subject from many sources", attempts: fromMany,
			want: []want{{severity: alert.High, data: map[string]any{"failures": 10, "sub": "alice"}}}},
		{name: "a burst that goes on is one alert", attempts: repeat(bad, 30, 100*time.Millisecond), suppressed: 20,
			want: []want{{severity: alert.High, data: map[string]any{"failures": 10}}}},
		{name: "an IPv6 /64 is one source", attempts: sameV6,
			want: []want{{severity: alert.High, data: map[string]any{"network": "2001:db8:1:2::/64"}}}},
		{name: "threshold configurable", cfg: func(c *Config) { c.SignatureBurst.Threshold = 3 }, attempts: repeat(bad, 3, time.Second),
			want: []want{{severity: alert.High, data: map[string]any{"failures": 3}}}},
	})
}

func TestUnknownKID(t *testing.T) {
	unknown := with(refused(t0, token.ReasonUnknownKID, "mallory", attacker), func(a *token.Attempt) { a.KID = "k-404" })
	storm := make([]token.Attempt, 30)
	for i := range storm {
		storm[i] = with(unknown, func(a *token.Attempt) {
			a.Time = t0.Add(time.Duration(i) * time.Second)
			a.KID = fmt.Sprintf("random-%d", i)
			a.Source = fmt.Sprintf("203.0.113.%d", 10+i)
		})
	}
	runDetectorCases(t, DetectorUnknownKID, []detectorCase{
		{name: "one unknown kid", attempts: []token.Attempt{unknown},
			want: []want{{severity: alert.Medium, data: map[string]any{"kid": "k-404", "iss": "vigil", "source": attacker}}}},
		{name: "repeats from one source are one alert", attempts: repeat(unknown, 5, time.Second), suppressed: 4,
			want: []want{{severity: alert.Medium}}},
		{name: "refresh storm", cfg: func(c *Config) { c.UnknownKID.StormThreshold = 5 }, attempts: storm, suppressed: 25,
			want: []want{{severity: alert.Medium}, {severity: alert.Medium}, {severity: alert.Medium}, {severity: alert.Medium},
				{severity: alert.High, data: map[string]any{"pattern": "storm", "attempts": 5}}}},
	})
}

func TestExpiredReplay(t *testing.T) {
	expired := func(past time.Duration) token.Attempt {
		return with(signedRefusal(t0, token.ReasonExpired, "alice", attacker), func(a *token.Attempt) {
			a.IssuedAt, a.ExpiresAt = t0.Add(-past-time.Hour), t0.Add(-past)
		})
	}
	runDetectorCases(t, DetectorExpiredReplay, []detectorCase{
		{name: "late refresh within grace is quiet", attempts: []token.Attempt{expired(5 * time.Minute)}},
		{name: "presented two hours after expiry", attempts: []token.Attempt{expired(2 * time.Hour)},
			want: []want{{severity: alert.Medium, actor: "alice", data: map[string]any{"past_expiry": "2h0m0s", "jti": "jti-alice",
				"claims_verified": true, "exp": t0.Add(-2 * time.Hour).Format(time.RFC3339)}}}},
		{name: "replayed again and again", attempts: repeat(expired(time.Hour), 5, time.Second), suppressed: 4,
			want: []want{{severity: alert.Medium}}},
		{name: "grace configurable", cfg: func(c *Config) { c.ExpiredReplay.Grace = time.Minute },
			attempts: []token.Attempt{expired(5 * time.Minute)}, want: []want{{severity: alert.Medium}}},
		{name: "expiry unknown is quiet", attempts: []token.Attempt{with(expired(time.Hour), func(a *token.Attempt) { a.ExpiresAt = time.Time{} })}},
	})
}

func TestRevokedReuse(t *testing.T) {
	revoked := signedRefusal(t0, token.ReasonRevoked, "alice", attacker)
	runDetectorCases(t, DetectorRevokedReuse, []detectorCase{
		{name: "revoked token presented", attempts: []token.Attempt{revoked},
			want: []want{{severity: alert.High, actor: "alice", data: map[string]any{"jti": "jti-alice", "reason": "revoked", "source": attacker}}}},
		{name: "again and again", attempts: repeat(revoked, 3, time.Second), suppressed: 2, want: []want{{severity: alert.High}}},
		{name: "two tokens", attempts: []token.Attempt{revoked, signedRefusal(t0, token.ReasonRevoked, "bob", attacker)},
			want: []want{{severity: alert.High, actor: "alice"}, {severity: alert.High, actor: "bob"}}},
		{name: "disabled", cfg: func(c *Config) { c.RevokedReuse.Enabled = false }, attempts: []token.Attempt{revoked}},
	})
}

func TestSourceChange(t *testing.T) {
	at := func(d time.Duration, src, jti string) token.Attempt { return ok(t0.Add(d), "alice", src, jti) }
	runDetectorCases(t, DetectorSourceChange, []detectorCase{
		{name: "same /24 is quiet", attempts: []token.Attempt{at(0, "10.20.1.15", "j1"), at(time.Minute, "10.20.1.77", "j1")}},
		{name: "another network", attempts: []token.Attempt{at(0, office, "j1"), at(time.Minute, home, "j1")},
			want: []want{{severity: alert.High, actor: "alice", data: map[string]any{"network": "198.51.100.0/24",
				"first_network": "10.20.1.0/24", "jti": "j1", "source": home}}}},
		{name: "back and forth is one alert", attempts: []token.Attempt{at(0, office, "j1"), at(time.Minute, home, "j1"),
			at(2*time.Minute, office, "j1"), at(3*time.Minute, home, "j1")}, suppressed: 1,
			want: []want{{severity: alert.High}}},
		{name: "IPv6 same /64 is quiet", attempts: []token.Attempt{at(0, "2001:db8:1:2::a", "j1"), at(time.Minute, "2001:db8:1:2::b", "j1")}},
		{name: "IPv6 other /64", attempts: []token.Attempt{at(0, "2001:db8:1:2::a", "j1"), at(time.Minute, "2001:db8:9:9::a", "j1")},
			want: []want{{severity: alert.High, data: map[string]any{"network": "2001:db8:9:9::/64"}}}},
		{name: "two tokens from two networks are quiet", attempts: []token.Attempt{at(0, office, "j1"), at(time.Minute, home, "j2")}},
		{name: "prefix configurable", cfg: func(c *Config) { c.SourceChange.IPv4Prefix = 16 },
			attempts: []token.Attempt{at(0, "10.20.1.15", "j1"), at(time.Minute, "10.20.99.1", "j1")}},
		{name: "loopback is one network", attempts: []token.Attempt{at(0, "127.0.0.1", "j1"), at(time.Minute, "::1", "j1")}},
		{name: "outside the src networks", attempts: []token.Attempt{signedRefusal(t0, token.ReasonSource, "alice", attacker)},
			want: []want{{severity: alert.High, actor: "alice", data: map[string]any{"pattern": "outside_src", "source": attacker}}}},
		{name: "without jti by subject and times", attempts: []token.Attempt{
			with(external(t0, "carol", office, time.Hour), func(a *token.Attempt) { a.JTI = "" }),
			with(external(t0, "carol", home, time.Hour), func(a *token.Attempt) { a.JTI, a.Time = "", t0.Add(time.Minute) })},
			want: []want{{severity: alert.High, actor: "carol"}}},
	})
}

func TestLifetimePolicy(t *testing.T) {
	noExp := with(signedRefusal(t0, token.ReasonMissingClaim, "carol", office), func(a *token.Attempt) {
		a.Issuer, a.Kind, a.NoExpiry, a.ExpiresAt, a.Detail = idpIssuer, "external", true, time.Time{}, "exp"
	})
	runDetectorCases(t, DetectorLifetime, []detectorCase{
		{name: "within policy is quiet", attempts: []token.Attempt{external(t0, "carol", office, time.Hour), ok(t0, "alice", office, "j1")}},
		{name: "accepted over policy", attempts: []token.Attempt{external(t0, "carol", office, 24*time.Hour)},
			want: []want{{severity: alert.Medium, actor: "carol", data: map[string]any{"problem": "over_policy", "lifetime": "24h0m0s",
				"max_lifetime": "12h0m0s", "iss": idpIssuer}}}},
		{name: "over policy without iat", attempts: []token.Attempt{with(external(t0, "carol", office, 20*time.Hour),
			func(a *token.Attempt) { a.IssuedAt = time.Time{} })},
			want: []want{{severity: alert.Medium, data: map[string]any{"lifetime": "19h59m0s"}}}},
		{name: "per-issuer policy", cfg: func(c *Config) { c.Lifetime.ByIssuer = map[string]time.Duration{idpIssuer: 48 * time.Hour} },
			attempts: []token.Attempt{external(t0, "carol", office, 24*time.Hour)}},
		{name: "no exp", attempts: []token.Attempt{noExp},
			want: []want{{severity: alert.Medium, actor: "carol", data: map[string]any{"problem": "no_exp", "claims_verified": true}}}},
		{name: "no exp claimed by a bad signature is quiet", attempts: []token.Attempt{with(noExp, func(a *token.Attempt) {
			a.SignatureValid, a.NoExpiry, a.Reason = false, false, token.ReasonBadSignature
		})}},
		{name: "refused for lifetime", attempts: []token.Attempt{with(signedRefusal(t0, token.ReasonLifetime, "alice", office),
			func(a *token.Attempt) { a.ExpiresAt = t0.Add(9 * time.Hour) })},
			want: []want{{severity: alert.Medium, data: map[string]any{"problem": "over_verifier_cap"}}}},
		{name: "one issuer is one incident", attempts: []token.Attempt{external(t0, "carol", office, 24*time.Hour),
			external(t0.Add(time.Second), "dan", office, 24*time.Hour), external(t0.Add(2*time.Second), "erin", office, 24*time.Hour)},
			suppressed: 2, want: []want{{severity: alert.Medium, actor: "carol"}}},
	})
}

func TestHeaderInjection(t *testing.T) {
	ref := func(hdr string) token.Attempt {
		return with(refused(t0, token.ReasonKeyReference, "mallory", attacker), func(a *token.Attempt) { a.Detail = `header "` + hdr + `"` })
	}
	kid := func(k string) token.Attempt {
		return with(refused(t0, token.ReasonUnknownKID, "mallory", attacker), func(a *token.Attempt) { a.KID = k })
	}
	long := strings.Repeat("A", 300)
	runDetectorCases(t, DetectorHeaderInjection, []detectorCase{
		{name: "jku", attempts: []token.Attempt{ref("jku")},
			want: []want{{severity: alert.High, data: map[string]any{"header": "jku", "reason": "header_key_reference", "source": attacker}}}},
		{name: "every key header", attempts: []token.Attempt{ref("jku"), ref("x5u"), ref("x5c"), ref("jwk")},
			want: []want{{severity: alert.High, data: map[string]any{"header": "jku"}}, {severity: alert.High, data: map[string]any{"header": "x5u"}},
				{severity: alert.High, data: map[string]any{"header": "x5c"}}, {severity: alert.High, data: map[string]any{"header": "jwk"}}}},
		{name: "crit", attempts: []token.Attempt{with(refused(t0, token.ReasonCrit, "mallory", attacker),
			func(a *token.Attempt) { a.Detail = `header "crit": no extensions are supported` })},
			want: []want{{severity: alert.High, data: map[string]any{"header": "crit"}}}},
		{name: "kid path traversal", attempts: []token.Attempt{kid("../../../dev/null")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "path_traversal", "kid": "../../../dev/null"}}}},
		{name: "kid SQL", attempts: []token.Attempt{kid("' OR '1'='1")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "metacharacter"}}}},
		{name: "kid SQL comment", attempts: []token.Attempt{kid("k1 UNION SELECT key FROM keys--")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "sql"}}}},
		{name: "thumbprint kid with a double dash is not SQL", attempts: []token.Attempt{kid("KnEImU4ZbeuwP--Zu6JXIswb7ztLhRebIQpFhoj60rw")}},
		{name: "kid shell", attempts: []token.Attempt{kid("k1$(curl evil.example)")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "metacharacter"}}}},
		{name: "kid URL", attempts: []token.Attempt{kid("https://evil.example/key.pem")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "url"}}}},
		{name: "kid control character", attempts: []token.Attempt{kid("k1\x00")},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "control_character"}}}},
		{name: "kid overlong", attempts: []token.Attempt{kid(long)},
			want: []want{{severity: alert.High, data: map[string]any{"kid_problem": "overlong", "kid_length": 300,
				"kid": long[:maxEvidence] + "…"}}}},
		{name: "real kids are quiet", attempts: []token.Attempt{
			with(ok(t0, "alice", office, "j1"), func(a *token.Attempt) { a.KID = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" }),
			with(ok(t0, "alice", office, "j2"), func(a *token.Attempt) { a.KID = "abcdEFGH1234+/ijklMNOP5678=" }),
			with(ok(t0, "alice", office, "j3"), func(a *token.Attempt) { a.KID = "key-2026-01" }),
			with(ok(t0, "alice", office, "j4"), func(a *token.Attempt) { a.KID = "8c1b6c1e-3d4f-4d59-9a57-0d0b8e3c9f11" }),
			with(ok(t0, "alice", office, "j5"), func(a *token.Attempt) { a.KID = "v1.2" })}},
	})
}

func TestBreakGlass(t *testing.T) {
	bg := with(ok(t0, "oncall", home, "bg-1"), func(a *token.Attempt) { a.BreakGlass = true })
	runDetectorCases(t, DetectorBreakGlass, []detectorCase{
		{name: "break-glass token used", attempts: []token.Attempt{bg},
			want: []want{{severity: alert.High, actor: "oncall", data: map[string]any{"jti": "bg-1", "break_glass": true, "source": home}}}},
		{name: "used twice is one alert", attempts: repeat(bg, 2, time.Minute), suppressed: 1, want: []want{{severity: alert.High}}},
		{name: "refused break-glass token is quiet", attempts: []token.Attempt{with(bg, func(a *token.Attempt) {
			a.Accepted, a.Reason = false, token.ReasonExpired
		})}},
		{name: "ordinary token is quiet", attempts: []token.Attempt{ok(t0, "alice", office, "j1")}},
		{name: "severity configurable", cfg: func(c *Config) { c.BreakGlass.Severity = alert.Critical },
			attempts: []token.Attempt{bg}, want: []want{{severity: alert.Critical}}},
	})
}

// officeHistory is weeks of a user's activity every weekday hour from
// 09:00 to 16:59 in loc, ending before the Monday before t0.
func officeHistory(sub string, weeks int, loc *time.Location) []token.Attempt {
	var out []token.Attempt
	monday := time.Date(2026, 11, 23, 0, 0, 0, 0, loc).AddDate(0, 0, -7*weeks)
	for day := 0; day < 7*weeks; day++ {
		d := monday.AddDate(0, 0, day)
		if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			continue
		}
		for h := 9; h < 17; h++ {
			out = append(out, ok(d.Add(time.Duration(h)*time.Hour+10*time.Minute), sub, office, "hist"))
		}
	}
	return out
}

func TestUnusualHours(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	hist := officeHistory("alice", 4, time.UTC)
	at := func(hist []token.Attempt, ts ...time.Time) []token.Attempt {
		out := append([]token.Attempt(nil), hist...)
		for _, t := range ts {
			out = append(out, ok(t, "alice", office, "now"))
		}
		return out
	}
	tuesday := func(h, m int) time.Time { return time.Date(2026, 11, 24, h, m, 0, 0, time.UTC) }
	runDetectorCases(t, DetectorUnusualHours, []detectorCase{
		{name: "03:00 on a Tuesday", attempts: at(hist, tuesday(3, 0)),
			want: []want{{severity: alert.Medium, actor: "alice", data: map[string]any{"local_time": "Tue 03:00", "time_zone": "UTC",
				"share": 0, "active_hours": 160, "history_days": 25}}}},
		{name: "11:00 on a Tuesday is quiet", attempts: at(hist, tuesday(11, 0))},
		{name: "an hour before the usual start is quiet", attempts: at(hist, tuesday(8, 5))},
		{name: "Saturday afternoon", attempts: at(hist, time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)),
			want: []want{{severity: alert.Medium, data: map[string]any{"local_time": "Sat 14:00"}}}},
		{name: "not enough history is quiet", attempts: at(hist[len(hist)-16:], tuesday(3, 0))},
		{name: "a night of it is one alert", attempts: at(hist, tuesday(3, 0), tuesday(3, 10), tuesday(3, 50)), suppressed: 2,
			want: []want{{severity: alert.Medium}}},
		{name: "ignored users are quiet", cfg: func(c *Config) { c.UnusualHours.Ignore = []string{"alice"} }, attempts: at(hist, tuesday(3, 0))},
		{name: "in the user's time zone", cfg: func(c *Config) { c.UnusualHours.TimeZones = map[string]string{"alice": "Europe/Paris"} },
			attempts: at(officeHistory("alice", 4, paris), tuesday(15, 30), tuesday(2, 0)),
			want:     []want{{severity: alert.Medium, data: map[string]any{"local_time": "Tue 03:00", "time_zone": "Europe/Paris"}}}},
	})
}
