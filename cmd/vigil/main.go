// Command vigil is Vigil's one binary: the gateway server (vigil serve)
// and the command-line client of its HTTP API.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	// Run as ssh's SSH_ASKPASS helper by `vigil ssh`: answer a password or
	// token prompt with the token, and refuse any other prompt (a host key
	// confirmation must never receive the token).
	if os.Getenv(askpassEnv) == "1" {
		prompt := strings.ToLower(strings.Join(os.Args[1:], " "))
		if !strings.Contains(prompt, "password") && !strings.Contains(prompt, "token") {
			fmt.Fprintln(os.Stderr, "vigil: askpass: not answering a prompt that is not for the token")
			os.Exit(1)
		}
		fmt.Println(os.Getenv("VIGIL_TOKEN"))
		return
	}
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		// One line on stderr, non-zero exit (DESIGN.md).
		fmt.Fprintln(os.Stderr, "vigil: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Vigil: a privileged access gateway",
		Long: `Vigil lets engineers into production servers and databases through a
gateway that authenticates them with short-lived signed tokens, grants least
privilege, injects credentials they never see, and records everything.

Run "vigil serve" to start the server. Every other command is a client of
its HTTP API: VIGIL_ADDR (default http://127.0.0.1:8080) says where it is,
VIGIL_TOKEN holds the token to use (default: ./vigil-data/admin.token when
readable).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newTokenCmd(), newKeysCmd(), newGrantCmd(), newAuditCmd(), newTargetCmd(),
		newSessionsCmd(), newPlayCmd(), newRecordingCmd(), newSSHCmd(), newLockCmd(), newRulesCmd(), newAlertsCmd())
	root.AddCommand(newHoldCmd(), newRetentionCmd())
	root.AddCommand(newReportCmd())
	root.AddCommand(newBreakGlassCmd())
	root.AddCommand(newQueriesCmd())
	return root
}

// bindEnv fills every flag of fs that was not given on the command line
// from VIGIL_<NAME> (upper case, dashes as underscores), so each flag can
// also come from the environment.
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "VIGIL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %w", name, serr)
			}
		}
	})
	return err
}
