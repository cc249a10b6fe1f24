package recording

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/vigil-pam/vigil/internal/config"
)

// IdentityFileName is the age identity kept in the data directory when no
// recipients are configured: recordings are encrypted to it, and this
// server can play them back.
const IdentityFileName = "recordings.agekey"

// ErrNoIdentity is returned (wrapped) when a recording is encrypted and
// none of the identities at hand decrypts it: the recording is intact, but
// only its recipients (auditors) can read it.
var ErrNoIdentity = errors.New("recording: the recording is encrypted to other recipients (no identity here decrypts it); decrypt it offline with `vigil recording decrypt FILE --identity KEYFILE`")

// Keys are the age keys recordings are written and read with: every new
// recording is encrypted to all the recipients; playback works where one
// of the identities matches. The zero value, like nil, has neither: it can
// read only old unencrypted recordings and cannot write any.
type Keys struct {
	recipients []age.Recipient
	identities []age.Identity
}

// NewKeys returns keys encrypting to recipients and decrypting with
// identities; either may be empty (no recipients: read only, no
// identities: write only).
func NewKeys(recipients []age.Recipient, identities []age.Identity) *Keys {
	return &Keys{recipients: recipients, identities: identities}
}

// CanDecrypt reports whether these keys hold an identity, so playback,
// export and live catch-up can be attempted here. An identity that matches
// none of a recording's recipients still fails with ErrNoIdentity.
func (k *Keys) CanDecrypt() bool { return k != nil && len(k.identities) > 0 }

// CanEncrypt reports whether these keys have recipients to write to.
func (k *Keys) CanEncrypt() bool { return k != nil && len(k.recipients) > 0 }

// Recipients returns the recipients new recordings are encrypted to, in
// their age1… form where they have one (for logs and status pages).
func (k *Keys) Recipients() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.recipients))
	for _, r := range k.recipients {
		if s, ok := r.(fmt.Stringer); ok {
			out = append(out, s.String())
		}
	}
	return out
}

// LoadKeys returns the recording keys cfg describes. With no recipients it
// uses the identity DATA/recordings.agekey, creating it (mode 0600) when
// it does not exist (created is then true): recordings are encrypted to
// its first identity, and it decrypts them. With recipients (age1… keys,
// or paths of recipients files) recordings are encrypted to those, and
// this server decrypts only with the identities of cfg.IdentityFile, if
// set. Identity files readable by group or others are refused.
func LoadKeys(cfg config.Encryption, dataDir string) (keys *Keys, created bool, err error) {
	k := &Keys{}
	if cfg.IdentityFile != "" {
		if k.identities, err = ReadIdentityFile(cfg.IdentityFile); err != nil {
			return nil, false, err
		}
	}
	if len(cfg.Recipients) == 0 {
		if dataDir == "" {
			return nil, false, errors.New("recording: no encryption recipients and no data directory for a key")
		}
		path := filepath.Join(dataDir, IdentityFileName)
		ids, err := ReadIdentityFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			ids, err = createIdentityFile(path)
			created = err == nil
		}
		if err != nil {
			return nil, false, err
		}
		r, err := recipientOf(ids[0])
		if err != nil {
			return nil, false, fmt.Errorf("recording: %s: %w", path, err)
		}
		// The data directory's identities first: they are the ones that
		// match. Those of identity_file may read older recordings.
		k.recipients = []age.Recipient{r}
		k.identities = append(ids, k.identities...)
	} else {
		for i, s := range cfg.Recipients {
			rs, err := parseRecipients(s)
			if err != nil {
				return nil, false, fmt.Errorf("recording: encryption.recipients[%d]: %w", i, err)
			}
			k.recipients = append(k.recipients, rs...)
		}
	}
	// age refuses some mixes (post-quantum with classic recipients) only
	// when encrypting: find out now, not at the first session.
	wc, err := age.Encrypt(io.Discard, k.recipients...)
	if err == nil {
		err = wc.Close()
	}
	if err != nil {
		return nil, false, fmt.Errorf("recording: encryption.recipients: %w", err)
	}
	return k, created, nil
}

// parseRecipients reads one configured recipient: an age public key, or
// the path of a recipients file (one key a line, # comments).
func parseRecipients(s string) ([]age.Recipient, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "age1") {
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil {
			return nil, fmt.Errorf("bad age recipient %q: %w", s, err)
		}
		return rs, nil
	}
	f, err := os.Open(s)
	if err != nil {
		return nil, fmt.Errorf("neither an age1… key nor a readable recipients file: %w", err)
	}
	defer f.Close()
	rs, err := age.ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("recipients file %s: %w", s, err)
	}
	return rs, nil
}

// ReadIdentityFile reads the age identities (AGE-SECRET-KEY-…) of the file
// at path. A file readable by group or others is refused: whoever reads
// it can read every recording encrypted to it.
func ReadIdentityFile(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recording: identity file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("recording: identity file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("recording: identity file %s has mode %o; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("recording: identity file %s: %w", path, err)
	}
	return ids, nil
}

// createIdentityFile writes a fresh X25519 identity to path (mode 0600,
// which must not exist), in age-keygen's format.
func createIdentityFile(path string) ([]age.Identity, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("recording: generate identity: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", path, err)
	}
	_, werr := fmt.Fprintf(f, "# Vigil recordings key, created: %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("recording: write %s: %w", path, err)
	}
	return []age.Identity{id}, nil
}

// recipientOf returns the public key of a native age identity.
func recipientOf(id age.Identity) (age.Recipient, error) {
	switch id := id.(type) {
	case *age.X25519Identity:
		return id.Recipient(), nil
	case *age.HybridIdentity:
		return id.Recipient(), nil
	}
	return nil, fmt.Errorf("identity of type %T has no known public key", id)
}
