package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/api"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Show and try the real-time rules (command, output and SQL)"}
	ls := &cobra.Command{Use: "ls", Short: "List the rule packs and their rules", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/rules", func(resp api.RulesResponse) ([]string, [][]string) {
			var rows [][]string
			for _, p := range resp.Packs {
				for _, r := range p.Rules {
					rows = append(rows, []string{p.Name, r.ID, string(r.Kind), string(r.Action), string(r.Severity), r.Description})
				}
			}
			return []string{"PACK", "RULE", "KIND", "ACTION", "SEVERITY", "DESCRIPTION"}, rows
		})
	}
	var in api.RuleTestRequest
	test := &cobra.Command{
		Use:   "test TEXT",
		Short: "Show which rules a command line, output line or SQL statement would hit",
		Long: `Show which rules TEXT would hit and what Vigil would do. By default TEXT is
tried as a command, an output line and SQL against every pack; narrow it with
--kind and --packs (pack specs, as for vigil target rules).`,
		Example: `  vigil rules test 'sudo rm -rf / --no-preserve-root'
  vigil rules test --kind sql 'DELETE FROM users'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Text = args[0]
			c, err := newClient()
			if err != nil {
				return err
			}
			var resp struct{ Hits []api.RuleTestHit }
			if err := c.call(cmd.Context(), "POST", "/api/v1/rules/test", in, &resp); err != nil {
				return err
			}
			if len(resp.Hits) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no rule hits")
				return nil
			}
			var rows [][]string
			for _, h := range resp.Hits {
				rows = append(rows, []string{string(h.Kind), h.Rule.Pack, h.Rule.ID, string(h.Rule.Action), string(h.Rule.Severity), h.Rule.Description})
			}
			return table(cmd.OutOrStdout(), []string{"AS", "PACK", "RULE", "ACTION", "SEVERITY", "DESCRIPTION"}, rows)
		},
	}
	test.Flags().StringVar((*string)(&in.Kind), "kind", "", "command, output or sql (default: all three)")
	test.Flags().StringSliceVar(&in.Packs, "packs", nil, "pack specs to test against (default: every pack)")
	cmd.AddCommand(ls, test)
	return cmd
}

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "List and acknowledge alerts (rule hits, monitor findings)"}
	var unacked bool
	var since, severity, kind string
	ls := &cobra.Command{Use: "ls", Short: "List alerts, newest first", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.Flags().BoolVar(&unacked, "unacked", false, "only alerts not acknowledged yet")
	ls.Flags().StringVar(&since, "since", "", "only alerts since a duration ago (24h) or an RFC 3339 time")
	ls.Flags().StringVar(&severity, "severity", "", "only alerts at least this severe: low, medium, high, critical")
	ls.Flags().StringVar(&kind, "kind", "", "only alerts of this kind (rule, monitor, breakglass)")
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		for k, v := range map[string]string{"since": since, "severity": severity, "kind": kind} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if unacked {
			q.Set("unacked", "true")
		}
		return list(cmd, *out, "/api/v1/alerts?"+q.Encode(), func(resp struct{ Alerts []alert.Alert }) ([]string, [][]string) {
			var rows [][]string
			for _, a := range resp.Alerts {
				ack := "-"
				if a.Acked() {
					ack = a.AckedBy
				}
				rows = append(rows, []string{strconv.FormatInt(a.ID, 10), fmtTime(a.LastTime), string(a.Severity), a.Kind, orDash(a.Actor),
					orDash(a.Target), orDash(a.Session), strconv.FormatInt(a.Count, 10), ack, a.Summary})
			}
			return []string{"ID", "LAST", "SEVERITY", "KIND", "USER", "TARGET", "SESSION", "COUNT", "ACKED BY", "SUMMARY"}, rows
		})
	}
	var note string
	ack := &cobra.Command{
		Use:   "ack ID [--note TEXT]",
		Short: "Acknowledge an alert (recorded with who and when)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			var a alert.Alert
			if err := c.call(cmd.Context(), "POST", "/api/v1/alerts/"+url.PathEscape(strings.TrimSpace(args[0]))+"/ack", api.AckRequest{Note: note}, &a); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alert %d acknowledged\n", a.ID)
			return nil
		},
	}
	ack.Flags().StringVar(&note, "note", "", "what was found or done")
	cmd.AddCommand(ls, ack)
	return cmd
}
