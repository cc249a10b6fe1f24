package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/token"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Issue, revoke and verify tokens"}
	cmd.AddCommand(newTokenIssueCmd(), newTokenRevokeCmd(), newTokenVerifyCmd())
	return cmd
}

// parseGrant parses TARGET:LOGIN:ACTION[,ACTION].
func parseGrant(s string) (token.Grant, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return token.Grant{}, fmt.Errorf("--grant %q: want TARGET:LOGIN:ACTION[,ACTION]", s)
	}
	g := token.Grant{Target: parts[0], Login: parts[1], Actions: strings.Split(parts[2], ",")}
	return g, g.Validate()
}

func newTokenIssueCmd() *cobra.Command {
	var user string
	var grants, src, roles []string
	var ttl time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "issue --user SUB [--grant TARGET:LOGIN:ACTION[,ACTION]]... [--ttl 15m]",
		Short: "Issue a token and print it",
		Long: `Issue a token and print it on stdout. An admin may issue any token up to the
maximum lifetime; anyone else only a token for themselves carrying grants
stored for them (vigil grant add), within those grants' limits.

Actions: shell, exec, sftp, forward, query; read-only qualifies query
(only statements that cannot write). A query grant asked of a stored grant
that is query,read-only is issued read-only.`,
		Example: `  vigil token issue --user alice --grant web1:root:shell,exec --ttl 30m
  TOKEN=$(vigil token issue --user alice --grant db1:app:query)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "token" && output != "json" {
				return fmt.Errorf("output %q: want token or json", output)
			}
			req := api.IssueRequest{Subject: user, Src: src, Roles: roles}
			for _, s := range grants {
				g, err := parseGrant(s)
				if err != nil {
					return err
				}
				req.Grants = append(req.Grants, g)
			}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.call(cmd.Context(), "POST", "/api/v1/tokens", req, &raw); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			var resp api.IssueResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "subject of the token (default: yourself)")
	cmd.Flags().StringArrayVar(&grants, "grant", nil, "grant TARGET:LOGIN:ACTION[,ACTION] (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 15m; at most the configured maximum)")
	cmd.Flags().StringArrayVar(&src, "src", nil, "allowed source network CIDR (repeatable)")
	cmd.Flags().StringArrayVar(&roles, "role", nil, "Vigil role, e.g. admin (admins only; repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "token", "output: token or json")
	return cmd
}

func newTokenRevokeCmd() *cobra.Command {
	var reason, issuer string
	cmd := &cobra.Command{
		Use:   "revoke JTI",
		Short: "Revoke a token by its jti",
		Long:  "Revoke a token by its jti (token ID). Every verification from now on refuses it.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			var rev token.Revocation
			if err := c.call(cmd.Context(), "POST", "/api/v1/tokens/revoke", api.RevokeRequest{JTI: args[0], Issuer: issuer, Reason: reason}, &rev); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (issuer %s)\n", rev.JTI, rev.Issuer)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.Flags().StringVar(&issuer, "issuer", "", "issuer of the token (default: Vigil)")
	return cmd
}

func newTokenVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify TOKEN",
		Short: "Verify a token and print its claims",
		Long: `Ask the server to verify TOKEN ("-" reads it from stdin) and print its
claims. Exits non-zero with the reason when the token is not valid.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok := args[0]
			if tok == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return err
				}
				tok = strings.TrimSpace(string(b))
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var resp api.VerifyResponse
			if err := c.call(cmd.Context(), "POST", "/api/v1/tokens/verify", api.VerifyRequest{Token: tok}, &resp); err != nil {
				return err
			}
			if !resp.Valid {
				msg := "token invalid: " + resp.Reason
				if resp.Detail != "" {
					msg += ": " + resp.Detail
				}
				return errors.New(msg)
			}
			b, _ := json.MarshalIndent(resp, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
}
