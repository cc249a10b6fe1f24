package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/breakglass"
	"github.com/vigil-pam/vigil/internal/config"
	"github.com/vigil-pam/vigil/internal/gateway"
	"github.com/vigil-pam/vigil/internal/gateway/pggw"
	"github.com/vigil-pam/vigil/internal/gateway/sshgw"
	"github.com/vigil-pam/vigil/internal/masking"
	"github.com/vigil-pam/vigil/internal/masterkey"
	"github.com/vigil-pam/vigil/internal/monitor"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/querylog"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/report"
	"github.com/vigil-pam/vigil/internal/retention"
	"github.com/vigil-pam/vigil/internal/rules"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/siem"
	"github.com/vigil-pam/vigil/internal/store"
	"github.com/vigil-pam/vigil/internal/token"
	"github.com/vigil-pam/vigil/internal/vault"
	"golang.org/x/crypto/ssh"
)

// Timing of the server's housekeeping.
const (
	// shutdownGrace is how long in-flight requests get on SIGINT/SIGTERM.
	shutdownGrace = 10 * time.Second
	// housekeepingEvery paces revocation pruning, key rotation checks and
	// admin token renewal.
	housekeepingEvery = time.Minute
	// adminTokenFile is the admin token's file name in the data directory.
	adminTokenFile = "admin.token"
	// adminSubject is the subject of the bootstrap admin token.
	adminSubject = "admin"
)

