// Package breakglass owns break-glass emergency access: the accounts a
// small set of people hold for when the identity provider or the
// approvers are unreachable, their secrets (shown once, stored only as
// Argon2id hashes, one or two of them under the two-person rule), the
// exchange of a secret and a mandatory reason for a short-lived Vigil
// token marked "bg", and everything that makes such access loud and
// accountable: an audit event and a critical alert the moment it is used,
// rate limits and a lockout on wrong secrets, single use (a secret works
// once, by a compare-and-swap in the database, until an admin re-arms the
// account), revocation when the token's time is up, and the
// post-incident review by someone other than the user.
//
// It does not verify tokens or sign them (package token), relay or record
// sessions (the gateways, which flag a session whose token is "bg" and by
// default reduce rule actions on it to alerts), deliver alerts (package
// alert) or serve HTTP (package api). The breakglass report is package
// report's, read from the audit events written here.
//
// Files: breakglass.go (Service, types, errors), secret.go (secrets and
// their Argon2id hashes), limiter.go (in-memory rate limits), accounts.go
// (init, re-arm, list, remove), exchange.go (secret → token), expire.go
// (revocation at the end of the TTL), review.go (uses and their review).
package breakglass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// Audit event types written by this package. breakglass.use and
// breakglass.review have the shapes package report reads: use with Actor
// the user, Target the target, Data {jti, account, reason, ttl_s}; review
// with Actor the reviewer, Data {jti of the use, note}.
const (
	EventInit   = "breakglass.init"
	EventRearm  = "breakglass.rearm"
	EventRemove = "breakglass.remove"
	EventUse    = "breakglass.use"
	EventDenied = "breakglass.denied"
	EventLock   = "breakglass.lockout"
	EventReplay = "breakglass.replay"
	EventAbort  = "breakglass.abort"
	EventExpire = "breakglass.expire"
	EventReview = "breakglass.review"
)

// AlertKind is the Kind of every alert this package raises; the Rule says
// which: breakglass.use (critical), breakglass.wrong_secret (high),
// breakglass.lockout (critical), breakglass.replay (critical).
const AlertKind = "breakglass"

