package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-pam/vigil/internal/recording"
)

// Errors of the live controls. The API maps them to 404 and 409.
var (
	// ErrNotLive is returned for a session that is not live here: never
	// was, or has ended (or is ending: a second terminate gets it too).
	ErrNotLive = errors.New("session: the session is not live")
	// ErrPaused is returned when pausing a paused session.
	ErrPaused = errors.New("session: the session is already paused")
	// ErrNotPaused is returned when resuming a session that is not paused.
	ErrNotPaused = errors.New("session: the session is not paused")
)

// Controls are a gateway's side of a live session: how to tell its user
// that it was paused or resumed, and how to end it. The registry calls
// them after changing the session's state, never under its own locks.
type Controls interface {
	// Paused tells the user that by paused the session for reason and
	// marks the recording.
	Paused(by, reason string)
	// Resumed tells the user that by resumed the session and releases
	// what a rule held back.
	Resumed(by string)
	// Terminate ends the session; the user sees reason.
	Terminate(by, reason string)
}

// Recorder is what a watcher's catch-up needs of a session's recording.
type Recorder interface {
	// Flush puts every event written so far on disk.
	Flush() error
	// Path is the recording file.
	Path() string
	// Keys are the keys the recording is encrypted with: catch-up reads
	// the file back only where they can decrypt it.
	Keys() *recording.Keys
	// Header is the recording's header, sent to a watcher whose catch-up
	// cannot read the file.
	Header() recording.Header
}

// Status is the live state of a session.
type Status struct {
	Paused      bool      `json:"paused"`
	PausedBy    string    `json:"paused_by,omitempty"`
	PauseReason string    `json:"pause_reason,omitempty"`
	PausedAt    time.Time `json:"paused_at,omitzero"`
	Watchers    int       `json:"watchers"`
}

// Live is one live session: its identity, its pause valve and its
// watchers. Gateways publish the session's recorded events to it (Publish
// is a recording.Tap) and call Wait on their relay paths.
type Live struct {
	// Info is the session's record as it started; it does not change.
	Info Session
	// Issuer is the "iss" of the session's token (revocation is by
	// issuer and jti).
	Issuer string

	ctl Controls
	rec Recorder
	now func() time.Time

	// pausedFlag mirrors paused for Wait's fast path.
	pausedFlag atomic.Bool

	// mu guards everything below.
	mu          sync.Mutex
	paused      bool
	pausedBy    string
	pauseReason string
	pausedAt    time.Time
	resumed     chan struct{} // closed on resume or end
	ending      bool          // terminate was asked or the session ended
	ended       bool
	endReason   string
	next        int64 // sequence number of the next published event
	watchers    map[*Watcher]struct{}
}

// Wait returns at once unless the session is paused; then it blocks until
// it is resumed or ends, or ctx ends (returning ctx's cause). It is the
// valve on every relay path: one atomic load when not paused.
func (l *Live) Wait(ctx context.Context) error {
	if !l.pausedFlag.Load() {
		return nil
	}
	l.mu.Lock()
	ch, paused := l.resumed, l.paused
	l.mu.Unlock()
	if !paused {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Paused reports whether the session is paused.
func (l *Live) Paused() bool { return l.pausedFlag.Load() }

// Status returns the live state.
func (l *Live) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Paused: l.paused, PausedBy: l.pausedBy, PauseReason: l.pauseReason, PausedAt: l.pausedAt, Watchers: len(l.watchers)}
}

// Can reports the error the control action ("pause", "resume" or
// "terminate") would return now, without acting.
func (l *Live) Can(action string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.ending:
		return ErrNotLive
	case action == "pause" && l.paused:
		return ErrPaused
	case action == "resume" && !l.paused:
		return ErrNotPaused
	}
	return nil
}

