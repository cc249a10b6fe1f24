package breakglass

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
)

// ExchangeRequest asks for a break-glass token. The secrets are the
// credential; nothing else about the caller is known.
type ExchangeRequest struct {
	Account string
	// Secrets are the account's secret, or both under the two-person
	// rule, in either order.
	Secrets []string
	// User is the person using the account (the token's "sub"). It is
	// what they say: the secret proves they hold the account, the review
	// checks the rest.
	User   string
	Target string
	// Reason is mandatory: why the emergency needs this access.
	Reason string
	// TTL is the token's lifetime: 0 means DefaultTTL (or the account's
	// cap if shorter); more than the cap is refused, never shortened.
	TTL time.Duration
	// Source is the client's address; the zero Addr when unknown.
	Source netip.Addr
}

// Issued is a break-glass token and the use it was recorded as.
type Issued struct {
	Token  string
	Claims *token.Claims
	Use    Use
}

// errSpent is the single-use compare-and-swap losing: the secrets were
// exchanged by someone else first.
var errSpent = errors.New("breakglass: the account's secrets are spent")

// Exchange checks req's secrets and, if they are right and unused,
// spends them and returns a break-glass token for req.Target: its grant
// is the target's configured login with every interactive action
// (shell, exec, sftp on SSH targets; query on PostgreSQL ones), never
// port forwarding; its TTL at most the account's cap.
//
// The token is returned only once the use is durable: the secrets spent
// (a compare-and-swap on the account's arming, so two racing exchanges of
// one secret cannot both win), the use stored, breakglass.use audited and
// a critical alert raised. If any of that fails, the token is revoked and
// the secrets are re-armed: it never left.
//
// Every refusal is audited (breakglass.denied, breakglass.lockout,
// breakglass.replay); wrong secrets, lockouts and replays raise alerts.
// The errors are ErrDenied (wrong secret or unknown account, nothing more
// said), *LockedError, *RateLimitedError, ErrReplayed, ErrTwoPerson and
// *InvalidError; anything else means Vigil could not decide or record.
func (s *Service) Exchange(ctx context.Context, req ExchangeRequest) (*Issued, error) {
	src := ""
	if req.Source.IsValid() {
		src = req.Source.String()
	}
	req.Reason = strings.TrimSpace(req.Reason)
	deny := func(reason string, err error, extra map[string]any) error {
		data := map[string]any{"outcome": "denied", "reason": reason, "account": req.Account, "ttl_s": int64(req.TTL / time.Second),
			"secrets": len(req.Secrets), "error": err.Error(), "claims_unverified": true}
		if req.Reason != "" {
			data["stated_reason"] = truncate(req.Reason, maxReason)
		}
		for k, v := range extra {
			data[k] = v
		}
		s.record(ctx, audit.Event{Type: EventDenied, Actor: truncate(req.User, 128), Target: truncate(req.Target, 128), Source: src, Data: data})
		s.cfg.Log.Warn("break-glass request refused", "reason", reason, "account", req.Account, "user", req.User, "target", req.Target, "source", src)
		return err
	}
	// Rate limits come first, before anything is hashed or recorded at
	// length: a token is taken now and given back unless the attempt was
	// a wrong secret.
	srcKey := sourceKey(req.Source)
	req.Account = truncate(req.Account, 128)
	if ok, retry := s.bySource.take(srcKey); !ok {
		return nil, deny("rate_limited_source", &RateLimitedError{RetryAfter: retry}, nil)
	}
	if ok, retry := s.byAccount.take(req.Account); !ok {
		s.bySource.refund(srcKey)
		return nil, deny("rate_limited_account", &RateLimitedError{RetryAfter: retry}, nil)
	}
	wrong := false
	defer func() {
		if !wrong {
			s.bySource.refund(srcKey)
			s.byAccount.refund(req.Account)
		}
	}()
	// One attempt at a time per source network: a burst from one place
	// cannot queue up hashing work.
	if !s.enter(srcKey) {
		return nil, deny("rate_limited_source", &RateLimitedError{RetryAfter: time.Second}, nil)
	}
	defer s.leave(srcKey)
	if err := checkForm(req); err != nil {
		return nil, deny("invalid_request", err, nil)
	}

	acct, err := s.account(ctx, req.Account)
	if errors.Is(err, ErrNotFound) {
		// As slow as a real check, so timing does not tell which
		// accounts exist.
		if err := s.dummyCheck(ctx, len(req.Secrets)); err != nil {
			return nil, err
		}
		wrong = true
		s.raise(ctx, alert.Alert{Severity: alert.High, Rule: "breakglass.wrong_secret", Actor: truncate(req.User, 128), Target: truncate(req.Target, 128), Source: src,
			Summary:  fmt.Sprintf("break-glass attempt for unknown account %q from %s", truncate(req.Account, 64), src),
			Data:     map[string]any{"account": truncate(req.Account, 64), "reason": "unknown_account"},
			DedupKey: "breakglass|unknown_account|" + srcKey})
		return nil, deny("unknown_account", ErrDenied, nil)
	}
	if err != nil {
		return nil, err
	}
	if now := s.now(); acct.LockedUntil.After(now) {
		s.raise(ctx, alert.Alert{Severity: alert.Critical, Rule: "breakglass.lockout", Actor: req.User, Target: req.Target, Source: src,
			Summary:  fmt.Sprintf("break-glass account %s is locked after %d wrong secrets", acct.Name, s.cfg.MaxFailures),
			Data:     map[string]any{"account": acct.Name, "locked_until": acct.LockedUntil.UTC().Format(time.RFC3339)},
			DedupKey: "breakglass|lockout|" + acct.Name})
		return nil, deny("locked", &LockedError{Until: acct.LockedUntil}, map[string]any{"locked_until": acct.LockedUntil.UTC().Format(time.RFC3339)})
	}

	m, err := s.check(ctx, acct.hashes, req.Secrets)
	if err != nil {
		return nil, err
	}
	switch {
	case m.matched == 0 || m.wrong > 0:
		wrong = true
		return nil, s.wrongSecret(ctx, acct, req, src, m, deny)
	case !acct.Armed:
		return nil, s.replayed(ctx, acct, req, src, deny)
	case m.matched < len(acct.hashes):
		return nil, deny("two_person_incomplete", ErrTwoPerson, nil)
	}

	// The secrets are right and unused: now the request itself. These
	// refusals do not spend the secrets.
	if !slices.Contains(acct.Targets, req.Target) {
		return nil, deny("target_not_allowed", invalid("target %q is not covered by account %s (it covers %s)",
			req.Target, acct.Name, strings.Join(acct.Targets, ", ")), nil)
	}
	t, err := s.cfg.Targets.Get(ctx, req.Target)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		return nil, deny("unknown_target", invalid("unknown target %q", req.Target), nil)
	case err != nil:
		return nil, fmt.Errorf("breakglass: look up target %s: %w", req.Target, err)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = min(DefaultTTL, acct.MaxTTL, s.cfg.Signer.MaxTTL())
	}
	if limit := min(acct.MaxTTL, s.cfg.Signer.MaxTTL()); ttl > limit {
		return nil, deny("ttl_over_cap", invalid("ttl %s exceeds the account's maximum of %s", ttl, limit), nil)
	}
	if t.Kind != vault.KindSSH {
		// No gateway serves other kinds yet: a token for one would burn
		// the secrets for nothing.
		return nil, deny("target_kind", invalid("target %q is a %s target; break-glass serves SSH targets only for now", t.Name, t.Kind), nil)
	}
	actions := []string{token.ActionShell, token.ActionExec, token.ActionSFTP}
	grant := token.Grant{Target: t.Name, Login: t.Login, Actions: actions}
	raw, claims, err := s.cfg.Signer.Issue(token.Request{Subject: req.User, Grants: []token.Grant{grant}, TTL: ttl, BreakGlass: true})
	if err != nil {
		return nil, fmt.Errorf("breakglass: issue: %w", err)
	}
	use := Use{JTI: claims.ID, Account: acct.Name, Generation: acct.Generation, User: req.User, Target: t.Name, Login: t.Login,
		Reason: req.Reason, TTL: ttl, Time: claims.IssuedAt.Time, ExpiresAt: claims.ExpiresAt.Time, Source: src}
	if err := s.spend(ctx, use); errors.Is(err, errSpent) {
		// Lost the compare-and-swap: to a lockout set meanwhile, or to
		// another exchange of the same secrets.
		if cur, err := s.account(ctx, acct.Name); err == nil && cur.LockedUntil.After(s.now()) {
			return nil, deny("locked", &LockedError{Until: cur.LockedUntil}, map[string]any{"locked_until": cur.LockedUntil.UTC().Format(time.RFC3339)})
		}
		return nil, s.replayed(ctx, acct, req, src, deny)
	} else if err != nil {
		return nil, err
	}

	// From here on the request's context no longer counts: the use is
	// recorded completely or undone.
	ctx = context.WithoutCancel(ctx)
	if err := s.record(ctx, audit.Event{Time: use.Time, Type: EventUse, Actor: use.User, Target: use.Target, Source: src, Data: map[string]any{
		"jti": use.JTI, "account": use.Account, "reason": use.Reason, "ttl_s": int64(ttl / time.Second), "login": use.Login,
		"actions": actions, "exp": claims.ExpiresAt.Unix(), "generation": use.Generation, "two_person": acct.TwoPerson}}); err != nil {
		s.abort(ctx, use, err)
		return nil, err
	}
	a, err := s.raise(ctx, alert.Alert{Time: use.Time, Severity: alert.Critical, Rule: "breakglass.use", Actor: use.User, Target: use.Target, Source: src,
		Summary: fmt.Sprintf("BREAK-GLASS: %s used account %s on %s for %s: %s", use.User, use.Account, use.Target, ttl, truncate(use.Reason, 200)),
		Data: map[string]any{"jti": use.JTI, "account": use.Account, "reason": use.Reason, "ttl_s": int64(ttl / time.Second),
			"login": use.Login, "expires_at": use.ExpiresAt.UTC().Format(time.RFC3339)}})
	if err != nil {
		s.abort(ctx, use, err)
		return nil, err
	}
	use.AlertID = a.ID
	if _, err := s.cfg.DB.ExecContext(ctx, `UPDATE breakglass_uses SET alert_id = $1 WHERE jti = $2`, a.ID, use.JTI); err != nil {
		s.cfg.Log.Error("break-glass use not linked to its alert; its review will not acknowledge it", "jti", use.JTI, "alert", a.ID, "err", err)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.cfg.Log.Warn("BREAK-GLASS access granted", "account", use.Account, "user", use.User, "target", use.Target, "jti", use.JTI,
		"ttl", ttl, "source", src)
	return &Issued{Token: raw, Claims: claims, Use: use}, nil
}