func newServeCmd() *cobra.Command {
	var configPath string
	var flagCfg config.Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Vigil server",
		Long: `Run the Vigil server. With no flags it starts on the embedded default:
data in ./vigil-data (SQLite vigil.db, signing keys, admin.token, recordings/),
SSH gateway on 127.0.0.1:2222, HTTP API on 127.0.0.1:8080. On first start it creates the signing keys and prints a
bootstrap admin token, also written to ./vigil-data/admin.token (mode 0600).

Settings come from, in order of precedence: flags, VIGIL_<FLAG> environment
variables (VIGIL_DATA, VIGIL_HTTP_ADDR, VIGIL_SSH_ADDR, …), the YAML file given by --config,
and the defaults. The master key that encrypts secrets at rest comes from
VIGIL_MASTER_KEY (32 bytes, hex or base64) or DATA/master.key (created on
first start, mode 0600).

SIGINT or SIGTERM shuts down gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			for name, dst := range map[string]*string{"data": &cfg.Data, "http-addr": &cfg.HTTPAddr, "ssh-addr": &cfg.SSHAddr, "pg-addr": &cfg.PGAddr,
				"store": &cfg.Store, "recordings": &cfg.Recordings, "log-level": &cfg.LogLevel} {
				if fs.Changed(name) {
					*dst, _ = fs.GetString(name)
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := retention.Validate(cfg.Retention); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if addr := os.Getenv("VIGIL_PPROF_ADDR"); addr != "" {
				// For performance work: net/http/pprof, loopback only.
				if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
					return fmt.Errorf("VIGIL_PPROF_ADDR %q: must be a loopback HOST:PORT", addr)
				}
				go http.ListenAndServe(addr, pprofMux())
			}
			if path := os.Getenv("VIGIL_CPUPROFILE"); path != "" {
				// For performance work: a CPU profile of this run, written
				// at shutdown (go tool pprof).
				f, err := os.Create(path)
				if err != nil {
					return fmt.Errorf("VIGIL_CPUPROFILE: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("VIGIL_CPUPROFILE: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			return serve(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	d := config.Default()
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration file")
	cmd.Flags().StringVar(&flagCfg.Data, "data", d.Data, "data directory")
	cmd.Flags().StringVar(&flagCfg.HTTPAddr, "http-addr", d.HTTPAddr, "HTTP API listen address")
	cmd.Flags().StringVar(&flagCfg.SSHAddr, "ssh-addr", d.SSHAddr, "SSH gateway listen address")
	cmd.Flags().StringVar(&flagCfg.PGAddr, "pg-addr", d.PGAddr, "PostgreSQL gateway listen address")
	cmd.Flags().StringVar(&flagCfg.Store, "store", "", "state database URL (default sqlite://DATA/vigil.db)")
	cmd.Flags().StringVar(&flagCfg.Recordings, "recordings", "", "recording store: file://DIR (default file://DATA/recordings)")
	cmd.Flags().StringVar(&flagCfg.LogLevel, "log-level", d.LogLevel, "log level: debug, info, warn, error")
	return cmd
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// prepareDir creates a directory (0700) and proves it is a writable
// directory, so a permission problem is one clear error at start rather
// than a failure later. what names it in errors.
func prepareDir(dir, what string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s: not a directory", what, dir)
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return fmt.Errorf("%s %s is not writable: %w", what, dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) (err error) {
	log := newLogger(stderr, cfg.LogLevel)
	if err := prepareDir(cfg.Data, "data directory"); err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.StoreURL())
	if err != nil {
		return err
	}
	defer db.Close()
	mk, err := masterkey.Load(os.Getenv(masterkey.EnvVar), cfg.Data)
	if err != nil {
		return err
	}
	if err := checkMasterKey(ctx, db, mk); err != nil {
		return err
	}
	auditKey, auditKeyCreated, err := audit.OpenSigningKey(ctx, db, mk, time.Now())
	if err != nil {
		return err
	}
	auditLog, err := audit.OpenWith(ctx, db, audit.Options{Key: auditKey, CheckpointEvery: cfg.Audit.CheckpointEvery, Logger: log})
	if err != nil {
		return err
	}
	auditKeys, err := audit.TrustedKeys(ctx, db, mk)
	if err != nil {
		return err
	}
	defer auditLog.Close()
	if auditKeyCreated {
		if err := auditLog.Append(ctx, audit.Event{Type: "audit.key_create", Actor: "vigil", Target: auditKey.KID,
			Data: map[string]any{"kid": auditKey.KID, "alg": "Ed25519", "public_key": base64.StdEncoding.EncodeToString(auditKey.Public())}}); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	recorder := token.NewRecorder(auditLog, reg, log)

	kr, created, err := token.OpenKeyring(ctx, db, mk, token.KeyringConfig{Algorithm: cfg.Token.Algorithm, MaxTTL: cfg.Token.MaxTTL})
	if err != nil {
		return err
	}
	if created {
		if err := auditLog.Append(ctx, audit.Event{Type: "key.create", Actor: "vigil", Target: kr.List()[0].KID, Data: map[string]any{"alg": cfg.Token.Algorithm}}); err != nil {
			return err
		}
	}
	revs, err := token.OpenRevocations(ctx, db, nil)
	if err != nil {
		return err
	}
	var remotes []*token.RemoteIssuer
	for _, ic := range cfg.Issuers {
		ri, err := token.NewRemoteIssuer(ic, nil, nil, recorder.Fetched)
		if err != nil {
			return err
		}
		// A key file that cannot be read is a configuration error; an IdP
		// that is down must not keep Vigil (and break-glass) from starting.
		if err := ri.Refresh(ctx, true); err != nil && ic.JWKSFile != "" {
			return err
		}
		remotes = append(remotes, ri)
	}
	cacheSize := cfg.Token.VerifyCache
	switch {
	case cacheSize == 0:
		cacheSize = 4096
	case cacheSize < 0:
		cacheSize = 0
	}
	alerts, err := alert.NewStore(db, nil, 0, reg)
	if err != nil {
		return err
	}
	// Every verification is recorded (fail closed), then handed to the
	// monitor (never fails, never waits).
	monCfg := cfg.Monitor
	if monCfg.KeyAge.MaxAge == 0 && cfg.Token.RotateEvery > 0 {
		monCfg.KeyAge.MaxAge = cfg.Token.RotateEvery + 24*time.Hour
	}
	if _, set := monCfg.Lifetime.ByIssuer[cfg.Token.Issuer]; !set && cfg.Token.MaxTTL > monCfg.Lifetime.MaxLifetime {
		// Vigil's own tokens may live token.max_ttl (the admin token
		// does): that is policy, not a finding.
		monCfg.Lifetime.ByIssuer = maps.Clone(monCfg.Lifetime.ByIssuer)
		if monCfg.Lifetime.ByIssuer == nil {
			monCfg.Lifetime.ByIssuer = map[string]time.Duration{}
		}
		monCfg.Lifetime.ByIssuer[cfg.Token.Issuer] = cfg.Token.MaxTTL
	}
	mon, err := monitor.New(monCfg, monitor.Audited(alerts, auditLog), log, reg, time.Now)
	if err != nil {
		return err
	}
	verifier, err := token.NewVerifier(token.VerifierConfig{
		Issuer: cfg.Token.Issuer, Audience: cfg.Token.Audience, MaxTTL: cfg.Token.MaxTTL,
		Keyring: kr, Revocations: revs, Issuers: remotes, Observe: token.Observers(recorder.Verified, mon.Observe), CacheSize: cacheSize,
		Leeway: &cfg.Token.ClockSkew,
	})
	if err != nil {
		return err
	}
	signer := token.NewSigner(kr, token.IssuerSettings{Issuer: cfg.Token.Issuer, Audience: cfg.Token.Audience,
		DefaultTTL: cfg.Token.DefaultTTL, MaxTTL: cfg.Token.MaxTTL})
	admTok := &adminToken{path: filepath.Join(cfg.Data, adminTokenFile), signer: signer, v: verifier, sink: auditLog, log: log}
	if err := admTok.ensure(ctx, created, stdout); err != nil {
		return err
	}

	grants := policy.NewGrants(db, nil)
	vlt := vault.New(db, mk, nil)
	sessions := session.NewStore(db)
	interrupted, err := sessions.MarkInterrupted(ctx, time.Now())
	if err != nil {
		return err
	}
	for _, id := range interrupted {
		if err := auditLog.Append(ctx, audit.Event{Type: "session.interrupted", Actor: "vigil", Session: id,
			Data: map[string]any{"reason": "vigil stopped while the session was active"}}); err != nil {
			return err
		}
	}
	recDir, err := cfg.RecordingsDir()
	if err != nil {
		return err
	}
	if err := prepareDir(recDir, "recordings directory"); err != nil {
		return err
	}
	recKeys, recKeyCreated, err := recording.LoadKeys(cfg.Encryption, cfg.Data)
	if err != nil {
		return err
	}
	if recKeyCreated {
		log.Info("recordings key created", "file", filepath.Join(cfg.Data, recording.IdentityFileName), "recipient", recKeys.Recipients()[0])
	}
	log.Info("recordings encrypted at rest", "recipients", recKeys.Recipients(), "playback_here", recKeys.CanDecrypt())
	hostKey, err := sshgw.LoadOrCreateHostKey(ctx, db, mk)
	if err != nil {
		return err
	}
	locks := policy.NewLocks(db, nil)
	live := session.NewRegistry(nil)
	ruleEngine, err := rules.New(cfg.Rules.File)
	if err != nil {
		return err
	}
	if err := ruleEngine.ValidateSpecs(cfg.Rules.Packs); err != nil {
		return fmt.Errorf("config: rules.packs: %w", err)
	}
	sinks, err := webhookSinks(cfg.Alerts.Webhooks)
	if err != nil {
		return err
	}
	dispatcher, err := alert.NewDispatcher(alerts, sinks, log, reg)
	if err != nil {
		return err
	}
	forwardSinks, err := siem.Build(cfg.Audit.Forward, os.Getenv)
	if err != nil {
		return err
	}
	forwarder, err := siem.NewForwarder(db, auditLog, forwardSinks, log, reg)
	if err != nil {
		return err
	}
	// One bound for both gateways: a flood split between them counts once.
	unauthenticated := gateway.NewThrottle(auditLog, gateway.ThrottleOptions{
		PerSource: cfg.Audit.UnauthenticatedPerSource, Total: cfg.Audit.UnauthenticatedTotal})
	gw, err := sshgw.New(sshgw.Config{HostKey: hostKey, Verifier: verifier, Vault: vlt, Grants: grants, Locks: locks, Sessions: sessions, Live: live,
		Rules: ruleEngine, DefaultRulePacks: cfg.Rules.Packs, Alerts: alerts, EnforceOnBreakGlass: cfg.BreakGlass.Rules == config.BreakGlassEnforce,
		Audit: auditLog, Unauthenticated: unauthenticated, RecordingsDir: recDir, RecordingKeys: recKeys, Log: log, HandshakeTimeout: cfg.SSH.HandshakeTimeout,
		IdleTimeout: cfg.SSH.IdleTimeout, Keepalive: cfg.SSH.Keepalive,
		ExpiryWarning: cfg.SSH.ExpiryWarning, EnvAllow: cfg.SSH.EnvAllow, Ciphers: cfg.SSH.Ciphers})
	if err != nil {
		return err
	}
	pgCert, err := pggw.LoadOrCreateCertificate(ctx, db, mk, cfg.PG.TLSCert, cfg.PG.TLSKey, cfg.PG.TLSHosts)
	if err != nil {
		return err
	}
	masker, err := masking.New(cfg.PG.Masking)
	if err != nil {
		return fmt.Errorf("config: pg.masking: %w", err)
	}
	queryLog := querylog.NewWriter(db, querylog.WriterOptions{Log: log, Registerer: reg})
	pgw, err := pggw.New(pggw.Config{Certificate: pgCert, AllowPlaintextLoopback: cfg.PG.AllowPlaintextLoopback,
		Verifier: verifier, Vault: vlt, Grants: grants, Locks: locks, Sessions: sessions, Live: live,
		Rules: ruleEngine, DefaultRulePacks: pgRulePacks(cfg.Rules.Packs), Alerts: alerts, EnforceOnBreakGlass: cfg.BreakGlass.Rules == config.BreakGlassEnforce,
		Masking: masker, QueryLog: queryLog, Audit: auditLog, Unauthenticated: unauthenticated, RecordingsDir: recDir, RecordingKeys: recKeys, Log: log,
		StartupTimeout: cfg.PG.StartupTimeout, IdleTimeout: cfg.PG.IdleTimeout, ExpiryWarning: cfg.PG.ExpiryWarning,
		MaxMessage: cfg.PG.MaxMessage, RecordRows: cfg.PG.RecordRows})
	if err != nil {
		return err
	}
	srv := &api.Server{Verifier: verifier, Signer: signer, Keyring: kr, Revocations: revs, Grants: grants, Vault: vlt,
		Sessions: sessions, Locks: locks, Live: live, Audit: auditLog, RecordingsDir: recDir, ArchiveDir: filepath.Join(cfg.Data, "audit-archive"), AuditKeys: auditKeys, RecordingKeys: recKeys, Alerts: alerts, Rules: ruleEngine, DefaultRulePacks: cfg.Rules.Packs, Issuer: cfg.Token.Issuer, Gatherer: reg, Log: log, Now: time.Now}
	// Retention deletes expired recordings; its configuration is
	// validated here, before anything listens.
	sweeper, err := retention.New(retention.Config{Policy: cfg.Retention, DB: db, Targets: vlt, Audit: auditLog,
		RecordingsDir: recDir, Log: log, Registerer: reg})
	if err != nil {
		return err
	}
	srv.Retention = sweeper
	srv.Reports = report.New(db, time.Now)
	srv.Queries = queryLog
	// Break-glass needs nothing outside Vigil: its own keys, store and
	// audit log.
	breakGlass, err := breakglass.New(breakglass.Config{DB: db, Signer: signer, Targets: vlt, Audit: auditLog, Alerts: alerts,
		Revocations: revs, Live: live, Issuer: cfg.Token.Issuer, MaxFailures: cfg.BreakGlass.MaxFailures,
		Lockout: cfg.BreakGlass.Lockout, Log: log})
	if err != nil {
		return err
	}
	srv.BreakGlass = breakGlass
	sshLn, err := net.Listen("tcp", cfg.SSHAddr)
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	defer sshLn.Close()
	pgLn, err := net.Listen("tcp", cfg.PGAddr)
	if err != nil {
		return fmt.Errorf("pg: %w", err)
	}
	defer pgLn.Close()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer ln.Close()
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := auditLog.Append(ctx, audit.Event{Type: "vigil.start", Actor: "vigil", Data: map[string]any{
		"http_addr": ln.Addr().String(), "ssh_addr": sshLn.Addr().String(), "pg_addr": pgLn.Addr().String(), "store": strings.SplitN(cfg.StoreURL(), "://", 2)[0],
		"issuers": len(remotes), "ssh_host_key": ssh.FingerprintSHA256(hostKey.PublicKey())}}); err != nil {
		return err
	}
	log.Info("vigil serving", "http", ln.Addr().String(), "ssh", sshLn.Addr().String(), "pg", pgLn.Addr().String(), "data", cfg.Data,
		"kid", kr.List()[0].KID, "ssh_host_key", ssh.FingerprintSHA256(hostKey.PublicKey()))

	bg, cancelBG := context.WithCancel(ctx)
	defer cancelBG()
	for _, ri := range remotes {
		go ri.Run(bg)
	}
	go housekeeping(bg, cfg, kr, revs, admTok, auditLog, mon, log)
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		mon.Run(bg)
	}()
	go func() {
		n, err := mon.LearnBaseline(bg, db)
		if err != nil {
			log.Warn("monitor: usual hours not learned from the audit log", "err", err)
			return
		}
		log.Info("monitor: usual hours learned", "session_starts", n)
	}()
	go dispatcher.Run(bg)
	forwarderDone := make(chan struct{})
	go func() {
		defer close(forwarderDone)
		forwarder.Run(bg)
	}()
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		sweeper.Run(bg)
	}()
	go breakGlass.Run(bg)
	// Counts of suppressed events go on until the gateways stop.
	throttleCtx, stopThrottle := context.WithCancel(context.WithoutCancel(ctx))
	throttleDone := make(chan struct{})
	go func() {
		defer close(throttleDone)
		unauthenticated.Run(throttleCtx, func(err error) { log.Error("audit: suppressed events not counted", "err", err) })
	}()

	serveErr := make(chan error, 3)
	go func() { serveErr <- fmt.Errorf("http: %w", httpSrv.Serve(ln)) }()
	gwCtx, stopGW := context.WithCancelCause(context.WithoutCancel(ctx))
	gwDone := make(chan struct{})
	go func() {
		defer close(gwDone)
		if err := gw.Serve(gwCtx, sshLn); err != nil {
			serveErr <- err
		}
	}()
	pgDone := make(chan struct{})
	go func() {
		defer close(pgDone)
		if err := pgw.Serve(gwCtx, pgLn); err != nil {
			serveErr <- err
		}
	}()
	var runErr error
	select {
	case runErr = <-serveErr:
	case <-ctx.Done():
	}
	log.Info("shutting down")
	cancelBG()
	// The monitor reports what it has counted (alerts and their audit
	// events) before the audit log and the database close.
	<-monitorDone
	// The forwarder stores its last cursor before the database closes.
	<-forwarderDone
	// A disposal in progress finishes (its outcome event written) first.
	<-sweeperDone
	// Live SSH sessions end with a message, and their recordings and end
	// events are written, before the audit log closes.
	stopGW(errors.New("vigil is shutting down"))
	<-gwDone
	<-pgDone
	stopThrottle()
	<-throttleDone
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	// Every statement of the ended database sessions is stored.
	if err := queryLog.Close(sctx); err != nil {
		log.Error("statement log not flushed", "err", err)
	}
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := auditLog.Append(sctx, audit.Event{Type: "vigil.stop", Actor: "vigil"}); err != nil {
		log.Error("audit append failed", "type", "vigil.stop", "err", err)
	}
	return runErr
}

// pgRulePacks are the default rule packs of database targets: the
// configured defaults, always with the database pack (DROP, TRUNCATE,
// DELETE and UPDATE without WHERE, ...) unless they name it with an
// action of their own. A target that names its packs gets only those.
func pgRulePacks(packs []string) []string {
	for _, p := range packs {
		if name, _, _ := strings.Cut(p, "="); name == rules.PackDatabase {
			return packs
		}
	}
	return append(append([]string(nil), packs...), rules.PackDatabase)
}

// webhookSinks builds the configured webhook sinks; each secret comes from
// the environment variable the configuration names.
func webhookSinks(cfgs []config.Webhook) ([]alert.Sink, error) {
	var sinks []alert.Sink
	for i, wc := range cfgs {
		name := wc.Name
		if name == "" {
			name = fmt.Sprintf("webhook-%d", i+1)
		}
		if wc.SecretEnv == "" {
			return nil, fmt.Errorf("config: alerts.webhooks[%d]: secret_env is required (webhooks are always signed)", i)
		}
		secret := os.Getenv(wc.SecretEnv)
		if secret == "" {
			return nil, fmt.Errorf("config: alerts.webhooks[%d]: environment variable %s is empty", i, wc.SecretEnv)
		}
		var min alert.Severity
		if wc.MinSeverity != "" {
			sev, err := alert.ParseSeverity(wc.MinSeverity)
			if err != nil {
				return nil, fmt.Errorf("config: alerts.webhooks[%d]: %w", i, err)
			}
			min = sev
		}
		sinks = append(sinks, &alert.Webhook{SinkName: name, URL: wc.URL, Secret: []byte(secret), Min: min})
	}
	return sinks, nil
}

// checkMasterKey proves mk is the key this store's secrets were sealed
// with, using a check value sealed on first start, so a wrong key is one
// clear error rather than a failure deep inside some component.
func checkMasterKey(ctx context.Context, db *store.DB, mk *masterkey.Key) error {
	const name, plain = "master_key_check", "vigil master key check v1"
	v, ok, err := db.Meta(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return db.SetMetaOnce(ctx, name, base64.StdEncoding.EncodeToString(mk.Seal([]byte(plain), []byte(name))))
	}
	sealed, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return fmt.Errorf("store: master key check value is corrupt: %w", err)
	}
	got, err := mk.Open(sealed, []byte(name))
	if err != nil || string(got) != plain {
		return fmt.Errorf("master key from %s does not match the one this data was sealed with; set the right VIGIL_MASTER_KEY or restore %s", mk.Source, masterkey.FileName)
	}
	return nil
}

// adminToken keeps DATA/admin.token holding a valid admin token. On first
// start the token is also printed (the only time). Afterwards it is renewed
// when missing, invalid or past half its life: whoever can read the data
// directory can read the master key too, so the file adds no exposure, and
// the CLI on this machine keeps working.
type adminToken struct {
	path   string
	signer *token.Signer
	v      *token.Verifier
	sink   audit.Sink
	log    *slog.Logger
	// exp is the expiry of the token in the file, known from the check at
	// start or from writing it; only the housekeeping goroutine touches it
	// after start.
	exp time.Time
}

// ensure runs at start: it verifies the file (once, an audited
// verification) and writes a new token when needed.
func (a *adminToken) ensure(ctx context.Context, firstStart bool, stdout io.Writer) error {
	if !firstStart {
		if b, err := os.ReadFile(a.path); err == nil {
			id, err := a.v.Verify(ctx, strings.TrimSpace(string(b)), netip.MustParseAddr("127.0.0.1"))
			if err == nil && id.Admin {
				a.exp = id.Claims.ExpiresAt.Time
			}
		}
	}
	if !a.due() {
		return nil
	}
	return a.renew(ctx, firstStart, stdout)
}

// due reports whether the file's token is past half its life.
func (a *adminToken) due() bool { return time.Until(a.exp) <= a.signer.MaxTTL()/2 }

func (a *adminToken) renew(ctx context.Context, firstStart bool, stdout io.Writer) error {
	raw, claims, err := a.signer.Issue(token.Request{Subject: adminSubject, Roles: []string{token.RoleAdmin}, TTL: a.signer.MaxTTL()})
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := a.sink.Append(ctx, audit.Event{Type: "token.issue", Actor: "vigil", Target: adminSubject, Data: map[string]any{
		"jti": claims.ID, "sub": adminSubject, "roles": claims.Roles, "exp": claims.ExpiresAt.Unix(), "bootstrap": firstStart, "file": a.path}}); err != nil {
		return err
	}
	if err := writeFileAtomic(a.path, []byte(raw+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	a.exp = claims.ExpiresAt.Time
	if firstStart {
		fmt.Fprintf(stdout, "Bootstrap admin token (valid until %s, also in %s):\n\n%s\n\n",
			claims.ExpiresAt.UTC().Format(time.RFC3339), a.path, raw)
	} else {
		a.log.Info("admin token renewed", "file", a.path, "jti", claims.ID)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// housekeeping prunes revocations, rotates the signing key when due and
// renews the admin token, until ctx ends.
func housekeeping(ctx context.Context, cfg config.Config, kr *token.Keyring, revs *token.Revocations, admTok *adminToken,
	sink audit.Sink, mon *monitor.Monitor, log *slog.Logger) {
	t := time.NewTicker(housekeepingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := revs.Prune(ctx); err != nil {
			log.Warn("prune revocations", "err", err)
		}
		if info, rotated, err := kr.RotateIfOlder(ctx, cfg.Token.RotateEvery); err != nil {
			log.Error("automatic key rotation failed", "err", err)
		} else if rotated {
			log.Info("signing key rotated", "kid", info.KID)
			if err := sink.Append(ctx, audit.Event{Type: "key.rotate", Actor: "vigil", Target: info.KID, Data: map[string]any{"kid": info.KID, "alg": info.Alg, "automatic": true}}); err != nil {
				log.Error("audit append failed", "type", "key.rotate", "err", err)
			}
		}
		// After any rotation: warns when the active key outlives the policy.
		if err := mon.KeyAge(ctx, kr.List()); err != nil {
			log.Warn("signing key age check", "err", err)
		}
		if admTok.due() {
			if err := admTok.renew(ctx, false, io.Discard); err != nil {
				log.Error("admin token renewal failed", "err", err)
			}
		}
	}
}

// pprofMux serves net/http/pprof's handlers (never on the API's mux).
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", httppprof.Index)
	m.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	return m
}
