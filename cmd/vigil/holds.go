package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/retention"
)

// retentionHelp explains the retention policy; hold and retention share it.
const retentionHelp = `Recordings are kept for a retention period, then deleted by a sweep that
runs every retention.every (default 1h) in "vigil serve":

  retention:
    default: 2160h          # 90 days (the default); durations in hours
    labels:                 # per target label KEY=VALUE
      env=dev: 168h         # 7 days
      pci=yes: 8760h        # 365 days
    every: 1h

A target gets the retention of its matching label policies (when several
match, the longest retention wins), or the default. A session whose target
has been deleted gets the default. Age counts from the end of the session;
active sessions are never touched.

A legal hold keeps every recording it covers, however old, until it is
released: a hold on a session, on a target (all its sessions, past and
future), or on a user (all their sessions). Each disposal is audited as
recording.dispose (the decision, before deletion) then recording.disposed
(the outcome: deleted or already_missing); a disposed recording's download
answers 410 Gone.`

func newHoldCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Legal holds: keep recordings past their retention",
		Long:  "Place, list and release legal holds.\n\n" + retentionHelp,
	}
	var in api.HoldRequest
	add := &cobra.Command{
		Use:   "add (--session ID | --target NAME | --user SUB) --reason TEXT",
		Short: "Place a legal hold on a session, a target or a user",
		Long: `Place a legal hold: no recording it covers is deleted by retention until
the hold is released ("vigil hold rm ID"). Name exactly one of --session,
--target (any name, also a deleted target's) and --user; --reason is
required (a case or ticket number). Prints the hold's ID.`,
		Example: `  vigil hold add --user mallory --reason "case 2027-114: insider investigation"
  vigil hold add --session s_abc123 --reason "INC-4411"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			var h retention.Hold
			if err := c.call(cmd.Context(), "POST", "/api/v1/holds", in, &h); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h.ID)
			return nil
		},
	}
	add.Flags().StringVar(&in.Session, "session", "", "hold one session's recording (session ID)")
	add.Flags().StringVar(&in.Target, "target", "", "hold every recording of a target")
	add.Flags().StringVar(&in.User, "user", "", "hold every recording of a user (token subject)")
	add.Flags().StringVar(&in.Reason, "reason", "", "why (required; a case or ticket number)")
	add.MarkFlagsMutuallyExclusive("session", "target", "user")
	add.MarkFlagsOneRequired("session", "target", "user")
	add.MarkFlagRequired("reason")

	ls := &cobra.Command{Use: "ls [--all]", Short: "List legal holds in force", Args: cobra.NoArgs}
	all := ls.Flags().Bool("all", false, "include released holds")
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		path := "/api/v1/holds?all=" + strconv.FormatBool(*all)
		return list(cmd, *out, path, func(resp struct{ Holds []retention.Hold }) ([]string, [][]string) {
			var rows [][]string
			for _, h := range resp.Holds {
				what := "user:" + h.Subject
				switch {
				case h.Session != "":
					what = "session:" + h.Session
				case h.Target != "":
					what = "target:" + h.Target
				}
				released := "-"
				if !h.Active() {
					released = fmtTime(h.ReleasedAt) + " by " + h.ReleasedBy
				}
				rows = append(rows, []string{h.ID, what, h.Reason, fmtTime(h.CreatedAt), h.CreatedBy, released})
			}
			return []string{"ID", "HOLDS", "REASON", "SINCE", "BY", "RELEASED"}, rows
		})
	}

	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Release a legal hold",
		Long: `Release a legal hold. The hold stays listed (vigil hold ls --all) as
released; the recordings it kept are subject to their retention again and
those already expired are deleted by the next sweep.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			if err := c.call(cmd.Context(), "DELETE", "/api/v1/holds/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, ls, rm)
	return cmd
}

func newRetentionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Recording retention: delete expired recordings",
		Long:  retentionHelp,
	}
	sweep := &cobra.Command{
		Use:   "sweep",
		Short: "Delete expired recordings now",
		Long: `Run a retention sweep now instead of waiting for the next periodic one:
delete every recording past its retention that no legal hold keeps, and
print what was disposed of. The request is audited (retention.sweep), and
so is each disposal.`,
		Args: cobra.NoArgs,
	}
	out := outputFlag(sweep)
	sweep.RunE = func(cmd *cobra.Command, _ []string) error {
		if *out != "table" && *out != "json" {
			return fmt.Errorf("output %q: want table or json", *out)
		}
		c, err := newClient()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.call(cmd.Context(), "POST", "/api/v1/retention/sweep", nil, &raw); err != nil {
			return err
		}
		var res retention.Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		w := cmd.OutOrStdout()
		if *out == "json" {
			if err := printJSON(w, raw); err != nil {
				return err
			}
		} else if err := printSweep(w, res); err != nil {
			return err
		}
		if len(res.Failed) > 0 {
			return fmt.Errorf("%d recordings could not be deleted (retried by the next sweep)", len(res.Failed))
		}
		return nil
	}
	cmd.AddCommand(sweep)
	return cmd
}

// printSweep writes a sweep result as a table of disposals and a summary.
func printSweep(w io.Writer, res retention.Result) error {
	if len(res.Disposed) > 0 {
		var rows [][]string
		for _, d := range res.Disposed {
			rows = append(rows, []string{d.Session, d.Target, d.User, d.Policy, d.Retention, d.Age, d.Outcome})
		}
		if err := table(w, []string{"SESSION", "TARGET", "USER", "POLICY", "RETENTION", "AGE", "OUTCOME"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "disposed of %d recordings; %d expired kept by legal holds; %d failed\n", len(res.Disposed), res.Held, len(res.Failed))
	for _, f := range res.Failed {
		fmt.Fprintf(w, "failed: %s %s: %s\n", f.Session, f.Path, f.Error)
	}
	return nil
}
