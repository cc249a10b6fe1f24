package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/policy"
)

func newLockCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lock", Short: "Lock users or targets: refuse new sessions, end live ones"}
	var in api.LockRequest
	var ttl time.Duration
	add := &cobra.Command{
		Use:   "add (--user SUB | --target NAME) --reason TEXT [--ttl D]",
		Short: "Lock a user or a target",
		Long: `Lock a user or a target: new sessions that match are refused (the audit log
says "locked"), and live ones end at once with the reason shown to the user.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl != 0 {
				in.TTL = ttl.String()
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			var resp api.LockResponse
			if err := c.call(cmd.Context(), "POST", "/api/v1/locks", in, &resp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (ended %d live sessions)\n", resp.ID, resp.Ended)
			return nil
		},
	}
	add.Flags().StringVar(&in.User, "user", "", "user (token subject) to lock")
	add.Flags().StringVar(&in.Target, "target", "", "target to lock")
	add.Flags().StringVar(&in.Reason, "reason", "", "why (shown to the users whose sessions end)")
	add.Flags().DurationVar(&ttl, "ttl", 0, "lift the lock after this long (default: until removed)")
	add.MarkFlagRequired("reason")

	ls := &cobra.Command{Use: "ls", Short: "List locks in force", Args: cobra.NoArgs}
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/locks", func(resp struct{ Locks []policy.Lock }) ([]string, [][]string) {
			var rows [][]string
			for _, l := range resp.Locks {
				what := "user:" + l.Subject
				if l.Target != "" {
					what = "target:" + l.Target
				}
				rows = append(rows, []string{l.ID, what, l.Reason, fmtTime(l.CreatedAt), fmtTime(l.ExpiresAt), l.CreatedBy})
			}
			return []string{"ID", "LOCKS", "REASON", "SINCE", "UNTIL", "BY"}, rows
		})
	}
	rm := newRemoveCmd("lock", "/api/v1/locks/")
	cmd.AddCommand(add, ls, rm)
	return cmd
}
