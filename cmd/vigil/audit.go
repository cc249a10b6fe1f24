package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/audit"
)

// auditFilters are the search flags shared by audit search and export.
type auditFilters struct {
	typ, actor, target, session, source, since, until, text string
}

func (f *auditFilters) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.typ, "type", "", `event type, e.g. token.verify, or a family: "session.*"`)
	fs.StringVar(&f.actor, "actor", "", "actor (the user, or vigil)")
	fs.StringVar(&f.target, "target", "", "target name")
	fs.StringVar(&f.session, "session", "", "session ID")
	fs.StringVar(&f.source, "source", "", "source address (an address without a port matches every port)")
	fs.StringVar(&f.since, "since", "", "from: a duration back from now (24h), days (7d) or an RFC 3339 time")
	fs.StringVar(&f.until, "until", "", "up to (excluded): a duration back from now, days or an RFC 3339 time")
	fs.StringVarP(&f.text, "query", "q", "", `full text over commands, SQL statements, paths and reasons: words (all must occur), "quoted phrases", prefix*`)
}

func (f *auditFilters) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"type": f.typ, "actor": f.actor, "target": f.target, "session": f.session,
		"source": f.source, "since": f.since, "until": f.until, "q": f.text} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Search, verify and export the audit trail"}
	cmd.AddCommand(newAuditSearchCmd(), newAuditVerifyCmd(), newAuditExportCmd(), newAuditArchiveCmd(), newAuditArchivesCmd(), newAuditVerifyArchiveCmd(), newAuditKeysCmd())
	return cmd
}

func newAuditSearchCmd() *cobra.Command {
	var f auditFilters
	var limit int
	var desc bool
	var after, before int64
	search := &cobra.Command{
		Use:   "search [--actor A] [--target T] [--type T] [--session ID] [--source ADDR] [--since D] [--until T] [-q TEXT]",
		Short: "Search audit events (oldest first; --desc for newest first)",
		Long: `Search audit events. Filters combine (all must match). -q searches the
text of events: commands typed or run, SQL statements, file paths, reasons.
For example, who ran DROP TABLE on prod in the last week:

  vigil audit search --target prod --since 7d -q '"drop table"'

At most --limit events are shown; when there are more, the last line on
stderr says how to continue.`,
		Args: cobra.NoArgs,
	}
	out := outputFlag(search)
	f.register(search)
	search.Flags().IntVar(&limit, "limit", 1000, fmt.Sprintf("most events to show (1..%d)", audit.MaxLimit))
	search.Flags().BoolVar(&desc, "desc", false, "newest first")
	search.Flags().Int64Var(&after, "after", 0, "only events after this seq (to page on)")
	search.Flags().Int64Var(&before, "before", 0, "only events before this seq (to page on with --desc)")
	search.RunE = func(cmd *cobra.Command, _ []string) error {
		q := f.values()
		q.Set("limit", fmt.Sprint(limit))
		if desc {
			q.Set("order", "desc")
		}
		if after > 0 {
			q.Set("after", fmt.Sprint(after))
		}
		if before > 0 {
			q.Set("before", fmt.Sprint(before))
		}
		var next int64
		err := list(cmd, *out, "/api/v1/audit?"+q.Encode(), func(resp struct {
			Events []audit.Event
			Next   int64
		}) ([]string, [][]string) {
			next = resp.Next
			var rows [][]string
			for _, e := range resp.Events {
				d, _ := json.Marshal(e.Data)
				rows = append(rows, []string{fmt.Sprint(e.Seq), fmtTime(e.Time), e.Type, orDash(e.Actor), orDash(e.Target),
					orDash(e.Session), orDash(e.Source), string(d)})
			}
			return []string{"SEQ", "TIME", "TYPE", "ACTOR", "TARGET", "SESSION", "SOURCE", "DATA"}, rows
		})
		if err == nil && next > 0 && *out != "json" {
			flag := "--after"
			if desc {
				flag = "--before"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "more events: continue with %s %d\n", flag, next)
		}
		return err
	}
	return search
}

