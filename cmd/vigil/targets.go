package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/vault"
)

func newTargetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "target", Short: "Manage targets: servers and databases reached through Vigil"}
	var in api.TargetRequest
	var keyFile, passwordEnv, caFile string
	var labels []string
	add := &cobra.Command{
		Use:   "add NAME (--ssh HOST:PORT | --pg HOST:PORT --database DB) --login LOGIN (--key-file F | --password-env VAR)",
		Short: "Add a target with the credential Vigil logs in with",
		Long: `Add a target. The credential (an unencrypted private key file, or a password
read from the named environment variable) is sent to Vigil once, sealed under
the master key, and never shown again by any command or API.

The SSH host key is pinned now: give it with --host-key (an authorized_keys or
known_hosts line), or Vigil fetches the key the target presents and pins it
(trust on first use, recorded in the audit log). Every later connection
checks it.

A PostgreSQL target is reached over TLS: --tls require (the default without a
CA) encrypts, --tls verify-full (the default with --tls-ca) also checks the
server's certificate against --tls-ca (or the system roots) and its host name,
--tls disable connects in the clear. Users connect to Vigil with the target's
name as the database and its login as the user; see "vigil grant add".`,
		Example: `  vigil target add web1 --ssh 10.0.0.5:22 --login root --key-file ./web1_id_ed25519 --label env=prod
  DBPASS=... vigil target add db1 --pg 10.0.0.6:5432 --database app --login app --password-env DBPASS --tls-ca ./db-ca.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			switch {
			case keyFile != "" && passwordEnv != "":
				return errors.New("give --key-file or --password-env, not both")
			case keyFile != "":
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return fmt.Errorf("key file: %w", err)
				}
				in.Key = string(b)
			case passwordEnv != "":
				v, ok := os.LookupEnv(passwordEnv)
				if !ok || v == "" {
					return fmt.Errorf("environment variable %s is not set", passwordEnv)
				}
				in.Password = v
			default:
				return errors.New("give --key-file or --password-env")
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("tls CA file: %w", err)
				}
				in.TLSCA = string(b)
			}
			in.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want KEY=VALUE", l)
				}
				in.Labels[k] = v
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var t vault.Target
			if err := c.call(cmd.Context(), "POST", "/api/v1/targets", in, &t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s %s as %s)", t.Name, t.Kind, t.Addr, t.Login)
			if t.HostKeyFingerprint != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "; host key %s pinned", t.HostKeyFingerprint)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	add.Flags().StringVar(&in.SSH, "ssh", "", "SSH target HOST:PORT")
	add.Flags().StringVar(&in.PG, "pg", "", "PostgreSQL target HOST:PORT")
	add.Flags().StringVar(&in.Database, "database", "", "database name (pg)")
	add.Flags().StringVar(&in.Login, "login", "", "login Vigil uses on the target")
	add.Flags().StringVar(&keyFile, "key-file", "", "unencrypted private key file for the login")
	add.Flags().StringVar(&passwordEnv, "password-env", "", "environment variable holding the login's password")
	add.Flags().StringVar(&in.HostKey, "host-key", "", "SSH host key to pin (default: trust on first use)")
	add.Flags().StringVar(&in.TLS, "tls", "", "how Vigil reaches a pg target: disable, require, verify-full (default: verify-full with --tls-ca, else require)")
	add.Flags().StringVar(&caFile, "tls-ca", "", "PEM CA certificate a pg target's certificate is checked against")
	add.Flags().StringArrayVar(&labels, "label", nil, "label KEY=VALUE (repeatable)")
	add.Flags().BoolVar(&in.FailOpen, "fail-open", false, "let sessions continue unrecorded if their recording fails (default: end them)")
	add.Flags().StringSliceVar(&in.RulePacks, "rules", nil, "rule packs to enable, PACK or PACK=ACTION, comma separated (default: the server's rules.packs); see vigil rules ls")
	add.MarkFlagRequired("login")

	ls := &cobra.Command{Use: "ls", Short: "List targets", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/targets", func(resp struct{ Targets []vault.Target }) ([]string, [][]string) {
			var rows [][]string
			for _, t := range resp.Targets {
				var ls []string
				for k, v := range t.Labels {
					ls = append(ls, k+"="+v)
				}
				rows = append(rows, []string{t.Name, t.Kind, t.Addr, t.Login, t.Auth, orDash(t.HostKeyFingerprint), orDash(strings.Join(ls, ",")),
					orDash(strings.Join(t.RulePacks, ","))})
			}
			return []string{"NAME", "KIND", "ADDR", "LOGIN", "AUTH", "HOST KEY", "LABELS", "RULES"}, rows
		})
	}
	rm := newRemoveCmd("target and its credential", "/api/v1/targets/")
	setRules := &cobra.Command{
		Use:   "rules NAME [PACK[=ACTION],...]",
		Short: "Set the rule packs enabled on a target (none given: back to the server's default packs)",
		Long: `Set the real-time rule packs enabled on a target, replacing the ones it had.
A pack spec is a pack name (vigil rules ls), optionally with =ACTION to
override the action of every rule of the pack (alert, pause, block or
terminate). Sessions that start from now on use them.`,
		Example: `  vigil target rules web1 os-sensitive,credential-access,lateral-movement=pause
  vigil target rules web1          # back to the default packs`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			in := api.TargetRulesRequest{Packs: []string{}}
			if len(args) == 2 {
				in.Packs = strings.Split(args[1], ",")
			}
			var t vault.Target
			if err := c.call(cmd.Context(), "PUT", "/api/v1/targets/"+url.PathEscape(args[0])+"/rules", in, &t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: rules %s\n", t.Name, orDash(strings.Join(t.RulePacks, ",")))
			return nil
		},
	}
	cmd.AddCommand(add, ls, rm, setRules)
	return cmd
}

func newSessionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "List, watch, pause, resume and terminate sessions"}
	var active bool
	ls := &cobra.Command{Use: "ls", Short: "List sessions, newest first", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.Flags().BoolVar(&active, "active", false, "only live sessions")
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		path := "/api/v1/sessions"
		if active {
			path += "?state=active"
		}
		return list(cmd, *out, path, func(resp struct{ Sessions []api.SessionView }) ([]string, [][]string) {
			var rows [][]string
			for _, s := range resp.Sessions {
				dur := "-"
				if !s.EndedAt.IsZero() {
					dur = s.EndedAt.Sub(s.StartedAt).Round(time.Second).String()
				}
				state := s.State
				if s.Live != nil && s.Live.Paused {
					state += " (paused by " + s.Live.PausedBy + ")"
				}
				rows = append(rows, []string{s.ID, s.User, s.Login + "@" + s.Target, s.Source, fmtTime(s.StartedAt), dur, state,
					fmt.Sprint(s.ExitStatus), fmt.Sprint(s.BytesUp), fmt.Sprint(s.BytesDown), orDash(s.EndReason)})
			}
			return []string{"ID", "USER", "LOGIN@TARGET", "SOURCE", "STARTED", "DURATION", "STATE", "EXIT", "BYTES UP", "BYTES DOWN", "END"}, rows
		})
	}
	cmd.AddCommand(ls, newWatchCmd(),
		newControlCmd("pause", "Pause a live session: nothing flows either way until it is resumed; its user sees why", true),
		newControlCmd("resume", "Resume a paused session", false),
		newControlCmd("terminate", "End a live session; its user sees why", true))
	return cmd
}

// newControlCmd is `sessions ACTION ID [--reason TEXT]`.
func newControlCmd(action, short string, reason bool) *cobra.Command {
	use := action + " ID"
	if reason {
		use += " [--reason TEXT]"
	}
	var in api.ControlRequest
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			var resp api.ControlResponse
			if err := c.call(cmd.Context(), "POST", "/api/v1/sessions/"+url.PathEscape(args[0])+"/"+action, in, &resp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", resp.Session, action)
			return nil
		},
	}
	if reason {
		cmd.Flags().StringVar(&in.Reason, "reason", "", "why (shown to the session's user and kept in the audit log)")
	}
	return cmd
}

func newWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Watch a live session in this terminal: from its beginning, then live (Ctrl-C stops watching)",
		Long: `Watch a live session: its output so far is replayed at once, then what it
prints from now on appears as it happens. Vigil's notes (commands started,
pauses, the end) are printed as [vigil] lines on stderr. Watching is read-only
and audited.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.send(ctx, &http.Client{}, "GET", "/api/v1/sessions/"+url.PathEscape(args[0])+"/live", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			err = recording.Follow(ctx, resp.Body, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if ctx.Err() != nil {
				return nil // the admin stopped watching
			}
			return err
		},
	}
}

// fetchRecording downloads a session's recording as plain asciicast.
func fetchRecording(ctx context.Context, id string) (io.ReadCloser, error) {
	c, err := newClient()
	if err != nil {
		return nil, err
	}
	// Recordings can be large: no overall timeout, the context rules.
	resp, err := c.send(ctx, &http.Client{}, "GET", "/api/v1/sessions/"+url.PathEscape(id)+"/recording", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func newPlayCmd() *cobra.Command {
	var speed float64
	var maxIdle time.Duration
	cmd := &cobra.Command{
		Use:   "play ID [--speed N]",
		Short: "Play a session's recording in this terminal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if speed <= 0 {
				return errors.New("--speed must be positive")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			body, err := fetchRecording(ctx, args[0])
			if err != nil {
				return err
			}
			defer body.Close()
			return recording.Play(ctx, body, cmd.OutOrStdout(), speed, maxIdle)
		},
	}
	cmd.Flags().Float64Var(&speed, "speed", 1, "playback speed factor")
	cmd.Flags().DurationVar(&maxIdle, "max-idle", 2*time.Second, "longest pause between events (0: as recorded)")
	return cmd
}

func newRecordingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "recording", Short: "Export recordings"}
	var out string
	export := &cobra.Command{
		Use:   "export ID -o FILE.cast",
		Short: "Save a session's recording as an asciicast v2 file (plays in asciinema)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := fetchRecording(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer body.Close()
			w := cmd.OutOrStdout()
			if out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			if _, err := io.Copy(w, body); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			return nil
		},
	}
	export.Flags().StringVarP(&out, "output", "o", "", "file to write (- for stdout)")
	export.MarkFlagRequired("output")
	cmd.AddCommand(export, newRecordingDecryptCmd())
	return cmd
}

// askpassEnv marks a run of this binary as ssh's SSH_ASKPASS helper.
const askpassEnv = "VIGIL_ASKPASS"

func newSSHCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh [LOGIN@]TARGET [-- COMMAND...]",
		Short: "Open an SSH session to TARGET through Vigil with your token",
		Long: `Run the system's ssh client against Vigil's SSH gateway (VIGIL_SSH_ADDR,
default 127.0.0.1:2222), answering the password prompt with VIGIL_TOKEN (or the
admin token file) so the token never appears in a process list. Arguments
after -- are the remote command. The gateway's host key is pinned on first
use in $XDG_CONFIG_HOME/vigil/known_hosts.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			addr := os.Getenv("VIGIL_SSH_ADDR")
			if addr == "" {
				addr = "127.0.0.1:2222"
			}
			host, port, ok := strings.Cut(addr, ":")
			if !ok {
				return fmt.Errorf("VIGIL_SSH_ADDR %q: want HOST:PORT", addr)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			// The gateway's host key is pinned on first use in Vigil's own
			// known_hosts file, and checked from then on.
			cfgDir, err := os.UserConfigDir()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(cfgDir, "vigil"), 0o700); err != nil {
				return err
			}
			sshArgs := []string{"-p", port, "-o", "PreferredAuthentications=keyboard-interactive,password",
				"-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
				"-o", "UserKnownHostsFile=" + filepath.Join(cfgDir, "vigil", "known_hosts"), "-o", "StrictHostKeyChecking=accept-new",
				args[0] + "@" + host}
			sshArgs = append(sshArgs, args[1:]...)
			ssh := exec.CommandContext(cmd.Context(), "ssh", sshArgs...)
			ssh.Stdin, ssh.Stdout, ssh.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			ssh.Env = append(os.Environ(), "SSH_ASKPASS="+self, "SSH_ASKPASS_REQUIRE=force", askpassEnv+"=1", "VIGIL_TOKEN="+c.token)
			err = ssh.Run()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				os.Exit(exit.ExitCode())
			}
			return err
		},
	}
	return cmd
}
