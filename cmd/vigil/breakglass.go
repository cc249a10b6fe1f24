package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/breakglass"
)

// Where the break-glass command reads its secrets when stdin is not used.
const (
	envBreakGlassSecret  = "VIGIL_BREAKGLASS_SECRET"
	envBreakGlassSecret2 = "VIGIL_BREAKGLASS_SECRET_2"
	// maxSecretInput bounds what is read from stdin for the secrets.
	maxSecretInput = 4 << 10
)

func newBreakGlassCmd() *cobra.Command {
	var in api.BreakGlassRequest
	var ttl time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "breakglass --name NAME --target T --as PERSON --reason TEXT [--ttl 30m]",
		Short: "Emergency access when the identity provider or the approvers are unreachable",
		Long: `Exchange a break-glass account's secret for a short-lived token on one of its
targets, with no identity provider and no approver: only Vigil's own keys.
The token is printed on stdout; use it like any Vigil token (vigil ssh, or
the password of ssh LOGIN@TARGET@HOST). It grants the target's configured
login with shell, exec and sftp (query on a PostgreSQL target), never port
forwarding, for --ttl (default 30m, at most the account's maximum).

No VIGIL_TOKEN is needed: the secret is the credential. It is read from
VIGIL_BREAKGLASS_SECRET (and VIGIL_BREAKGLASS_SECRET_2 for the second holder
under the two-person rule), else from stdin, one secret per line.

Break-glass access is loud: the use is audited and raises a critical alert
to every alert sink before the token is printed; its sessions are recorded
and flagged, rules on them only alert by default (breakglass.rules), the
token is revoked when its TTL ends (live sessions are warned, then ended),
and the use stays an unacknowledged alert and UNREVIEWED in "vigil report
breakglass" until someone other than PERSON reviews it (vigil breakglass
review JTI --note TEXT).

A secret works once: afterwards the account is spent until an admin re-arms
it (vigil breakglass init --name NAME --rearm). Wrong secrets are rate-limited
and, after breakglass.max_failures in a row, lock the account for
breakglass.lockout; each one is audited and alerted.`,
		Example: `  VIGIL_BREAKGLASS_SECRET=ABCD-EFGH-... vigil breakglass --name ops --target web1 \
      --as carol --reason "INC-4711: IdP down, orders DB full" --ttl 30m
  printf '%s\n%s\n' "$SECRET_ALICE" "$SECRET_BOB" | vigil breakglass --name ops-2p --target db1 --as alice --reason "INC-4712"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case output != "token" && output != "json":
				return fmt.Errorf("output %q: want token or json", output)
			case in.Account == "":
				return errors.New("--name (the break-glass account) is required")
			case in.Target == "":
				return errors.New("--target is required")
			case in.User == "":
				return errors.New("--as is required: the person using the account")
			case strings.TrimSpace(in.Reason) == "":
				return errors.New("--reason is required: say why this emergency needs access")
			}
			if ttl != 0 {
				in.TTL = ttl.String()
			}
			secrets, err := readSecrets(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			in.Secrets = secrets
			var raw json.RawMessage
			if err := postUnauthenticated(cmd.Context(), "/api/v1/breakglass", in, &raw); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			var resp api.BreakGlassResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "BREAK-GLASS token for %s on %s as %s until %s (jti %s).\n"+
				"This use has been alerted; it is recorded and will be reviewed.\n",
				resp.Claims.Subject, resp.Target, resp.Login, fmtTime(resp.ExpiresAt), resp.JTI)
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&in.Account, "name", "", "the break-glass account")
	cmd.Flags().StringVar(&in.Target, "target", "", "the target to reach (one of the account's)")
	cmd.Flags().StringVar(&in.User, "as", "", "who you are: the token's user, whose use someone else reviews")
	cmd.Flags().StringVar(&in.Reason, "reason", "", "why the emergency needs this access (mandatory; audited and alerted)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 30m; at most the account's maximum)")
	cmd.Flags().StringVarP(&output, "output", "o", "token", "output: token or json")
	cmd.AddCommand(newBreakGlassInitCmd(), newBreakGlassReviewCmd(), newBreakGlassLsCmd(), newBreakGlassUsesCmd(),
		newRemoveCmd("break-glass account (its secrets stop working; its uses stay on record)", "/api/v1/breakglass/accounts/"))
	return cmd
}

// readSecrets takes the secrets from the environment, else from stdin (one
// per line; on a terminal, with prompts on stderr).
func readSecrets(stdin io.Reader, stderr io.Writer) ([]string, error) {
	if s := strings.TrimSpace(os.Getenv(envBreakGlassSecret)); s != "" {
		secrets := []string{s}
		if s2 := strings.TrimSpace(os.Getenv(envBreakGlassSecret2)); s2 != "" {
			secrets = append(secrets, s2)
		}
		return secrets, nil
	}
	tty := false
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	sc := bufio.NewScanner(io.LimitReader(stdin, maxSecretInput))
	var secrets []string
	prompts := []string{"Break-glass secret: ", "Second secret (two-person rule; Enter if none): "}
	for len(secrets) < len(prompts) {
		if tty {
			fmt.Fprint(stderr, prompts[len(secrets)])
		}
		if !sc.Scan() {
			break
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			if tty && len(secrets) > 0 {
				break
			}
			continue
		}
		secrets = append(secrets, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the secret: %w", err)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no secret: set %s or pass it on stdin", envBreakGlassSecret)
	}
	return secrets, nil
}

// postUnauthenticated POSTs in to the API without a bearer token and
// decodes the answer into out.
func postUnauthenticated(ctx context.Context, path string, in, out any) error {
	addr := strings.TrimRight(os.Getenv("VIGIL_ADDR"), "/")
	if addr == "" {
		addr = "http://127.0.0.1:8080"
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: clientTimeout}).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach vigil at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		return apiError(resp.StatusCode, body, path)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = body
		return nil
	}
	return json.Unmarshal(body, out)
}

func newBreakGlassInitCmd() *cobra.Command {
	var in api.BreakGlassInitRequest
	var maxTTL time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "init --name NAME --targets T1,T2 [--max-ttl 1h] [--two-person] | init --name NAME --rearm",
		Short: "Create a break-glass account, or re-arm one, and print its secret(s) once",
		Long: `Create a break-glass account covering --targets and print its secret: 160
random bits in 8 groups of 4 characters, shown this once and stored only as
an Argon2id hash. With --two-person, two secrets are printed, for two people:
both are needed.

A secret works once. After a use (or to replace secrets that may have
leaked), --rearm prints new secrets and lifts any lockout; --targets,
--max-ttl and --two-person then change the account if given. Arming is
audited.`,
		Example: `  vigil breakglass init --name ops --targets web1,web2 --max-ttl 1h
  vigil breakglass init --name dba --targets db1 --two-person
  vigil breakglass init --name ops --rearm`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("output %q: want text or json", output)
			}
			if in.Name == "" {
				return errors.New("--name is required")
			}
			if !in.Rearm && len(in.Targets) == 0 {
				return errors.New("--targets is required for a new account")
			}
			if maxTTL != 0 {
				in.MaxTTL = maxTTL.String()
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.call(cmd.Context(), "POST", "/api/v1/breakglass/accounts", in, &raw); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			var armed breakglass.Armed
			if err := json.Unmarshal(raw, &armed); err != nil {
				return fmt.Errorf("decode response: %w", err)
			}
			a, w := armed.Account, cmd.OutOrStdout()
			verb := "created"
			if in.Rearm {
				verb = "re-armed"
			}
			fmt.Fprintf(w, "Break-glass account %s %s (generation %d): targets %s; tokens up to %s.\n",
				a.Name, verb, a.Generation, strings.Join(a.Targets, ", "), a.MaxTTL)
			fmt.Fprintln(w, "Shown this once; Vigil keeps only Argon2id hashes. Each works once, then the account must be re-armed.")
			for i, s := range armed.Secrets {
				label := "Secret"
				if len(armed.Secrets) > 1 {
					label = fmt.Sprintf("Secret %d of %d (holder %d; both are needed)", i+1, len(armed.Secrets), i+1)
				}
				fmt.Fprintf(w, "\n%s:\n\n    %s\n", label, s)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in.Name, "name", "", "account name")
	cmd.Flags().StringSliceVar(&in.Targets, "targets", nil, "targets the account covers (comma-separated)")
	cmd.Flags().DurationVar(&maxTTL, "max-ttl", 0, "longest token lifetime (default 1h)")
	cmd.Flags().BoolVar(&in.TwoPerson, "two-person", false, "two secrets for two people, both required")
	cmd.Flags().BoolVar(&in.Rearm, "rearm", false, "give an existing account new secrets (after a use, or if they leaked)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func newBreakGlassReviewCmd() *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   "review ID --note TEXT",
		Short: "Record the post-incident review of a break-glass use",
		Long: `Record the review of the break-glass use ID (its token's jti, as listed by
"vigil breakglass uses" and "vigil report breakglass"). The reviewer is the
caller, who must be an admin other than the use's user. The review is
audited and acknowledges the use's alert.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(note) == "" {
				return errors.New("--note is required: what was done and whether it was justified")
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var u breakglass.Use
			if err := c.call(cmd.Context(), "POST", "/api/v1/breakglass/uses/"+url.PathEscape(strings.TrimSpace(args[0]))+"/review",
				api.BreakGlassReviewRequest{Note: note}, &u); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reviewed %s (%s on %s, account %s) by %s\n", u.JTI, u.User, u.Target, u.Account, u.ReviewedBy)
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "the review's finding (mandatory)")
	return cmd
}

func newBreakGlassLsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Short: "List break-glass accounts", Args: cobra.NoArgs}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/breakglass/accounts", func(resp struct{ Accounts []breakglass.Account }) ([]string, [][]string) {
			var rows [][]string
			for _, a := range resp.Accounts {
				state := "armed"
				if !a.Armed {
					state = "spent"
				}
				rows = append(rows, []string{a.Name, strings.Join(a.Targets, ","), a.MaxTTL.String(), yesNo(a.TwoPerson), state,
					strconv.FormatInt(a.Generation, 10), strconv.Itoa(a.Failures), fmtTime(a.LockedUntil), fmtTime(a.UsedAt), a.UsedJTI})
			}
			return []string{"NAME", "TARGETS", "MAX TTL", "TWO-PERSON", "STATE", "GEN", "FAILURES", "LOCKED UNTIL", "USED AT", "USED JTI"}, rows
		})
	}
	return cmd
}

func newBreakGlassUsesCmd() *cobra.Command {
	var unreviewed bool
	var account string
	cmd := &cobra.Command{Use: "uses [--unreviewed] [--account NAME]", Short: "List break-glass uses, newest first", Args: cobra.NoArgs}
	out := outputFlag(cmd)
	cmd.Flags().BoolVar(&unreviewed, "unreviewed", false, "only uses not reviewed yet")
	cmd.Flags().StringVar(&account, "account", "", "only this account's uses")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		if unreviewed {
			q.Set("unreviewed", "true")
		}
		if account != "" {
			q.Set("account", account)
		}
		return list(cmd, *out, "/api/v1/breakglass/uses?"+q.Encode(), func(resp struct{ Uses []breakglass.Use }) ([]string, [][]string) {
			var rows [][]string
			for _, u := range resp.Uses {
				review := "UNREVIEWED"
				if u.Reviewed() {
					review = "by " + u.ReviewedBy + ": " + u.Note
				}
				rows = append(rows, []string{u.JTI, fmtTime(u.Time), u.User, u.Account, u.Target, u.TTL.String(), fmtTime(u.ExpiredAt), u.Reason, review})
			}
			return []string{"ID", "TIME", "USER", "ACCOUNT", "TARGET", "TTL", "REVOKED", "REASON", "REVIEW"}, rows
		})
	}
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