// checkForm checks what can be judged without the account: nothing it
// says depends on a secret.
func checkForm(req ExchangeRequest) error {
	switch {
	case req.Reason == "":
		return invalid("a reason is required")
	case len(req.Reason) > maxReason:
		return invalid("the reason is over %d bytes", maxReason)
	case strings.IndexFunc(req.Reason, unicode.IsControl) >= 0:
		return invalid("the reason must be one line of text")
	case !userRE.MatchString(req.User):
		return invalid("the user (who is using the account) is required: letters, digits and . _ @ + - (at most 128)")
	case !nameRE.MatchString(req.Account):
		return invalid("an account name is required")
	case !nameRE.MatchString(req.Target):
		return invalid("a target name is required")
	case len(req.Secrets) == 0:
		return invalid("a secret is required")
	case len(req.Secrets) > maxSecrets:
		return invalid("at most %d secrets", maxSecrets)
	case req.TTL < 0 || (req.TTL > 0 && req.TTL < time.Second):
		return invalid("ttl %s is too short", req.TTL)
	}
	for _, sec := range req.Secrets {
		if len(sec) > maxSecretLen {
			return invalid("a secret is over %d bytes", maxSecretLen)
		}
	}
	return nil
}

// match is how presented secrets met an account's hashes: matched hashes
// are covered by distinct secrets; wrong secrets matched none.
type match struct {
	matched, wrong int
	// detail says which secrets were wrong, for the audit log.
	detail string
}

