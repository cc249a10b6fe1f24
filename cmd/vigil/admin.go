package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/policy"
	"github.com/vigil-pam/vigil/internal/token"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "List and rotate token signing keys"}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List published signing keys",
		Args:  cobra.NoArgs,
	}
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/keys", func(resp struct{ Keys []token.KeyInfo }) ([]string, [][]string) {
			var rows [][]string
			for _, k := range resp.Keys {
				state := "retired"
				if k.Active {
					state = "active"
				}
				rows = append(rows, []string{k.KID, k.Alg, state, fmtTime(k.CreatedAt), fmtTime(k.PublishUntil)})
			}
			return []string{"KID", "ALG", "STATE", "CREATED", "PUBLISHED UNTIL"}, rows
		})
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new signing key; the old one verifies until its tokens expire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			var k token.KeyInfo
			if err := c.call(cmd.Context(), "POST", "/api/v1/keys/rotate", nil, &k); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new signing key %s (%s)\n", k.KID, k.Alg)
			return nil
		},
	}
	cmd.AddCommand(ls, rotate)
	return cmd
}

func newGrantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "grant", Short: "Manage stored grants of users and roles"}
	var in api.GrantRequest
	var actions string
	var maxTTL time.Duration
	add := &cobra.Command{
		Use:   "add (--user SUB | --role ROLE) --target NAME --login LOGIN --actions shell,exec,sftp,forward,query",
		Short: "Store a grant",
		Long: `Store a grant for a user or a role (roles come from an external issuer's
roles_claim). Users may then have tokens issued carrying it.

--window restricts when: 'DAYS HH:MM-HH:MM [ZONE]', e.g. 'Mon-Fri 08:00-18:00
Europe/Berlin' (an end before the start runs past midnight). --from restricts
the source network (CIDR, repeatable).`,
		Example: `  vigil grant add --user alice --target web1 --login root --actions shell,exec --max-ttl 1h
  vigil grant add --role dba --target db1 --login app --actions query --window 'Mon-Fri 08:00-18:00 Europe/Berlin'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Actions = strings.Split(actions, ",")
			if maxTTL != 0 {
				in.MaxTTL = maxTTL.String()
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var g policy.Grant
			if err := c.call(cmd.Context(), "POST", "/api/v1/grants", in, &g); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), g.ID)
			return nil
		},
	}
	add.Flags().StringVar(&in.User, "user", "", "user (token subject)")
	add.Flags().StringVar(&in.Role, "role", "", "role")
	add.Flags().StringVar(&in.Target, "target", "", "target name")
	add.Flags().StringVar(&in.Login, "login", "", "login on the target")
	add.Flags().StringVar(&actions, "actions", "", "comma-separated actions")
	add.Flags().DurationVar(&maxTTL, "max-ttl", 0, "longest token carrying this grant")
	add.Flags().StringVar(&in.Window, "window", "", "weekly time window")
	add.Flags().StringArrayVar(&in.From, "from", nil, "allowed source network CIDR (repeatable)")
	for _, f := range []string{"target", "login", "actions"} {
		add.MarkFlagRequired(f)
	}

	var user, role string
	ls := &cobra.Command{Use: "ls", Short: "List grants", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.Flags().StringVar(&user, "user", "", "only this user's")
	ls.Flags().StringVar(&role, "role", "", "only this role's")
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{"user": {user}, "role": {role}}
		return list(cmd, *out, "/api/v1/grants?"+q.Encode(), func(resp struct{ Grants []policy.Grant }) ([]string, [][]string) {
			var rows [][]string
			for _, g := range resp.Grants {
				who := "user:" + g.Subject
				if g.Role != "" {
					who = "role:" + g.Role
				}
				ttl := "-"
				if g.MaxTTL > 0 {
					ttl = g.MaxTTL.String()
				}
				rows = append(rows, []string{g.ID, who, g.Target, g.Login, strings.Join(g.Actions, ","), ttl,
					orDash(g.Window), orDash(strings.Join(g.From, ","))})
			}
			return []string{"ID", "WHO", "TARGET", "LOGIN", "ACTIONS", "MAX TTL", "WINDOW", "FROM"}, rows
		})
	}
	rm := newRemoveCmd("grant", "/api/v1/grants/")
	cmd.AddCommand(add, ls, rm)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
