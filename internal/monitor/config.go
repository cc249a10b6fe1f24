package monitor

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
)

// Detector names: the Rule of the alerts each raises and the detector
// label of the monitor's metrics.
const (
	DetectorAlg             = "alg_none"
	DetectorSignatureBurst  = "signature_burst"
	DetectorUnknownKID      = "unknown_kid"
	DetectorExpiredReplay   = "expired_replay"
	DetectorRevokedReuse    = "revoked_reuse"
	DetectorSourceChange    = "source_change"
	DetectorLifetime        = "lifetime_policy"
	DetectorHeaderInjection = "header_injection"
	DetectorBreakGlass      = "breakglass_use"
	DetectorUnusualHours    = "unusual_hours"
	DetectorKeyAge          = "key_age"
	// DetectorOverloaded is the monitor itself dropping attempts.
	DetectorOverloaded = "monitor_overloaded"
)

// detectorNames lists every detector name, for metric labels.
var detectorNames = []string{DetectorAlg, DetectorSignatureBurst, DetectorUnknownKID, DetectorExpiredReplay,
	DetectorRevokedReuse, DetectorSourceChange, DetectorLifetime, DetectorHeaderInjection, DetectorBreakGlass,
	DetectorUnusualHours, DetectorKeyAge, DetectorOverloaded}

// Config configures the monitor; it is the "monitor:" section of Vigil's
// configuration. The zero Config monitors nothing (Enabled false, every
// detector off); DefaultConfig turns everything on with the defaults
// given on each field. A zero threshold of an enabled detector means its
// default.
type Config struct {
	// Enabled turns the monitor on; off, Observe records nothing.
	Enabled bool `yaml:"enabled"`
	// QueueSize bounds the attempts waiting for the monitor's goroutine;
	// when it is full an attempt is dropped and counted rather than slow
	// verification down. 0 means 4096.
	QueueSize int `yaml:"queue_size"`
	// DedupWindow merges findings: a finding of the same detector and key
	// (a source network, a token, a user) as one seen less than
	// DedupWindow before is counted into that incident instead of raising
	// another alert; an incident ends after DedupWindow without one. 0
	// means 1h.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// SummaryEvery is how often an incident that goes on raises a summary
	// alert with the occurrences counted since its last alert; an
	// incident that ends (quiet for DedupWindow) raises its summary then.
	// 0 means 15m.
	SummaryEvery time.Duration `yaml:"summary_every"`
	// MaxAlertsPerMinute caps the alerts each detector raises per minute
	// at each severity (a flood of low alerts never holds back a high
	// one); findings over the cap are counted and reported by a later
	// summary. 0 means 20.
	MaxAlertsPerMinute int `yaml:"max_alerts_per_minute"`
	// MaxTracked bounds each table of per-source, per-subject and
	// per-token state; the least recently seen entry is evicted first.
	// 0 means 100000.
	MaxTracked int `yaml:"max_tracked"`
	// MaxIncidents bounds the incidents (open deduplicated findings)
	// held at once, least recently seen evicted first. 0 means 10000.
	MaxIncidents int `yaml:"max_incidents"`

	// Alg flags tokens with alg "none", an HMAC, a disallowed algorithm
	// or an algorithm other than their key's.
	Alg AlgConfig `yaml:"alg_none"`
	// SignatureBurst flags bursts of bad signatures from one source or
	// for one (claimed) subject.
	SignatureBurst BurstConfig `yaml:"signature_burst"`
	// UnknownKID flags tokens naming a key id no trusted key set has, and
	// storms of them (each can make Vigil refetch an issuer's JWKS).
	UnknownKID UnknownKIDConfig `yaml:"unknown_kid"`
	// ExpiredReplay flags tokens presented well after their expiry.
	ExpiredReplay ExpiredReplayConfig `yaml:"expired_replay"`
	// RevokedReuse flags revoked tokens presented again.
	RevokedReuse Detector `yaml:"revoked_reuse"`
	// SourceChange flags a token used from a network other than the one
	// it was first used from, or refused for being presented outside the
	// networks its src claim allows.
	SourceChange SourceChangeConfig `yaml:"source_change"`
	// Lifetime flags validly signed tokens without exp, or living longer
	// than policy.
	Lifetime LifetimeConfig `yaml:"lifetime_policy"`
	// HeaderInjection flags headers naming or embedding a key (jku, x5u,
	// x5c, jwk), unsupported extensions (crit, b64) and suspicious kids.
	HeaderInjection HeaderInjectionConfig `yaml:"header_injection"`
	// BreakGlass flags every use of a break-glass token.
	BreakGlass Detector `yaml:"breakglass_use"`
	// UnusualHours flags a user active far outside their usual hours.
	UnusualHours UnusualHoursConfig `yaml:"unusual_hours"`
	// KeyAge warns when the active signing key is older than the
	// rotation policy.
	KeyAge KeyAgeConfig `yaml:"key_age"`
}