// check compares every presented secret with every hash (at most 2×2
// Argon2id computations), so how long it takes does not depend on which
// matched.
func (s *Service) check(ctx context.Context, hashes, secrets []string) (match, error) {
	if err := s.acquire(ctx); err != nil {
		return match{}, err
	}
	defer s.release()
	hit := make([][]bool, len(secrets))
	for i, sec := range secrets {
		hit[i] = make([]bool, len(hashes))
		raw, err := parseSecret(sec)
		for j, h := range hashes {
			p, perr := parseHash(h)
			if perr != nil {
				return match{}, perr
			}
			if err != nil {
				raw = make([]byte, secretBytes) // same work, never a match
			}
			hit[i][j] = p.matches(raw) && err == nil
		}
	}
	var m match
	used := make([]bool, len(hashes))
	var wrong []string
	for i := range secrets {
		found := false
		for j := range hashes {
			if hit[i][j] && !used[j] {
				used[j], found = true, true
				m.matched++
				break
			}
		}
		if !found {
			m.wrong++
			wrong = append(wrong, fmt.Sprintf("%d", i+1))
		}
	}
	if len(wrong) > 0 {
		m.detail = fmt.Sprintf("secret %s of %d wrong", strings.Join(wrong, ", "), len(secrets))
	}
	return m, nil
}

