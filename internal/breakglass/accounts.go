package breakglass

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/vault"
)

// InitRequest creates an account, or with Rearm gives an existing one new
// secrets.
type InitRequest struct {
	Name string
	// Targets the account covers; required for a new account, optional
	// on re-arm (empty keeps them).
	Targets []string
	// MaxTTL caps the lifetime of the account's tokens: 0 means
	// DefaultMaxTTL for a new account and the current cap on re-arm.
	MaxTTL time.Duration
	// TwoPerson asks for two secrets, both needed. On re-arm it may turn
	// the rule on, never off (remove and recreate the account for that).
	TwoPerson bool
	Rearm     bool
	// By is the admin asking; Source their address.
	By, Source string
}

// Armed is an account armed with new secrets. Secrets are shown to the
// admin this once: Vigil keeps only their hashes.
type Armed struct {
	Account Account  `json:"account"`
	Secrets []string `json:"secrets"`
}

// Init creates an account (or re-arms one) with fresh secrets and returns
// them. Arming is audited (breakglass.init or breakglass.rearm) before the
// secrets are returned; if it cannot be, the new secrets are void.
func (s *Service) Init(ctx context.Context, req InitRequest) (*Armed, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, invalid("account name %q: want letters, digits, '.', '_' or '-' (at most 63)", req.Name)
	}
	if req.By == "" {
		return nil, errors.New("breakglass: init needs who asks")
	}
	if req.MaxTTL < 0 {
		return nil, invalid("max ttl %s is negative", req.MaxTTL)
	}
	if req.MaxTTL != 0 && (req.MaxTTL < MinMaxTTL || req.MaxTTL > s.cfg.Signer.MaxTTL()) {
		return nil, invalid("max ttl %s: want %s to %s (the token maximum)", req.MaxTTL, MinMaxTTL, s.cfg.Signer.MaxTTL())
	}
	if err := s.checkTargets(ctx, req.Targets); err != nil {
		return nil, err
	}
	if !req.Rearm && len(req.Targets) == 0 {
		return nil, invalid("an account needs at least one target")
	}

	var a Account
	now := s.now()
	if req.Rearm {
		cur, err := s.account(ctx, req.Name)
		if err != nil {
			return nil, err
		}
		a = cur
		a.Generation++
		if len(req.Targets) > 0 {
			a.Targets = req.Targets
		}
		if req.MaxTTL != 0 {
			a.MaxTTL = req.MaxTTL
		}
		a.TwoPerson = a.TwoPerson || req.TwoPerson
	} else {
		// A name used before (an account removed and created again)
		// continues its generations: uses of the old account keep
		// theirs, and the single-use index stays unique.
		var gen int64
		if err := s.cfg.DB.QueryRowContext(ctx, `SELECT COALESCE(MAX(generation), 0) FROM breakglass_uses WHERE account = $1`, req.Name).Scan(&gen); err != nil {
			return nil, fmt.Errorf("breakglass: init %s: %w", req.Name, err)
		}
		a = Account{Name: req.Name, Targets: req.Targets, MaxTTL: req.MaxTTL, TwoPerson: req.TwoPerson,
			Generation: gen + 1, CreatedAt: now, CreatedBy: req.By}
		if a.MaxTTL == 0 {
			a.MaxTTL = min(DefaultMaxTTL, s.cfg.Signer.MaxTTL())
		}
	}
	a.Armed, a.Failures, a.LockedUntil, a.UsedJTI, a.UsedAt, a.ArmedAt, a.ArmedBy = true, 0, time.Time{}, "", time.Time{}, now, req.By
	n := 1
	if a.TwoPerson {
		n = 2
	}
	secrets := make([]string, n)
	a.hashes = make([]string, n)
	for i := range secrets {
		var err error
		if secrets[i], err = newSecret(); err != nil {
			return nil, err
		}
		raw, _ := parseSecret(secrets[i])
		if err := s.acquire(ctx); err != nil {
			return nil, err
		}
		a.hashes[i], err = hashSecret(raw, s.cfg.Params)
		s.release()
		if err != nil {
			return nil, err
		}
	}
	if req.Rearm {
		if err := s.rearm(ctx, a); err != nil {
			return nil, err
		}
	} else if err := s.insert(ctx, a); err != nil {
		return nil, err
	}

	typ := EventInit
	if req.Rearm {
		typ = EventRearm
	}
	err := s.record(ctx, audit.Event{Type: typ, Actor: req.By, Target: a.Name, Source: req.Source, Data: map[string]any{
		"account": a.Name, "targets": a.Targets, "max_ttl_s": int64(a.MaxTTL / time.Second), "two_person": a.TwoPerson,
		"generation": a.Generation, "secrets": n, "argon2id": fmt.Sprintf("m=%d,t=%d,p=%d", s.cfg.Params.MemoryKiB, s.cfg.Params.Time, s.cfg.Params.Threads)}})
	if err != nil {
		// Unrecorded secrets must not work: disarm what was just armed.
		if _, derr := s.cfg.DB.ExecContext(context.WithoutCancel(ctx), `UPDATE breakglass_accounts SET armed = 0
			WHERE name = $1 AND generation = $2`, a.Name, a.Generation); derr != nil {
			s.cfg.Log.Error("break-glass account armed without an audit event and not disarmed", "account", a.Name, "err", derr)
		}
		return nil, err
	}
	s.cfg.Log.Info("break-glass account armed", "account", a.Name, "generation", a.Generation, "by", req.By)
	return &Armed{Account: a, Secrets: secrets}, nil
}

