package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/vigil-pam/vigil/internal/api"
	"github.com/vigil-pam/vigil/internal/querylog"
)

// statementWidth is how much of a statement a table row shows: enough to
// recognise it on a terminal; -o json has it whole.
const statementWidth = 80

func newQueriesCmd() *cobra.Command {
	var session, user, target, source, since, until, text, outcome string
	var desc bool
	var limit int
	var after int64
	cmd := &cobra.Command{
		Use:   "queries [--session ID] [--user U] [--target T] [--since D] [--until T] [-q TEXT] [--outcome O] [--desc] [--limit N] [-o table|json]",
		Short: "Search the SQL statements database sessions sent",
		Long: `Search the statement log: every SQL statement a database session sent
through Vigil's PostgreSQL gateway, with who sent it, where, when, how long
it took, how many rows it returned or changed, and its outcome:

  ok          the database completed it
  error       the database answered with an error (its SQLSTATE is shown)
  blocked     Vigil refused it and never sent it (the rule is shown)
  cancelled   it was cancelled before it completed
  incomplete  the session ended before its outcome was known

Filters combine (all must match). -q searches the statement text: words
(all must occur, in any order), "quoted phrases", and prefix* words; case
and punctuation are ignored, and SQL keywords such as OR, NOT or NEAR are
searched as words, never as operators. Parameter values of prepared
statements are never recorded, only how many there were.

Statements are listed oldest first (--desc for newest first), at most
--limit at a time; when there are more, the last line on stderr says how to
continue. The table shows the first 80 characters of each statement on one
line; -o json shows them whole, with every field. Each search is recorded
in the audit log.`,
		Example: `  # what session s_2f9a did, in order
  vigil queries --session s_2f9a

  # who dropped a table on prod-db in the last week
  vigil queries --target prod-db --since 7d -q '"drop table"'

  # statements Vigil blocked today, newest first
  vigil queries --outcome blocked --since 24h --desc

  # everything alice sent touching the payroll table, as JSON
  vigil queries --user alice -q payroll -o json`,
		Args: cobra.NoArgs,
	}
	out := outputFlag(cmd)
	fs := cmd.Flags()
	fs.StringVar(&session, "session", "", "session ID")
	fs.StringVar(&user, "user", "", "user (the token's subject)")
	fs.StringVar(&target, "target", "", "target name")
	fs.StringVar(&source, "source", "", "client address (an address without a port matches every port)")
	fs.StringVar(&since, "since", "", "from: a duration back from now (24h), days (7d) or an RFC 3339 time")
	fs.StringVar(&until, "until", "", "up to (excluded): a duration back from now, days or an RFC 3339 time")
	fs.StringVarP(&text, "query", "q", "", `statement text: words (all must occur), "quoted phrases", prefix*`)
	fs.StringVar(&outcome, "outcome", "", "ok, error, blocked, cancelled or incomplete")
	fs.BoolVar(&desc, "desc", false, "newest first")
	fs.IntVar(&limit, "limit", querylog.DefaultLimit, fmt.Sprintf("most statements to show (1..%d)", querylog.MaxLimit))
	fs.Int64Var(&after, "after", 0, "continue after this statement id (from the previous page)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		for k, v := range map[string]string{"session": session, "user": user, "target": target, "source": source,
			"since": since, "until": until, "q": text, "outcome": outcome} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", fmt.Sprint(limit))
		if desc {
			q.Set("desc", "true")
		}
		if after > 0 {
			q.Set("after", fmt.Sprint(after))
		}
		var next int64
		err := list(cmd, *out, "/api/v1/queries?"+q.Encode(), func(page api.QueryPage) ([]string, [][]string) {
			next = page.Next
			var rows [][]string
			for _, s := range page.Queries {
				rows = append(rows, []string{fmtTime(s.Time), s.Session, orDash(s.User), orDash(s.Target), fmtDuration(s.Duration),
					fmt.Sprint(s.Rows), fmtOutcome(s.Entry), oneLine(s.Statement, statementWidth)})
			}
			return []string{"TIME", "SESSION", "USER", "TARGET", "DURATION", "ROWS", "OUTCOME", "STATEMENT"}, rows
		})
		if err == nil && next > 0 && *out != "json" {
			fmt.Fprintf(cmd.ErrOrStderr(), "more statements: continue with --after %d\n", next)
		}
		return err
	}
	return cmd
}

// fmtOutcome is the outcome with the SQLSTATE of an error and the rule
// that blocked or flagged the statement: "error 42P01", "blocked
// [no-drop]".
func fmtOutcome(e querylog.Entry) string {
	s := e.Outcome
	if e.SQLState != "" {
		s += " " + e.SQLState
	}
	if e.Rule != "" {
		s += " [" + e.Rule + "]"
	}
	return s
}

// fmtDuration shows d to about three significant digits: 850µs, 12.3ms,
// 4.56s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// oneLine folds s onto one line (every run of white space, newlines
// included, becomes one space), shows other control characters as "�"
// (a statement is the user's text: it must not drive the terminal), and
// cuts it to width characters, marking a cut with "…".
func oneLine(s string, width int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return utf8.RuneError
		}
		return r
	}, strings.Join(strings.Fields(s), " "))
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