// Pause stops the session's flow until Resume: the gateway holds output
// back (flow control) and discards or holds input. by and reason are shown
// to the user, with control characters replaced.
func (l *Live) Pause(by, reason string) error {
	by, reason = recording.Clean(by), recording.Clean(reason)
	l.mu.Lock()
	switch {
	case l.ending:
		l.mu.Unlock()
		return ErrNotLive
	case l.paused:
		l.mu.Unlock()
		return ErrPaused
	}
	l.paused, l.pausedBy, l.pauseReason, l.pausedAt = true, by, reason, l.now()
	l.resumed = make(chan struct{})
	l.pausedFlag.Store(true)
	l.mu.Unlock()
	l.ctl.Paused(by, reason)
	return nil
}

// Resume restores the flow of a paused session.
func (l *Live) Resume(by string) error {
	by = recording.Clean(by)
	l.mu.Lock()
	switch {
	case l.ending:
		l.mu.Unlock()
		return ErrNotLive
	case !l.paused:
		l.mu.Unlock()
		return ErrNotPaused
	}
	l.unpause()
	l.mu.Unlock()
	l.ctl.Resumed(by)
	return nil
}

// unpause opens the valve; l.mu is held.
func (l *Live) unpause() {
	if l.paused {
		l.paused, l.pausedBy, l.pauseReason, l.pausedAt = false, "", "", time.Time{}
		l.pausedFlag.Store(false)
		close(l.resumed)
	}
}

// Terminate ends the session; its user sees reason. A session that is
// already ending gets ErrNotLive.
func (l *Live) Terminate(by, reason string) error {
	by, reason = recording.Clean(by), recording.Clean(reason)
	l.mu.Lock()
	if l.ending {
		l.mu.Unlock()
		return ErrNotLive
	}
	l.ending = true
	l.mu.Unlock()
	l.ctl.Terminate(by, reason)
	return nil
}

// Publish hands one recorded event to the watchers. It is the session's
// recording.Tap: it runs on the relay path, so it never blocks. The event
// is encoded once and shared; a watcher that holds more than
// watcherBudget bytes it has not taken yet is cut off, not waited for.
func (l *Live) Publish(seq int64, t float64, code string, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next = seq + 1
	if len(l.watchers) == 0 {
		return
	}
	line := recording.AppendEvent(make([]byte, 0, len(data)+32), t, code, data)
	for w := range l.watchers {
		if w.pending.Add(int64(len(line))) > watcherBudget {
			l.dropLocked(w, "the watcher fell behind and was cut off")
			continue
		}
		select {
		case w.ch <- line:
		default:
			l.dropLocked(w, "the watcher fell behind and was cut off")
		}
	}
}

// Flush puts every event recorded so far on disk (for a download of a
// session that is still live).
func (l *Live) Flush() error { return l.rec.Flush() }

// watcherBudget bounds the bytes a watcher may hold untaken: 50 watchers
// of a session cost at most 50 times this, however fast the session.
const watcherBudget = 4 << 20

// Watcher receives a live session's events.
type Watcher struct {
	l *Live
	// From is the sequence number of the first event on C: the events
	// before it are in the recording file.
	From int64
	// C carries the events from From on as asciicast v2 lines (without
	// newline; shared, read-only); it is closed when the watch ends
	// (Reason says why). Hand each line back with Took once written.
	C       <-chan []byte
	ch      chan []byte
	pending atomic.Int64 // bytes on C not yet taken
	reason  string       // guarded by l.mu
}

// Took frees line's bytes from w's budget.
func (w *Watcher) Took(line []byte) { w.pending.Add(-int64(len(line))) }

// Watch adds a watcher whose channel holds up to buffer events.
func (l *Live) Watch(buffer int) (*Watcher, error) {
	ch := make(chan []byte, buffer)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return nil, ErrNotLive
	}
	w := &Watcher{l: l, From: l.next, C: ch, ch: ch}
	l.watchers[w] = struct{}{}
	return w, nil
}

// encryptedCatchUp is the marker a watcher gets instead of the session's
// beginning when this server cannot decrypt recordings.
const encryptedCatchUp = "vigil: the output before this point is encrypted for the auditors and cannot be shown here; live output follows"

