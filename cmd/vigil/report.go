package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/report"
)

// maxReport bounds a report read from the API.
const maxReport = 256 << 20

func newReportCmd() *cobra.Command {
	var since, output string
	cmd := &cobra.Command{
		Use:   "report access|breakglass|violations|unused-grants [--since D] [-o table|csv|json]",
		Short: "Compliance reports: access, break-glass use, violations, unused grants",
		Long: `Print a compliance report built from the session records, the stored grants
and the hash-chained audit trail. Each run is itself audited (report.run).

  access         One row per session started since D: who (user) reached which
                 target as which login, from where, when it started and ended,
                 how long it lasted, how it ended (state, reason, exit status),
                 bytes each way, whether its recording is available or was
                 disposed of by retention, the recording's SHA-256 sealed in
                 the audit chain, and whether it ran on a break-glass token.
                 Evidence of who accessed what, when, for how long, and where
                 the recording of it is.

  breakglass     Every break-glass use since D: when, who, which account and
                 target, the stated reason, the token's ID and TTL, the
                 sessions that ran on it, and its review (reviewed by, at,
                 note), or UNREVIEWED. Unreviewed uses come first. Evidence
                 that emergency access was justified and reviewed afterwards.

  violations     Real-time rule hits (rule, severity, action taken, what was
                 typed or printed) and refused access since D: SSH logins
                 denied (no grant, locked, unknown target, …), requests
                 denied within a session (e.g. port forwarding without the
                 forward action), refused token issuance, and token
                 verification failures grouped per source, claimed subject
                 and reason (COUNT, first TIME and LAST). An SSH login
                 refused for its token is counted once, in its token row.
                 Evidence that policy violations and failed access are
                 detected and recorded.

  unused-grants  Stored grants not used in the last D (default 30 days): a
                 user's grant is used when that user had a session on its
                 target as its login; a role's grant when such a session ran
                 on a token carrying the role. Grants created inside the
                 window are listed as "new" (they have not had D yet); role
                 grants are "unknown" when sessions in the window did not
                 record their token's roles. Evidence for access reviews:
                 standing privilege to revoke.

--since is a duration back from now (30d, 72h, 1d12h) or an RFC 3339 time;
default 30d. -o csv writes a header row then one record per row (cells a
spreadsheet would evaluate as a formula are prefixed with '); -o json an
array of objects with the full-precision values. Reports read the audit
events still in the database: events archived and pruned are not included.`,
		Example: `  vigil report access --since 7d
  vigil report breakglass --since 90d -o csv > breakglass.csv
  vigil report violations --since 2025-01-01T00:00:00Z -o json
  vigil report unused-grants --since 90d`,
		ValidArgs: report.Kinds(),
		Args:      cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd, args[0], since, output)
		},
	}
	cmd.Flags().StringVar(&since, "since", "30d", "start of the period: a duration back from now (30d, 72h) or an RFC 3339 time")
	cmd.Flags().StringVarP(&output, "output", "o", report.FormatTable, "output format: table, csv or json")
	return cmd
}

// runReport fetches report kind from the API and prints it: CSV and JSON
// as the API rendered them, a table rendered here from the JSON rows.
func runReport(cmd *cobra.Command, kind, since, output string) error {
	if !slices.Contains(report.Formats, output) {
		return fmt.Errorf("output %q: want one of %s", output, strings.Join(report.Formats, ", "))
	}
	if !slices.Contains(report.Kinds(), kind) {
		return fmt.Errorf("unknown report %q; want one of %s", kind, strings.Join(report.Kinds(), ", "))
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	format := report.FormatJSON
	if output == report.FormatCSV {
		format = report.FormatCSV
	}
	q := url.Values{"since": {since}, "format": {format}}
	resp, err := c.send(cmd.Context(), c.http, "GET", "/api/v1/reports/"+url.PathEscape(kind)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReport))
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	out := cmd.OutOrStdout()
	if output != report.FormatTable {
		_, err := out.Write(body)
		return err
	}
	t, err := report.Decode(kind, body)
	if err != nil {
		return err
	}
	if v := resp.Header.Get(api.ReportSinceHeader); v != "" {
		t.Since, _ = time.Parse(time.RFC3339Nano, v)
	}
	return t.Write(out, report.FormatTable)
}