// dummyCheck does the work of checking n secrets against as many hashes.
func (s *Service) dummyCheck(ctx context.Context, n int) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	h := phc{p: s.cfg.Params, salt: make([]byte, saltBytes), key: make([]byte, keyBytes)}
	for range n * n {
		h.matches(make([]byte, secretBytes))
	}
	return nil
}

// wrongSecret counts a wrong secret (in memory and in the account's
// persisted failures, locking it at MaxFailures), audits and alerts it.
func (s *Service) wrongSecret(ctx context.Context, acct Account, req ExchangeRequest, src string, m match,
	deny func(string, error, map[string]any) error) error {
	failures, lockedUntil, ferr := s.countFailure(ctx, acct.Name)
	if ferr != nil {
		s.cfg.Log.Error("break-glass failure not counted", "account", acct.Name, "err", ferr)
	}
	extra := map[string]any{"failures": failures, "max_failures": s.cfg.MaxFailures}
	if m.detail != "" {
		extra["detail"] = m.detail
	}
	s.raise(ctx, alert.Alert{Severity: alert.High, Rule: "breakglass.wrong_secret", Actor: req.User, Target: req.Target, Source: src,
		Summary:  fmt.Sprintf("wrong secret for break-glass account %s (%d of %d before lockout)", acct.Name, failures, s.cfg.MaxFailures),
		Data:     map[string]any{"account": acct.Name, "failures": failures, "max_failures": s.cfg.MaxFailures},
		DedupKey: "breakglass|wrong_secret|" + acct.Name})
	if lockedUntil.IsZero() {
		return deny("wrong_secret", ErrDenied, extra)
	}
	until := lockedUntil.UTC().Format(time.RFC3339)
	s.record(ctx, audit.Event{Type: EventLock, Actor: "vigil", Target: acct.Name, Source: src, Data: map[string]any{
		"account": acct.Name, "failures": failures, "locked_until": until}})
	s.raise(ctx, alert.Alert{Severity: alert.Critical, Rule: "breakglass.lockout", Actor: req.User, Target: req.Target, Source: src,
		Summary:  fmt.Sprintf("break-glass account %s locked until %s after %d wrong secrets", acct.Name, until, failures),
		Data:     map[string]any{"account": acct.Name, "locked_until": until},
		DedupKey: "breakglass|lockout|" + acct.Name})
	extra["locked_until"] = until
	return deny("wrong_secret", &LockedError{Until: lockedUntil}, extra)
}

// countFailure adds a failure to the account; at MaxFailures it locks the
// account for Lockout (and starts counting afresh) and returns until
// when.
func (s *Service) countFailure(ctx context.Context, name string) (failures int, lockedUntil time.Time, err error) {
	ctx = context.WithoutCancel(ctx)
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE breakglass_accounts SET failures = failures + 1 WHERE name = $1`, name); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT failures FROM breakglass_accounts WHERE name = $1`, name).Scan(&failures); err != nil {
			return err
		}
		if failures < s.cfg.MaxFailures {
			return nil
		}
		lockedUntil = s.now().Add(s.cfg.Lockout)
		_, err := tx.ExecContext(ctx, `UPDATE breakglass_accounts SET failures = 0, locked_until = $1 WHERE name = $2`,
			store.Nanos(lockedUntil), name)
		return err
	})
	if err != nil {
		return failures, time.Time{}, fmt.Errorf("breakglass: count failure of %s: %w", name, err)
	}
	return failures, lockedUntil, nil
}

