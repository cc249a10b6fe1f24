package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-pam/vigil/internal/audit"
	"github.com/vigil-pam/vigil/internal/recording"
	"github.com/vigil-pam/vigil/internal/session"
)

// Live stream tuning.
const (
	// watchBuffer is how many events a watcher may fall behind before it
	// is cut off (the session never waits for a watcher; its bytes are
	// bounded too, see session.Watcher).
	watchBuffer = 4096
	// watchFlush is the most a watched event waits to be sent: invisible
	// to a person watching, and many events per write when it is busy.
	watchFlush = 20 * time.Millisecond
	// sseKeepalive keeps idle event streams open through proxies.
	sseKeepalive = 15 * time.Second
)

// ControlRequest is the body of POST /api/v1/sessions/{id}/pause and
// /terminate (optional).
type ControlRequest struct {
	Reason string `json:"reason,omitempty"`
}

// ControlResponse answers a session control.
type ControlResponse struct {
	Session string         `json:"session"`
	Action  string         `json:"action"`
	Status  session.Status `json:"status"`
}

// liveSession finds id among the live sessions, answering 404 for an
// unknown session and 409 for one that is no longer live.
func (s *Server) liveSession(w http.ResponseWriter, r *http.Request) (*session.Live, bool) {
	if l, ok := s.Live.Get(r.PathValue("id")); ok {
		return l, true
	}
	if _, ok := s.session(w, r); ok {
		writeError(w, http.StatusConflict, "not_live", "the session is not live (it has ended)")
	}
	return nil, false
}

// controlError maps the registry's refusals to 409.
func controlError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrNotLive):
		writeError(w, http.StatusConflict, "not_live", "the session is not live (it has ended or is ending)")
	case errors.Is(err, session.ErrPaused):
		writeError(w, http.StatusConflict, "already_paused", "the session is already paused")
	case errors.Is(err, session.ErrNotPaused):
		writeError(w, http.StatusConflict, "not_paused", "the session is not paused")
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// control runs one session control: find the live session, read the
// optional reason, audit, act.
func (s *Server) control(w http.ResponseWriter, r *http.Request, action string, act func(l *session.Live, by, reason string) error) {
	l, ok := s.liveSession(w, r)
	if !ok {
		return
	}
	var in ControlRequest
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return
	}
	by := identity(r).Claims.Subject
	data := map[string]any{"user": l.Info.User}
	if in.Reason != "" {
		data["reason"] = in.Reason
	}
	// Refusals are answered before anything is recorded as done; one
	// that races in after the event (the session ended meanwhile) is
	// recorded too.
	if err := l.Can(action); err != nil {
		controlError(w, err)
		return
	}
	if !s.recordEvent(w, r, audit.Event{Type: "session." + action, Target: l.Info.Target, Session: l.Info.ID, Data: data}) {
		return
	}
	if err := act(l, by, in.Reason); err != nil {
		data["error"] = err.Error()
		s.recordEvent(w, r, audit.Event{Type: "session." + action + "_failed", Target: l.Info.Target, Session: l.Info.ID, Data: data})
		controlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ControlResponse{Session: l.Info.ID, Action: action, Status: l.Status()})
}

func (s *Server) pauseSession(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, "pause", func(l *session.Live, by, reason string) error { return l.Pause(by, reason) })
}

func (s *Server) resumeSession(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, "resume", func(l *session.Live, by, _ string) error { return l.Resume(by) })
}

func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, "terminate", func(l *session.Live, by, reason string) error {
		msg := "terminated by " + by
		if reason != "" {
			msg += ": " + reason
		}
		return l.Terminate(by, msg)
	})
}

// watchSession streams a live session as asciicast v2: the recording's
// header, every event from the session's beginning (catch-up from the
// recording), then live events until the session ends or the watcher
// leaves. With "Accept: text/event-stream" the same lines come as
// server-sent events (the header as event "header", the end as event
// "end"). Every watch is audited, with how it ended.
func (s *Server) watchSession(w http.ResponseWriter, r *http.Request) {
	l, ok := s.liveSession(w, r)
	if !ok {
		return
	}
	wt, err := l.Watch(watchBuffer)
	if err != nil {
		controlError(w, err)
		return
	}
	defer wt.Close()
	if !s.recordEvent(w, r, audit.Event{Type: "session.watch", Target: l.Info.Target, Session: l.Info.ID, Data: map[string]any{"user": l.Info.User}}) {
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	st := &stream{rc: http.NewResponseController(w), bw: bufio.NewWriterSize(w, 32<<10), sse: sse}
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-asciicast")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	started, events := s.Now(), 0
	end := "watcher disconnected"
	defer func() {
		// The request's context is usually cancelled by now (the
		// watcher left): the event must still be written.
		s.Audit.Append(context.WithoutCancel(r.Context()), audit.Event{Type: "session.watch_end", Actor: identity(r).Claims.Subject, Target: l.Info.Target,
			Session: l.Info.ID, Source: sourceAddr(r).String(),
			Data: map[string]any{"reason": end, "events": events, "duration_s": s.Now().Sub(started).Seconds()}})
	}()

	err = wt.CatchUp(st.header, func(line []byte) error { events++; return st.line("", line) })
	if err != nil {
		// The live part still follows: say what is missing.
		s.Log.Warn("watch catch-up incomplete", "session", l.Info.ID, "err", err)
		st.marker(0, "vigil: the session's beginning could not be read: "+err.Error())
	}
	if err := st.flush(); err != nil {
		return
	}
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	// Lines are flushed to the watcher at most watchFlush after they
	// arrive: one write for many events when the session is busy.
	flush := time.NewTimer(watchFlush)
	flush.Stop()
	dirty := false
	for {
		select {
		case line, ok := <-wt.C:
			if !ok {
				end = wt.Reason()
				st.marker(s.Now().Sub(l.Info.StartedAt).Seconds(), end)
				st.end(end)
				st.flush()
				return
			}
			events++
			wt.Took(line)
			if st.line("", line) != nil {
				return
			}
			if !dirty {
				dirty = true
				flush.Reset(watchFlush)
			}
		case <-flush.C:
			dirty = false
			if st.flush() != nil {
				return
			}
		case <-keepalive.C:
			if sse {
				st.bw.WriteString(": keepalive\n\n")
				if st.flush() != nil {
					return
				}
			}
		case <-r.Context().Done():
			return
		}
	}
}

// stream writes asciicast lines, plain or as server-sent events.
type stream struct {
	rc  *http.ResponseController
	bw  *bufio.Writer
	sse bool
	buf []byte
}

func (st *stream) line(event string, line []byte) error {
	if st.sse {
		if event != "" {
			st.bw.WriteString("event: " + event + "\n")
		}
		st.bw.WriteString("data: ")
		st.bw.Write(line)
		_, err := st.bw.WriteString("\n\n")
		return err
	}
	st.bw.Write(line)
	return st.bw.WriteByte('\n')
}

func (st *stream) header(h recording.Header) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return st.line("header", b)
}

func (st *stream) marker(secs float64, label string) error {
	st.buf = recording.AppendEvent(st.buf[:0], secs, recording.CodeMarker, []byte(label))
	return st.line("", st.buf)
}

func (st *stream) end(reason string) {
	if st.sse {
		b, _ := json.Marshal(map[string]string{"reason": reason})
		st.line("end", b)
	}
}

func (st *stream) flush() error {
	if err := st.bw.Flush(); err != nil {
		return err
	}
	return st.rc.Flush()
}