// Detector is what every detector has: whether it runs and the severity
// of its alerts.
type Detector struct {
	// Enabled turns the detector on.
	Enabled bool `yaml:"enabled"`
	// Severity of its alerts: low, medium, high or critical; empty means
	// the detector's default.
	Severity alert.Severity `yaml:"severity"`
}

// AlgConfig configures the alg_none detector (default severity high).
type AlgConfig struct {
	Detector `yaml:",inline"`
	// Allowed, when set, also flags accepted tokens signed with an
	// algorithm outside it (the verifier accepts EdDSA, ES256, ES384,
	// RS256, PS256 and others); empty means any the verifier accepts.
	Allowed []string `yaml:"allowed"`
}

// BurstConfig configures the signature_burst detector (default severity
// high).
type BurstConfig struct {
	Detector `yaml:",inline"`
	// Threshold bad signatures within Window from one source network, or
	// for one claimed subject, raise an alert. 0 means 10.
	Threshold int `yaml:"threshold"`
	// Window is the sliding window; 0 means 1m.
	Window time.Duration `yaml:"window"`
	// IPv4Prefix and IPv6Prefix are the prefix lengths that make "one
	// source"; 0 means 32 and 64 (an IPv6 host usually owns its /64).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// UnknownKIDConfig configures the unknown_kid detector (default severity
// medium for one source, high for a storm).
type UnknownKIDConfig struct {
	Detector `yaml:",inline"`
	// StormThreshold tokens with unknown kids for one issuer within
	// StormWindow, from any sources, are a refresh storm. 0 means 20.
	StormThreshold int `yaml:"storm_threshold"`
	// StormWindow is the storm's sliding window; 0 means 1m.
	StormWindow time.Duration `yaml:"storm_window"`
	// StormSeverity is the severity of a storm alert; empty means high.
	StormSeverity alert.Severity `yaml:"storm_severity"`
}

// ExpiredReplayConfig configures the expired_replay detector (default
// severity medium).
type ExpiredReplayConfig struct {
	Detector `yaml:",inline"`
	// Grace is how long after exp a presented token is only a client
	// refreshing late; later it is a replay. 0 means 10m.
	Grace time.Duration `yaml:"grace"`
}

// SourceChangeConfig configures the source_change detector (default
// severity high).
type SourceChangeConfig struct {
	Detector `yaml:",inline"`
	// IPv4Prefix and IPv6Prefix are the prefix lengths compared: a token
	// used from another network of that size was moved. 0 means 24 and
	// 64.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// LifetimeConfig configures the lifetime_policy detector (default
// severity medium).
type LifetimeConfig struct {
	Detector `yaml:",inline"`
	// MaxLifetime is the policy for accepted tokens (exp - iat, or exp -
	// now without iat); longer ones are flagged even though the verifier,
	// whose caps are issuers' max_lifetime and token.max_ttl, let them
	// in. Negative disables that check; 0 means 12h.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// ByIssuer overrides MaxLifetime for the issuers it names.
	ByIssuer map[string]time.Duration `yaml:"by_issuer"`
}

// HeaderInjectionConfig configures the header_injection detector (default
// severity high).
type HeaderInjectionConfig struct {
	Detector `yaml:",inline"`
	// MaxKIDLength is the longest kid not flagged as overlong; 0 means
	// 128 (a SHA-256 JWK thumbprint is 43).
	MaxKIDLength int `yaml:"max_kid_length"`
}

// UnusualHoursConfig configures the unusual_hours detector (default
// severity medium). Each user's activity is counted once per hour into
// 168 hour-of-week buckets in their time zone, learned from the audit
// log's session starts at start-up and from accepted verifications after.
// Activity is unusual when the buckets within Spread hours of it hold
// less than MinShare of the user's activity.
type UnusualHoursConfig struct {
	Detector `yaml:",inline"`
	// MinEvents active hours over at least MinDays days are needed before
	// a user is judged. 0 means 20 and 7.
	MinEvents int `yaml:"min_events"`
	MinDays   int `yaml:"min_days"`
	// MinShare is the share of the user's activity below which the
	// hour-of-week neighbourhood is unusual. 0 means 0.01.
	MinShare float64 `yaml:"min_share"`
	// Spread is the neighbourhood in hours either side. 0 means 1.
	Spread int `yaml:"spread_hours"`
	// TimeZone is the users' time zone (IANA name); empty means UTC.
	TimeZone string `yaml:"time_zone"`
	// TimeZones overrides TimeZone per user (subject).
	TimeZones map[string]string `yaml:"time_zones"`
	// LearnFor is how far back LearnBaseline reads the audit log. 0
	// means 28 days.
	LearnFor time.Duration `yaml:"learn_for"`
	// MaxUsers bounds the baselines kept (least recently active evicted).
	// 0 means 20000.
	MaxUsers int `yaml:"max_users"`
	// Ignore lists subjects never judged (service accounts).
	Ignore []string `yaml:"ignore"`
}

// KeyAgeConfig configures the key_age warning (default severity medium).
type KeyAgeConfig struct {
	Detector `yaml:",inline"`
	// MaxAge is the rotation policy: an active signing key older than
	// this is flagged. 0 means 90 days; vigil serve makes it
	// token.rotate_every plus a day when automatic rotation is on, so the
	// warning says that rotation is failing.
	MaxAge time.Duration `yaml:"max_age"`
	// Every is how often the warning is repeated while the key stays
	// active. 0 means 24h.
	Every time.Duration `yaml:"every"`
}

// Defaults of the thresholds; each Config field's doc names its own.
const (
	defaultQueueSize      = 4096
	defaultDedupWindow    = time.Hour
	defaultSummaryEvery   = 15 * time.Minute
	defaultMaxPerMinute   = 20
	defaultMaxTracked     = 100_000
	defaultMaxIncidents   = 10_000
	defaultBurstThreshold = 10
	defaultBurstWindow    = time.Minute
	defaultStormThreshold = 20
	defaultStormWindow    = time.Minute
	defaultReplayGrace    = 10 * time.Minute
	defaultMaxLifetime    = 12 * time.Hour
	defaultMaxKIDLength   = 128
	defaultMinEvents      = 20
	defaultMinDays        = 7
	defaultMinShare       = 0.01
	defaultSpread         = 1
	defaultLearnFor       = 28 * 24 * time.Hour
	defaultMaxUsers       = 20_000
	defaultKeyMaxAge      = 90 * 24 * time.Hour
	defaultKeyAgeEvery    = 24 * time.Hour
)

// DefaultConfig returns the monitor on, with every detector on at its
// default thresholds and severities; key_age.max_age is left zero (see
// KeyAgeConfig.MaxAge).
func DefaultConfig() Config {
	on := func(sev alert.Severity) Detector { return Detector{Enabled: true, Severity: sev} }
	c := Config{
		Enabled:         true,
		Alg:             AlgConfig{Detector: on(alert.High)},
		SignatureBurst:  BurstConfig{Detector: on(alert.High)},
		UnknownKID:      UnknownKIDConfig{Detector: on(alert.Medium), StormSeverity: alert.High},
		ExpiredReplay:   ExpiredReplayConfig{Detector: on(alert.Medium)},
		RevokedReuse:    on(alert.High),
		SourceChange:    SourceChangeConfig{Detector: on(alert.High)},
		Lifetime:        LifetimeConfig{Detector: on(alert.Medium)},
		HeaderInjection: HeaderInjectionConfig{Detector: on(alert.High)},
		BreakGlass:      on(alert.High),
		UnusualHours:    UnusualHoursConfig{Detector: on(alert.Medium), TimeZone: "UTC"},
		KeyAge:          KeyAgeConfig{Detector: on(alert.Medium)},
	}
	c = c.withDefaults()
	c.KeyAge.MaxAge = 0
	return c
}

// withDefaults fills zero thresholds and severities with the defaults.
func (c Config) withDefaults() Config {
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setSev := func(p *alert.Severity, d alert.Severity) {
		if *p == "" {
			*p = d
		}
	}
	setInt(&c.QueueSize, defaultQueueSize)
	setDur(&c.DedupWindow, defaultDedupWindow)
	setDur(&c.SummaryEvery, defaultSummaryEvery)
	setInt(&c.MaxAlertsPerMinute, defaultMaxPerMinute)
	setInt(&c.MaxTracked, defaultMaxTracked)
	setInt(&c.MaxIncidents, defaultMaxIncidents)

	setSev(&c.Alg.Severity, alert.High)
	setSev(&c.SignatureBurst.Severity, alert.High)
	setInt(&c.SignatureBurst.Threshold, defaultBurstThreshold)
	setDur(&c.SignatureBurst.Window, defaultBurstWindow)
	setInt(&c.SignatureBurst.IPv4Prefix, 32)
	setInt(&c.SignatureBurst.IPv6Prefix, 64)
	setSev(&c.UnknownKID.Severity, alert.Medium)
	setSev(&c.UnknownKID.StormSeverity, alert.High)
	setInt(&c.UnknownKID.StormThreshold, defaultStormThreshold)
	setDur(&c.UnknownKID.StormWindow, defaultStormWindow)
	setSev(&c.ExpiredReplay.Severity, alert.Medium)
	setDur(&c.ExpiredReplay.Grace, defaultReplayGrace)
	setSev(&c.RevokedReuse.Severity, alert.High)
	setSev(&c.SourceChange.Severity, alert.High)
	setInt(&c.SourceChange.IPv4Prefix, 24)
	setInt(&c.SourceChange.IPv6Prefix, 64)
	setSev(&c.Lifetime.Severity, alert.Medium)
	setDur(&c.Lifetime.MaxLifetime, defaultMaxLifetime)
	setSev(&c.HeaderInjection.Severity, alert.High)
	setInt(&c.HeaderInjection.MaxKIDLength, defaultMaxKIDLength)
	setSev(&c.BreakGlass.Severity, alert.High)
	setSev(&c.UnusualHours.Severity, alert.Medium)
	setInt(&c.UnusualHours.MinEvents, defaultMinEvents)
	setInt(&c.UnusualHours.MinDays, defaultMinDays)
	if c.UnusualHours.MinShare == 0 {
		c.UnusualHours.MinShare = defaultMinShare
	}
	setInt(&c.UnusualHours.Spread, defaultSpread)
	setDur(&c.UnusualHours.LearnFor, defaultLearnFor)
	setInt(&c.UnusualHours.MaxUsers, defaultMaxUsers)
	setSev(&c.KeyAge.Severity, alert.Medium)
	setDur(&c.KeyAge.MaxAge, defaultKeyMaxAge)
	setDur(&c.KeyAge.Every, defaultKeyAgeEvery)
	return c
}

// Validate reports every setting out of range, naming each as in YAML.
// Zero values are valid: they mean the defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("monitor: "+format, args...))
		}
	}
	check(c.QueueSize > 0, "queue_size %d: want more than 0", c.QueueSize)
	check(c.DedupWindow > 0, "dedup_window %s: want more than 0", c.DedupWindow)
	check(c.SummaryEvery > 0, "summary_every %s: want more than 0", c.SummaryEvery)
	check(c.MaxAlertsPerMinute > 0, "max_alerts_per_minute %d: want more than 0", c.MaxAlertsPerMinute)
	check(c.MaxTracked > 0, "max_tracked %d: want more than 0", c.MaxTracked)
	check(c.MaxIncidents > 0, "max_incidents %d: want more than 0", c.MaxIncidents)
	for _, s := range []struct {
		name string
		sev  alert.Severity
	}{
		{"alg_none.severity", c.Alg.Severity}, {"signature_burst.severity", c.SignatureBurst.Severity},
		{"unknown_kid.severity", c.UnknownKID.Severity}, {"unknown_kid.storm_severity", c.UnknownKID.StormSeverity},
		{"expired_replay.severity", c.ExpiredReplay.Severity}, {"revoked_reuse.severity", c.RevokedReuse.Severity},
		{"source_change.severity", c.SourceChange.Severity}, {"lifetime_policy.severity", c.Lifetime.Severity},
		{"header_injection.severity", c.HeaderInjection.Severity}, {"breakglass_use.severity", c.BreakGlass.Severity},
		{"unusual_hours.severity", c.UnusualHours.Severity}, {"key_age.severity", c.KeyAge.Severity},
	} {
		check(s.sev.Rank() > 0, "%s %q: want low, medium, high or critical", s.name, s.sev)
	}
	check(c.SignatureBurst.Threshold > 0, "signature_burst.threshold %d: want more than 0", c.SignatureBurst.Threshold)
	check(c.SignatureBurst.Window > 0, "signature_burst.window %s: want more than 0", c.SignatureBurst.Window)
	check(c.UnknownKID.StormThreshold > 0, "unknown_kid.storm_threshold %d: want more than 0", c.UnknownKID.StormThreshold)
	check(c.UnknownKID.StormWindow > 0, "unknown_kid.storm_window %s: want more than 0", c.UnknownKID.StormWindow)
	check(c.ExpiredReplay.Grace > 0, "expired_replay.grace %s: want more than 0", c.ExpiredReplay.Grace)
	for _, p := range []struct {
		name   string
		v4, v6 int
	}{
		{"signature_burst", c.SignatureBurst.IPv4Prefix, c.SignatureBurst.IPv6Prefix},
		{"source_change", c.SourceChange.IPv4Prefix, c.SourceChange.IPv6Prefix},
	} {
		check(p.v4 > 0 && p.v4 <= 32, "%s.ipv4_prefix %d: want 1 to 32", p.name, p.v4)
		check(p.v6 > 0 && p.v6 <= 128, "%s.ipv6_prefix %d: want 1 to 128", p.name, p.v6)
	}
	for _, iss := range slices.Sorted(maps.Keys(c.Lifetime.ByIssuer)) {
		check(c.Lifetime.ByIssuer[iss] != 0, "lifetime_policy.by_issuer[%s]: want a duration (negative disables)", iss)
	}
	check(c.HeaderInjection.MaxKIDLength > 0, "header_injection.max_kid_length %d: want more than 0", c.HeaderInjection.MaxKIDLength)
	u := c.UnusualHours
	check(u.MinEvents > 0 && u.MinDays > 0, "unusual_hours.min_events and min_days: want more than 0")
	check(u.MinShare > 0 && u.MinShare < 1, "unusual_hours.min_share %g: want between 0 and 1", u.MinShare)
	check(u.Spread > 0 && u.Spread < 84, "unusual_hours.spread_hours %d: want 1 to 83", u.Spread)
	check(u.LearnFor > 0, "unusual_hours.learn_for %s: want more than 0", u.LearnFor)
	check(u.MaxUsers > 0, "unusual_hours.max_users %d: want more than 0", u.MaxUsers)
	if _, err := loadZone(u.TimeZone); err != nil {
		errs = append(errs, fmt.Errorf("monitor: unusual_hours.time_zone: %w", err))
	}
	for _, user := range slices.Sorted(maps.Keys(u.TimeZones)) {
		if _, err := loadZone(u.TimeZones[user]); err != nil {
			errs = append(errs, fmt.Errorf("monitor: unusual_hours.time_zones[%s]: %w", user, err))
		}
	}
	check(c.KeyAge.MaxAge > 0, "key_age.max_age %s: want more than 0", c.KeyAge.MaxAge)
	check(c.KeyAge.Every > 0, "key_age.every %s: want more than 0", c.KeyAge.Every)
	return errors.Join(errs...)
}

// loadZone loads an IANA time zone; empty means UTC.
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}