// CatchUp passes the recording's header to header and the session's
// events before w.From, read from the recording, to fn as event lines.
// Where the recording's keys cannot decrypt it (recordings encrypted to
// auditors only), it passes the header as written and one marker event
// saying so instead: the watcher sees the session from now on.
func (w *Watcher) CatchUp(header func(recording.Header) error, fn func(line []byte) error) error {
	if err := w.l.rec.Flush(); err != nil {
		return err
	}
	if keys := w.l.rec.Keys(); keys.CanDecrypt() {
		sent := false
		var line []byte
		err := recording.ReadEvents(w.l.rec.Path(), keys, w.From, func(h recording.Header) error {
			sent = true
			return header(h)
		}, func(ev recording.Event) error {
			line = recording.AppendEvent(line[:0], ev.Time, ev.Code, []byte(ev.Data))
			return fn(line)
		})
		// An identity that matches none of the recipients is as good as
		// none: the same marker.
		if !errors.Is(err, recording.ErrNoIdentity) || sent {
			return err
		}
	}
	if err := header(w.l.rec.Header()); err != nil {
		return err
	}
	t := 0.0
	if !w.l.Info.StartedAt.IsZero() {
		t = max(w.l.now().Sub(w.l.Info.StartedAt).Seconds(), 0)
	}
	return fn(recording.AppendEvent(nil, t, recording.CodeMarker, []byte(encryptedCatchUp)))
}

// Reason says why C was closed.
func (w *Watcher) Reason() string {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.reason
}

// Close stops the watch.
func (w *Watcher) Close() {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	w.l.dropLocked(w, "closed")
}

// dropLocked ends w's watch; l.mu is held.
func (l *Live) dropLocked(w *Watcher, reason string) {
	if _, ok := l.watchers[w]; !ok {
		return
	}
	delete(l.watchers, w)
	w.reason = reason
	close(w.ch)
}

// Registry holds the live sessions of this node, of every gateway.
type Registry struct {
	now func() time.Time
	// mu guards live.
	mu   sync.Mutex
	live map[string]*Live
}

// NewRegistry returns an empty registry; now may be nil (time.Now).
func NewRegistry(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, live: map[string]*Live{}}
}

// Register adds a session that has started. Its events should be
// published to the returned Live (rec's tap) from now on.
func (r *Registry) Register(info Session, issuer string, rec Recorder, ctl Controls) *Live {
	l := &Live{Info: info, Issuer: issuer, ctl: ctl, rec: rec, now: r.now, watchers: map[*Watcher]struct{}{}}
	r.mu.Lock()
	r.live[info.ID] = l
	r.mu.Unlock()
	return l
}

// Remove takes an ended session out of the registry: its watchers' streams
// end with reason, and anything waiting on its valve is released.
func (r *Registry) Remove(l *Live, reason string) {
	r.mu.Lock()
	delete(r.live, l.Info.ID)
	r.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ending, l.ended, l.endReason = true, true, reason
	l.unpause()
	for w := range l.watchers {
		l.dropLocked(w, "session ended: "+reason)
	}
}

// Get returns the live session id.
func (r *Registry) Get(id string) (*Live, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.live[id]
	return l, ok
}

// List returns the live sessions.
func (r *Registry) List() []*Live {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Live, 0, len(r.live))
	for _, l := range r.live {
		out = append(out, l)
	}
	return out
}

// EndMatching terminates every live session for which match is true,
// concurrently (each may wait a moment for its client), and returns how
// many it ended. Locks and token revocation use it.
func (r *Registry) EndMatching(match func(*Live) bool, by, reason string) int {
	var hit []*Live
	for _, l := range r.List() {
		if match(l) {
			hit = append(hit, l)
		}
	}
	var wg sync.WaitGroup
	var n atomic.Int64
	for _, l := range hit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.Terminate(by, reason) == nil {
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}