// checkTargets checks that each name is a known target, once.
func (s *Service) checkTargets(ctx context.Context, names []string) error {
	for i, name := range names {
		if slices.Contains(names[:i], name) {
			return invalid("target %q named twice", name)
		}
		if _, err := s.cfg.Targets.Get(ctx, name); errors.Is(err, vault.ErrNotFound) {
			return invalid("unknown target %q", name)
		} else if err != nil {
			return fmt.Errorf("breakglass: look up target %s: %w", name, err)
		}
	}
	return nil
}

func (s *Service) insert(ctx context.Context, a Account) error {
	targets, _ := json.Marshal(a.Targets)
	hashes, _ := json.Marshal(a.hashes)
	res, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO breakglass_accounts (name, targets, max_ttl, two_person, hashes,
		generation, armed, failures, locked_until, used_jti, used_at, armed_at, armed_by, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, 1, 0, 0, '', 0, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING`,
		a.Name, string(targets), int64(a.MaxTTL), boolInt(a.TwoPerson), string(hashes), a.Generation,
		store.Nanos(a.ArmedAt), a.ArmedBy, store.Nanos(a.CreatedAt), a.CreatedBy)
	if err != nil {
		return fmt.Errorf("breakglass: create %s: %w", a.Name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrExists
	}
	return nil
}

// rearm stores a's new secrets and settings, provided nobody re-armed the
// account since it was read (generation is the compare-and-swap).
func (s *Service) rearm(ctx context.Context, a Account) error {
	targets, _ := json.Marshal(a.Targets)
	hashes, _ := json.Marshal(a.hashes)
	res, err := s.cfg.DB.ExecContext(ctx, `UPDATE breakglass_accounts SET targets = $1, max_ttl = $2, two_person = $3,
		hashes = $4, generation = $5, armed = 1, failures = 0, locked_until = 0, used_jti = '', used_at = 0,
		armed_at = $6, armed_by = $7 WHERE name = $8 AND generation = $9`,
		string(targets), int64(a.MaxTTL), boolInt(a.TwoPerson), string(hashes), a.Generation,
		store.Nanos(a.ArmedAt), a.ArmedBy, a.Name, a.Generation-1)
	if err != nil {
		return fmt.Errorf("breakglass: re-arm %s: %w", a.Name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("breakglass: re-arm %s: the account changed meanwhile; try again", a.Name)
	}
	return nil
}

// accountColumns is what scanAccount reads, in order.
const accountColumns = `name, targets, max_ttl, two_person, hashes, generation, armed, failures, locked_until,
	used_jti, used_at, armed_at, armed_by, created_at, created_by`

func scanAccount(row interface{ Scan(...any) error }) (Account, error) {
	var a Account
	var targets, hashes string
	var maxTTL, twoPerson, armed, locked, used, armedAt, created int64
	if err := row.Scan(&a.Name, &targets, &maxTTL, &twoPerson, &hashes, &a.Generation, &armed, &a.Failures, &locked,
		&a.UsedJTI, &used, &armedAt, &a.ArmedBy, &created, &a.CreatedBy); err != nil {
		return a, err
	}
	a.MaxTTL, a.TwoPerson, a.Armed = time.Duration(maxTTL), twoPerson != 0, armed != 0
	a.LockedUntil, a.UsedAt, a.ArmedAt, a.CreatedAt = store.Time(locked), store.Time(used), store.Time(armedAt), store.Time(created)
	if err := json.Unmarshal([]byte(targets), &a.Targets); err != nil {
		return a, fmt.Errorf("targets: %w", err)
	}
	if err := json.Unmarshal([]byte(hashes), &a.hashes); err != nil {
		return a, fmt.Errorf("hashes: %w", err)
	}
	return a, nil
}

// account reads one account, or ErrNotFound.
func (s *Service) account(ctx context.Context, name string) (Account, error) {
	a, err := scanAccount(s.cfg.DB.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM breakglass_accounts WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("breakglass: read account %s: %w", name, err)
	}
	return a, nil
}

// Accounts lists the accounts by name.
func (s *Service) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT `+accountColumns+` FROM breakglass_accounts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("breakglass: list accounts: %w", err)
	}
	defer rows.Close()
	out := []Account{}
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("breakglass: list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("breakglass: list accounts: %w", err)
	}
	return out, nil
}

// Remove deletes an account (its secrets stop working at once) and
// audits it; its uses stay on record.
func (s *Service) Remove(ctx context.Context, name, by, source string) error {
	res, err := s.cfg.DB.ExecContext(ctx, `DELETE FROM breakglass_accounts WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("breakglass: remove %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return s.record(ctx, audit.Event{Type: EventRemove, Actor: by, Target: name, Source: source, Data: map[string]any{"account": name}})
}

// acquire waits for a turn to hash; release ends it.
func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("breakglass: waiting to check a secret: %w", context.Cause(ctx))
	}
}

func (s *Service) release() { <-s.hashing }