func newAuditVerifyCmd() *cobra.Command {
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit trail: hash chain, signed checkpoints, sealed recordings",
		Long: `Verify the whole audit trail on the server: every event's hash, every
link to its predecessor, continuity of sequence numbers (from the last
archive boundary), every signed checkpoint (signature by the audit key and
the hash of the event it names: a checkpoint beyond the end proves
truncation), and the SHA-256 of every recording sealed into a session.end
event.

Prints a summary and the first broken link; exits non-zero when anything
is broken. -o json prints the whole report.`,
		Args: cobra.NoArgs,
	}
	out := outputFlag(verify)
	verify.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := newClient()
		if err != nil {
			return err
		}
		// No client timeout: verification re-hashes every recording
		// and may take minutes on a large log.
		c.http = &http.Client{}
		var raw json.RawMessage
		if err := c.call(cmd.Context(), "GET", "/api/v1/audit/verify", nil, &raw); err != nil {
			return err
		}
		var rep audit.Report
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("decode report: %w", err)
		}
		if *out == "json" {
			if err := printJSON(cmd.OutOrStdout(), raw); err != nil {
				return err
			}
		} else {
			printReport(cmd.OutOrStdout(), rep)
		}
		if !rep.OK {
			cmd.SilenceUsage = true
			msg := fmt.Sprintf("audit trail is NOT intact: %d problem(s)", rep.ProblemCount)
			if rep.First != nil {
				msg += "; first: " + rep.First.Message
			}
			return errors.New(msg)
		}
		return nil
	}
	return verify
}

func printReport(w io.Writer, rep audit.Report) {
	state := "intact"
	if !rep.OK {
		state = "BROKEN"
	}
	fmt.Fprintf(w, "audit trail: %s\n", state)
	fmt.Fprintf(w, "events:      %d (seq %d..%d)", rep.Events, rep.FirstSeq, rep.LastSeq)
	if rep.ArchivedThrough > 0 {
		fmt.Fprintf(w, ", archived through %d", rep.ArchivedThrough)
	}
	fmt.Fprintln(w)
	if rep.Head != "" {
		fmt.Fprintf(w, "head:        %s\n", rep.Head)
	}
	fmt.Fprintf(w, "checkpoints: %d", rep.Checkpoints)
	if c := rep.LastCheckpoint; c != nil {
		fmt.Fprintf(w, ", last at seq %d (%s, key %s)", c.Seq, fmtTime(c.Time), c.KID)
	}
	fmt.Fprintf(w, "; %d event(s) after it\n", rep.Unsealed)
	fmt.Fprintf(w, "recordings:  %d checked, %d disposed by retention\n", rep.Recordings, rep.RecordingsDisposed)
	if rep.TimeRegressions > 0 {
		fmt.Fprintf(w, "warning:     %d event(s) older than their predecessor (clock stepped back)\n", rep.TimeRegressions)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %-20s %s\n", p.Kind, p.Message)
	}
	if rep.ProblemCount > len(rep.Problems) {
		fmt.Fprintf(w, "  … and %d more\n", rep.ProblemCount-len(rep.Problems))
	}
	fmt.Fprintf(w, "took:        %.2fs\n", rep.Duration)
}

// stdoutOrFile opens path for writing, or returns stdout for "" or "-".
func stdoutOrFile(cmd *cobra.Command, path string) (io.WriteCloser, error) {
	if path == "" || path == "-" {
		return nopCloser{cmd.OutOrStdout()}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func newAuditArchiveCmd() *cobra.Command {
	var before string
	var through int64
	var force bool
	cmd := &cobra.Command{
		Use:   "archive --before D [--through SEQ] [--force]",
		Short: "Move old audit events to a sealed archive file and prune them",
		Long: `Move the events older than --before (a duration or days back from now,
"365d", or an RFC 3339 time), and at most through --through, into an
archive file on the server (DATA/audit-archive/audit-FIRST-LAST.jsonl.gz),
then delete them from the database.

The archive holds the events with their hashes, the public audit key, and a
checkpoint over its last event signed by the audit key; the database keeps
the archive's SHA-256 and boundary, so vigil audit verify still checks the
log from the boundary on. Copy archives to write-once storage; check one
anywhere with vigil audit verify-archive FILE. Only an intact chain is
archived: a broken one is refused. Events a SIEM sink (audit.forward) has
not received yet are not pruned unless --force is given.`,
		Args: cobra.NoArgs,
	}
	out := outputFlag(cmd)
	cmd.Flags().StringVar(&before, "before", "", "archive events older than this (required): 365d, 8760h or an RFC 3339 time")
	cmd.Flags().Int64Var(&through, "through", 0, "archive at most up to this event seq")
	cmd.Flags().BoolVar(&force, "force", false, "archive even events a SIEM sink has not received yet")
	cmd.MarkFlagRequired("before")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := newClient()
		if err != nil {
			return err
		}
		c.http = &http.Client{} // archiving a large range takes a while
		var raw json.RawMessage
		if err := c.call(cmd.Context(), "POST", "/api/v1/audit/archive", map[string]any{"before": before, "through": through, "force": force}, &raw); err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		var a audit.Archive
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "archived events %d..%d (%d) to %s\nsha256 %s\n", a.FirstSeq, a.LastSeq, a.Events, a.File, a.Digest)
		return nil
	}
	return cmd
}

func newAuditArchivesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "archives", Short: "List audit archives", Args: cobra.NoArgs}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/audit/archives", func(resp struct{ Archives []audit.Archive }) ([]string, [][]string) {
			var rows [][]string
			for _, a := range resp.Archives {
				rows = append(rows, []string{a.ID, fmt.Sprint(a.FirstSeq), fmt.Sprint(a.LastSeq), fmt.Sprint(a.Events),
					fmtTime(a.CreatedAt), a.CreatedBy, a.File, a.Digest})
			}
			return []string{"ID", "FIRST", "LAST", "EVENTS", "CREATED", "BY", "FILE", "SHA256"}, rows
		})
	}
	return cmd
}

func newAuditVerifyArchiveCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "verify-archive FILE [--key BASE64]",
		Short: "Verify an audit archive file offline",
		Long: `Verify an audit archive file on this machine, without a server: its hash
chain from first to last event and the closing checkpoint's signature.
Prints the archive's SHA-256 to compare with the digest the server recorded
(vigil audit archives, or the audit.archive event) and the audit key ID.
--key pins the audit public key (base64, from vigil audit keys on the
server); without it the key named in the file is only reported, so compare
its ID with vigil audit keys. Exits non-zero if anything
is wrong.`,
		Args: cobra.ExactArgs(1),
	}
	out := outputFlag(cmd)
	cmd.Flags().StringVar(&key, "key", "", "trusted audit public key (base64 Ed25519)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var trusted ed25519.PublicKey
		if key != "" {
			b, err := base64.StdEncoding.DecodeString(key)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return errors.New("--key must be a base64 Ed25519 public key (32 bytes)")
			}
			trusted = b
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err := audit.VerifyArchive(f, trusted)
		if err != nil {
			return err
		}
		if *out == "json" {
			b, _ := json.Marshal(rep)
			if err := printJSON(cmd.OutOrStdout(), b); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "events %d..%d (%d), key %s\nfirst prev_hash %s\nlast hash       %s\nsha256          %s\n",
				rep.FirstSeq, rep.LastSeq, rep.Events, rep.KID, orDash(rep.PrevHash), orDash(rep.LastHash), orDash(rep.SHA256))
		}
		if !rep.OK {
			cmd.SilenceUsage = true
			return errors.New("archive is NOT intact: " + rep.Problem)
		}
		return nil
	}
	return cmd
}

func newAuditExportCmd() *cobra.Command {
	var f auditFilters
	var format, output string
	cmd := &cobra.Command{
		Use:   "export --format jsonl|cef [filters] [-o FILE]",
		Short: "Export audit events for a SIEM (JSON Lines or CEF)",
		Long: `Export the audit events the filters select (all of them by default),
oldest first, as JSON Lines (one event object per line, with seq, time,
hashes and data) or ArcSight CEF (one line per event). Writes to stdout, or
to FILE (mode 0600) with -o. The export is itself audited. An empty
selection writes nothing and says so on stderr.

For continuous delivery to a collector, configure audit.forward instead
(syslog over TCP or TLS, or a signed webhook, with a persistent cursor).`,
		Args: cobra.NoArgs,
	}
	f.register(cmd)
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or cef")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := newClient()
		if err != nil {
			return err
		}
		q := f.values()
		q.Set("format", format)
		// No client timeout: a large export streams for as long as it takes.
		resp, err := c.send(cmd.Context(), &http.Client{}, "GET", "/api/v1/audit/export?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.Header.Get("X-Vigil-Events") == "0" {
			fmt.Fprintln(cmd.ErrOrStderr(), "vigil: no audit events match; nothing exported")
			return nil
		}
		w, err := stdoutOrFile(cmd, output)
		if err != nil {
			return err
		}
		n, err := io.Copy(w, resp.Body)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if output != "" {
				os.Remove(output)
			}
			return fmt.Errorf("export cut short after %d bytes: %w", n, err)
		}
		return nil
	}
	return cmd
}

func newAuditKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "List the audit public keys that sign checkpoints (to pin offline)", Args: cobra.NoArgs}
	out := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return list(cmd, *out, "/api/v1/audit/keys", func(resp struct {
			Keys []struct {
				KID       string `json:"kid"`
				Alg       string `json:"alg"`
				PublicKey string `json:"public_key"`
			}
		}) ([]string, [][]string) {
			var rows [][]string
			for _, k := range resp.Keys {
				rows = append(rows, []string{k.KID, k.Alg, k.PublicKey})
			}
			return []string{"KID", "ALG", "PUBLIC KEY"}, rows
		})
	}
	return cmd
}
