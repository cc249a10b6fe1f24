package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/vigil-pam/vigil/internal/recording"
)

// newRecordingDecryptCmd is "vigil recording decrypt": an auditor's
// offline playback of a recording encrypted to their key. It runs here,
// on the file, and needs no server.
func newRecordingDecryptCmd() *cobra.Command {
	var identities []string
	var out string
	cmd := &cobra.Command{
		Use:   "decrypt FILE --identity KEYFILE [-o OUT.cast]",
		Short: "Decrypt a recording file offline with an auditor's age identity",
		Long: `Decrypt a stored recording (DATA/recordings/ID.cast.age) with an age identity
and write it as a plain asciicast v2 file, which "asciinema play" plays.
This runs locally on a copy of the file: no Vigil server is involved, and the
identity never leaves this machine.

Recordings are encrypted at rest with age (https://age-encryption.org) to the
recipients in the server's configuration:

  encryption:
    recipients:              # auditors' public keys (age1...), or files of them
      - age1...
    identity_file: ""        # identities the server may play back with, if any

With no recipients the server encrypts to its own key, DATA/recordings.agekey,
and plays recordings itself (that file is also the KEYFILE for this command).
With auditors' keys and no identity_file, the server cannot read a session once
it is recorded: playback and export through the API answer "cannot_decrypt",
live watchers see only what happens after they join, and auditors decrypt
copies of the files here.

KEYFILE is an age identity file (as written by age-keygen: lines of
AGE-SECRET-KEY-1..., # comments), readable by its owner only (chmod 600).
--identity may be given several times; the first that matches is used.

A recording cut short (the gateway stopped mid-session) decrypts up to its
last complete segment, at most a second before the stop. Old unencrypted
recordings (ID.cast.gz) are decompressed the same way.`,
		Example: `  vigil recording decrypt s_abc123.cast.age --identity ~/.config/age/auditor.key -o s_abc123.cast
  asciinema play s_abc123.cast
  vigil recording decrypt s_abc123.cast.age --identity auditor.key | grep -a sudo`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []age.Identity
			for _, path := range identities {
				more, err := recording.ReadIdentityFile(path)
				if err != nil {
					return err
				}
				ids = append(ids, more...)
			}
			return decryptRecording(args[0], recording.NewKeys(nil, ids), out, cmd.OutOrStdout(), strings.Join(identities, ", "))
		},
	}
	cmd.Flags().StringArrayVarP(&identities, "identity", "i", nil, "age identity file (repeatable)")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "file to write, created mode 0600 (- for stdout)")
	cmd.MarkFlagRequired("identity")
	return cmd
}

// decryptRecording writes the recording at path, decrypted with keys, to
// the file out (or stdout when out is "-"). A file it created is removed
// again if decryption fails.
func decryptRecording(path string, keys *recording.Keys, out string, stdout io.Writer, idNames string) error {
	var w io.Writer = stdout
	var f *os.File
	if out != "-" {
		if in, err1 := os.Stat(path); err1 == nil {
			if o, err2 := os.Stat(out); err2 == nil && os.SameFile(in, o) {
				return fmt.Errorf("decrypt: -o %s is the recording itself", out)
			}
		}
		var err error
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return fmt.Errorf("decrypt: %w", err)
		}
		w = f
	}
	err := recording.Export(path, keys, w)
	if errors.Is(err, recording.ErrNoIdentity) {
		err = fmt.Errorf("%s is not encrypted to any identity in %s", path, idNames)
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
		}
	}
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	return nil
}