// replayed refuses spent secrets presented again: audited, and a critical
// alert (someone holds a secret that was already used).
func (s *Service) replayed(ctx context.Context, acct Account, req ExchangeRequest, src string, deny func(string, error, map[string]any) error) error {
	if cur, err := s.account(ctx, acct.Name); err == nil {
		acct = cur // after a lost race, the use that won
	}
	usedAt := acct.UsedAt.UTC().Format(time.RFC3339)
	s.record(ctx, audit.Event{Type: EventReplay, Actor: req.User, Target: req.Target, Source: src, Data: map[string]any{
		"account": acct.Name, "jti": acct.UsedJTI, "used_at": usedAt, "generation": acct.Generation, "claims_unverified": true}})
	s.raise(ctx, alert.Alert{Severity: alert.Critical, Rule: "breakglass.replay", Actor: req.User, Target: req.Target, Source: src,
		Summary:  fmt.Sprintf("spent break-glass secret of account %s presented again (used at %s)", acct.Name, usedAt),
		Data:     map[string]any{"account": acct.Name, "jti": acct.UsedJTI, "used_at": usedAt},
		DedupKey: "breakglass|replay|" + acct.Name + "|" + acct.UsedJTI})
	return deny("replayed", fmt.Errorf("%w at %s; an administrator must re-arm the account (vigil breakglass init --name %s --rearm)",
		ErrReplayed, usedAt, acct.Name), map[string]any{"jti": acct.UsedJTI})
}

// spend is the single-use compare-and-swap: it disarms the account's
// current arming for use and stores use, or returns errSpent if the
// arming was spent (or replaced) first.
func (s *Service) spend(ctx context.Context, use Use) error {
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		// Armed, this arming, and not locked meanwhile (a lockout set by
		// a concurrent wrong secret wins over a check made before it).
		res, err := tx.ExecContext(ctx, `UPDATE breakglass_accounts SET armed = 0, failures = 0, used_jti = $1, used_at = $2
			WHERE name = $3 AND armed = 1 AND generation = $4 AND locked_until <= $5`, use.JTI, store.Nanos(use.Time), use.Account, use.Generation, store.Nanos(use.Time))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errSpent
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO breakglass_uses (jti, account, generation, subject, target, login, reason, ttl,
			time, expires_at, source, alert_id, expired_at, reviewed_by, reviewed_at, note)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, '', 0, '')`,
			use.JTI, use.Account, use.Generation, use.User, use.Target, use.Login, use.Reason, int64(use.TTL),
			store.Nanos(use.Time), store.Nanos(use.ExpiresAt), use.Source)
		return err
	})
	if err != nil && !errors.Is(err, errSpent) {
		return fmt.Errorf("breakglass: spend %s: %w", use.Account, err)
	}
	return err
}

// abort undoes a use whose token never left because it could not be
// recorded: the token is revoked, the use deleted and the arming
// restored, each as far as the store allows.
func (s *Service) abort(ctx context.Context, use Use, cause error) {
	ctx = context.WithoutCancel(ctx)
	log := s.cfg.Log.With("account", use.Account, "jti", use.JTI)
	log.Error("break-glass use could not be recorded; undoing it", "err", cause)
	if err := s.cfg.Revocations.Revoke(ctx, token.Revocation{Issuer: s.cfg.Issuer, JTI: use.JTI, RevokedAt: s.now(),
		ExpiresAt: use.ExpiresAt.Add(token.MaxLeeway), RevokedBy: "vigil", Reason: "break-glass use could not be recorded"}); err != nil {
		log.Error("unrecorded break-glass token not revoked (it was never returned)", "err", err)
	}
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM breakglass_uses WHERE jti = $1`, use.JTI); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE breakglass_accounts SET armed = 1, used_jti = '', used_at = 0
			WHERE name = $1 AND generation = $2 AND used_jti = $3`, use.Account, use.Generation, use.JTI)
		return err
	})
	if err != nil {
		log.Error("break-glass account left spent after an unrecorded use; re-arm it", "err", err)
	}
	s.record(ctx, audit.Event{Type: EventAbort, Actor: use.User, Target: use.Target, Source: use.Source,
		Data: map[string]any{"jti": use.JTI, "account": use.Account, "error": cause.Error()}})
}

// truncate shortens s to at most n bytes (on a rune boundary) for the
// record.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// sourceKey is the rate-limiting key of a client address: the address for
// IPv4, its /64 for IPv6 (one host holds a whole /64).
func sourceKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// enter admits one attempt per source key at a time; leave ends it.
func (s *Service) enter(key string) bool {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.inflight[key] {
		return false
	}
	if len(s.inflight) >= maxInflight {
		return false
	}
	s.inflight[key] = true
	return true
}

func (s *Service) leave(key string) {
	s.inflightMu.Lock()
	delete(s.inflight, key)
	s.inflightMu.Unlock()
}