// Defaults and bounds.
const (
	// DefaultTTL is the lifetime of a break-glass token when none is
	// asked for, shortened to the account's maximum.
	DefaultTTL = 30 * time.Minute
	// DefaultMaxTTL is an account's maximum token lifetime when init
	// names none.
	DefaultMaxTTL = time.Hour
	// MinMaxTTL is the least maximum an account may have.
	MinMaxTTL = time.Minute
	// DefaultMaxFailures and DefaultLockout are the persisted lockout:
	// that many wrong secrets in a row lock the account for that long.
	DefaultMaxFailures = 5
	DefaultLockout     = 15 * time.Minute
	// maxReason bounds the stated reason; maxNote a review note.
	maxReason = 1000
	maxNote   = 4000
	// maxSecrets is the most secrets an account has (two-person rule).
	maxSecrets = 2
	// SharedAdmin is the subject of the bootstrap admin token, which may
	// not review a use (a review must name a person).
	SharedAdmin = "admin"
	// maxInflight bounds the exchanges under way at once (one per
	// source network): beyond it a request is refused at once with a
	// retry hint instead of queueing for the hashing slots.
	maxInflight = 8
	// maxSecretLen bounds one presented secret, before any hashing.
	maxSecretLen = 128
	// hashConcurrency bounds the Argon2id computations at once: each
	// takes Params.MemoryKiB, and the exchange is unauthenticated.
	hashConcurrency = 2
	// expirePoll is how often the expiry loop looks for uses without
	// being woken: another node on the same database may have made them.
	expirePoll = 30 * time.Second
)

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	userRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@+-]{0,127}$`)
)

// Errors a caller branches on (errors.Is). Their text is safe to show the
// client.
var (
	// ErrDenied is a wrong or malformed secret, or an unknown account: the
	// client learns nothing more; the audit log has the reason.
	ErrDenied = errors.New("breakglass: access denied")
	// ErrReplayed is a secret that was already exchanged: it works once.
	ErrReplayed = errors.New("breakglass: this secret was already used")
	// ErrTwoPerson is one right secret for an account that needs two.
	ErrTwoPerson = errors.New("breakglass: the two-person rule needs both secrets of this account")
	// ErrNotFound is an unknown account in an admin request.
	ErrNotFound = errors.New("breakglass: no such account")
	// ErrExists is init of an account that exists (re-arm it instead).
	ErrExists = errors.New("breakglass: the account exists; use rearm to issue new secrets")
	// ErrUseNotFound is an unknown break-glass use (by jti).
	ErrUseNotFound = errors.New("breakglass: no such break-glass use")
	// ErrSelfReview is a review by the use's own user.
	ErrSelfReview = errors.New("breakglass: a break-glass use must be reviewed by someone other than its user")
	// ErrReviewed is a second review of a use.
	ErrReviewed = errors.New("breakglass: the use was already reviewed")
)

// InvalidError is a request that is wrong in itself (no reason, a target
// the account does not cover, a TTL over the cap). Msg is safe to show.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return "breakglass: " + e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// LockedError is an account locked after too many wrong secrets: every
// secret, even the right one, is refused until Until.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return "breakglass: the account is locked after repeated wrong secrets until " + e.Until.UTC().Format(time.RFC3339)
}

// RateLimitedError is an attempt refused, before any secret was checked,
// because its source or account had too many wrong secrets lately.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("breakglass: too many wrong secrets; try again in %s", e.RetryAfter.Round(time.Second))
}

// Signer issues Vigil's own tokens; *token.Signer implements it.
type Signer interface {
	Issue(req token.Request) (string, *token.Claims, error)
	MaxTTL() time.Duration
}

// Targets looks targets up; *vault.Vault implements it.
type Targets interface {
	Get(ctx context.Context, name string) (vault.Target, error)
}

// Alerts raises and acknowledges alerts; *alert.Store implements it.
type Alerts interface {
	Raise(ctx context.Context, a alert.Alert) (alert.Alert, bool, error)
	Ack(ctx context.Context, id int64, by, note string) (alert.Alert, error)
}

// Revoker puts a token on the deny list; *token.Revocations implements it.
type Revoker interface {
	Revoke(ctx context.Context, rev token.Revocation) error
}

// LiveSessions ends live sessions; *session.Registry implements it.
type LiveSessions interface {
	EndMatching(match func(*session.Live) bool, by, reason string) int
}

// Config wires a Service. Fields without a stated default are required.
type Config struct {
	DB          *store.DB
	Signer      Signer
	Targets     Targets
	Audit       audit.Sink
	Alerts      Alerts
	Revocations Revoker
	// Live ends the live sessions of a token when it expires; nil means
	// none here (the gateways end sessions at the token's expiry anyway).
	Live LiveSessions
	// Issuer is Vigil's own "iss", under which tokens are revoked.
	Issuer string
	// MaxFailures wrong secrets in a row lock an account for Lockout;
	// zero means DefaultMaxFailures and DefaultLockout.
	MaxFailures int
	Lockout     time.Duration
	// Params hash new secrets; the zero value means DefaultParams.
	Params Params
	// SourceLimit and AccountLimit rate-limit wrong secrets in memory,
	// per client address and per account name; zero means the defaults.
	SourceLimit, AccountLimit Limit
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Service is break-glass access. Create it with New; it is safe for
// concurrent use. Run its expiry loop with Run.
type Service struct {
	cfg       Config
	now       func() time.Time
	bySource  *limiter
	byAccount *limiter
	// hashing admits hashConcurrency Argon2id computations at once.
	hashing chan struct{}
	// inflightMu guards inflight: the source keys with an attempt under
	// way (at most maxInflight, so waiting hashes are bounded too).
	inflightMu sync.Mutex
	inflight   map[string]bool
	// wake tells Run that a use was made (its expiry may be the next).
	wake chan struct{}
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Signer == nil || cfg.Targets == nil || cfg.Audit == nil || cfg.Alerts == nil ||
		cfg.Revocations == nil || cfg.Issuer == "" || cfg.Log == nil {
		return nil, errors.New("breakglass: incomplete configuration")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.Lockout == 0 {
		cfg.Lockout = DefaultLockout
	}
	if cfg.MaxFailures < 0 || cfg.Lockout < 0 {
		return nil, errors.New("breakglass: negative max failures or lockout")
	}
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams
	}
	if err := cfg.Params.validate(); err != nil {
		return nil, err
	}
	if cfg.SourceLimit == (Limit{}) {
		cfg.SourceLimit = DefaultSourceLimit
	}
	if cfg.AccountLimit == (Limit{}) {
		cfg.AccountLimit = DefaultAccountLimit
	}
	return &Service{
		cfg: cfg, now: cfg.Now,
		bySource:  newLimiter(cfg.SourceLimit, cfg.Now),
		byAccount: newLimiter(cfg.AccountLimit, cfg.Now),
		hashing:   make(chan struct{}, hashConcurrency),
		inflight:  map[string]bool{},
		wake:      make(chan struct{}, 1),
	}, nil
}

// Account is a break-glass account, without its secrets' hashes.
type Account struct {
	Name string `json:"name"`
	// Targets are the targets a token of the account may be for.
	Targets []string `json:"targets"`
	// MaxTTL caps the lifetime of the account's tokens.
	MaxTTL time.Duration `json:"max_ttl"`
	// TwoPerson means two secrets, held by two people, are both needed.
	TwoPerson bool `json:"two_person"`
	// Armed reports whether the current secrets are unused. A use spends
	// them until an admin re-arms the account (new secrets, Generation+1).
	Armed      bool  `json:"armed"`
	Generation int64 `json:"generation"`
	// Failures counts wrong secrets since the last success or lockout;
	// LockedUntil is zero unless the account is or was locked.
	Failures    int       `json:"failures"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// UsedJTI and UsedAt are the token and time of the use that spent the
	// current secrets.
	UsedJTI   string    `json:"used_jti,omitempty"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	ArmedAt   time.Time `json:"armed_at"`
	ArmedBy   string    `json:"armed_by"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`

	hashes []string
}

// Use is one exchange of an account's secrets for a token: who, where,
// why, for how long, and its review.
type Use struct {
	// JTI is the token's ID; it names the use (vigil breakglass review JTI).
	JTI        string `json:"jti"`
	Account    string `json:"account"`
	Generation int64  `json:"generation"`
	// User is the person who said they were using it (the token's sub).
	User   string        `json:"user"`
	Target string        `json:"target"`
	Login  string        `json:"login"`
	Reason string        `json:"reason"`
	TTL    time.Duration `json:"ttl"`
	Time   time.Time     `json:"time"`
	// ExpiresAt is the token's exp; ExpiredAt when Vigil revoked it then.
	ExpiresAt time.Time `json:"expires_at"`
	ExpiredAt time.Time `json:"expired_at,omitzero"`
	Source    string    `json:"source"`
	// AlertID is the critical alert of the use, acknowledged by the review.
	AlertID    int64     `json:"alert_id"`
	ReviewedBy string    `json:"reviewed_by,omitempty"`
	ReviewedAt time.Time `json:"reviewed_at,omitzero"`
	Note       string    `json:"note,omitempty"`
}

// Reviewed reports whether the use has been reviewed.
func (u *Use) Reviewed() bool { return !u.ReviewedAt.IsZero() }

// record appends ev to the audit log, after the request's context has
// ended too: a decision made must be on record.
func (s *Service) record(ctx context.Context, ev audit.Event) error {
	if err := s.cfg.Audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		s.cfg.Log.Error("audit append failed", "type", ev.Type, "err", err)
		return fmt.Errorf("breakglass: record %s: %w", ev.Type, err)
	}
	return nil
}

// raise raises a; a failure is logged and returned.
func (s *Service) raise(ctx context.Context, a alert.Alert) (alert.Alert, error) {
	a.Kind = AlertKind
	stored, _, err := s.cfg.Alerts.Raise(context.WithoutCancel(ctx), a)
	if err != nil {
		s.cfg.Log.Error("alert not raised", "rule", a.Rule, "err", err)
		return stored, fmt.Errorf("breakglass: raise %s alert: %w", a.Rule, err)
	}
	return stored, nil
}

// boolInt is a bool for a BIGINT flag column.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
