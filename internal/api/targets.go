package api

import (
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/vigil-pam/vigil/internal/gateway/sshgw"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/session"
	"github.com/vigil-pam/vigil/internal/vault"
	"golang.org/x/crypto/ssh"
)

// hostKeyFetchTimeout bounds trust-on-first-use at target add.
const hostKeyFetchTimeout = 10 * time.Second

// TargetRequest is the body of POST /api/v1/targets. The secret (Key or
// Password) is write-only: no response ever contains it.
type TargetRequest struct {
	Name string `json:"name"`
	// SSH or PG is the target's HOST:PORT; exactly one.
	SSH      string `json:"ssh,omitempty"`
	PG       string `json:"pg,omitempty"`
	Database string `json:"database,omitempty"`
	Login    string `json:"login"`
	// Key is an unencrypted SSH private key (PEM); Password a password.
	Key      string `json:"key,omitempty"`
	Password string `json:"password,omitempty"`
	// HostKey pins the SSH host key; empty means trust on first use: the
	// key the target presents now is pinned and the fact audited.
	HostKey  string            `json:"host_key,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	FailOpen bool              `json:"fail_open,omitempty"`
	// RulePacks enables real-time rule packs; empty means the default.
	RulePacks []string `json:"rule_packs,omitempty"`
	// TLS and TLSCA say how Vigil reaches a PostgreSQL target (see
	// vault.Target).
	TLS   string `json:"tls,omitempty"`
	TLSCA string `json:"tls_ca,omitempty"`
}

func (s *Server) addTarget(w http.ResponseWriter, r *http.Request) {
	var in TargetRequest
	if !decode(w, r, &in) {
		return
	}
	t := vault.Target{Name: in.Name, Login: in.Login, Database: in.Database, Labels: in.Labels, FailOpen: in.FailOpen,
		RulePacks: in.RulePacks, HostKey: in.HostKey, TLS: in.TLS, TLSCA: in.TLSCA, CreatedBy: identity(r).Claims.Subject}
	if err := s.Rules.ValidateSpecs(in.RulePacks); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	switch {
	case in.SSH != "" && in.PG == "":
		t.Kind, t.Addr = vault.KindSSH, in.SSH
	case in.PG != "" && in.SSH == "":
		t.Kind, t.Addr = vault.KindPostgres, in.PG
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "give exactly one of ssh and pg")
		return
	}
	secret := []byte(in.Password)
	t.Auth = vault.AuthPassword
	if in.Key != "" {
		if in.Password != "" {
			writeError(w, http.StatusBadRequest, "bad_request", "give a key or a password, not both")
			return
		}
		secret, t.Auth = []byte(in.Key), vault.AuthKey
	}
	if err := t.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	tofu := false
	if t.Kind == vault.KindSSH && t.HostKey == "" {
		key, err := sshgw.FetchHostKey(r.Context(), t.Addr, hostKeyFetchTimeout)
		if err != nil {
			writeError(w, http.StatusBadGateway, "unreachable", "cannot fetch the host key to pin ("+err.Error()+"); pass --host-key")
			return
		}
		t.HostKey, tofu = string(ssh.MarshalAuthorizedKey(key)), true
	}
	added, err := s.Vault.Add(r.Context(), t, secret)
	switch {
	case errors.Is(err, vault.ErrExists):
		writeError(w, http.StatusConflict, "exists", "a target with this name exists")
		return
	case err != nil:
		// Vault errors never repeat the secret.
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	data := map[string]any{"kind": added.Kind, "addr": added.Addr, "login": added.Login, "auth": added.Auth,
		"host_key_fingerprint": added.HostKeyFingerprint, "labels": added.Labels, "fail_open": added.FailOpen, "rule_packs": added.RulePacks}
	if added.Kind == vault.KindPostgres {
		data["database"], data["tls"], data["tls_ca"] = added.Database, added.TLS, added.TLSCA != ""
	}
	if tofu {
		data["host_key_trust"] = "first use"
	}
	if !s.record(w, r, "target.add", added.Name, data) {
		return
	}
	writeJSON(w, http.StatusCreated, added)
}

func (s *Server) listTargets(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Vault.List(r.Context())
	if err != nil {
		s.Log.Error("list targets", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "targets unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"targets": ts})
}

func (s *Server) removeTarget(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.Vault.Remove(r.Context(), name)
	if errors.Is(err, vault.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such target")
		return
	}
	if err != nil {
		s.Log.Error("remove target", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "target could not be removed")
		return
	}
	if !s.record(w, r, "target.remove", name, nil) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": name})
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	ss, err := s.Sessions.List(r.Context(), r.URL.Query().Get("state") == session.StateActive)
	if err != nil {
		s.Log.Error("list sessions", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sessions unavailable")
		return
	}
	out := make([]SessionView, len(ss))
	for i, sess := range ss {
		out[i] = s.view(sess)
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// SessionView is a session with its live state while it is live here.
type SessionView struct {
	session.Session
	Live *session.Status `json:"live,omitempty"`
}

func (s *Server) view(sess session.Session) SessionView {
	v := SessionView{Session: sess}
	if l, ok := s.Live.Get(sess.ID); ok {
		st := l.Status()
		v.Live = &st
	}
	return v
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if ok {
		writeJSON(w, http.StatusOK, s.view(sess))
	}
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) (session.Session, bool) {
	sess, err := s.Sessions.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such session")
		return sess, false
	}
	if err != nil {
		s.Log.Error("get session", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sessions unavailable")
		return sess, false
	}
	return sess, true
}

// sessionRecording serves the recording as plain asciicast v2. Every
// download is audited.
func (s *Server) sessionRecording(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	if sess.Recording == "" {
		writeError(w, http.StatusNotFound, "not_found", "this session has no recording")
		return
	}
	if !sess.DisposedAt.IsZero() {
		writeError(w, http.StatusGone, "disposed", "the recording was disposed of under the retention policy at "+
			sess.DisposedAt.UTC().Format(time.RFC3339)+" (see recording.disposed in the audit log)")
		return
	}
	if !s.record(w, r, "recording.view", sess.Target, map[string]any{"session": sess.ID}) {
		return
	}
	if l, ok := s.Live.Get(sess.ID); ok {
		// Live: what was recorded up to now, not up to the last flush.
		// An error means the session just ended and its file is whole.
		l.Flush()
	}
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Content-Disposition", `attachment; filename="`+sess.ID+`.cast"`)
	err := recording.Export(sess.Recording, s.RecordingKeys, w)
	if errors.Is(err, recording.ErrNoIdentity) {
		// Nothing was written: the answer can still be an error.
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusConflict, "cannot_decrypt", "this server cannot decrypt the recording: it is encrypted to the auditors' keys; "+
			"decrypt "+filepath.Base(sess.Recording)+" offline with `vigil recording decrypt FILE --identity KEYFILE`")
		return
	}
	if err != nil {
		s.Log.Error("export recording", "session", sess.ID, "err", err)
	}
}
