package alert

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testSecret signs the test webhooks.
var testSecret = []byte("test-webhook-secret")

// waitDeadline bounds every wait for a condition; generous, because the
// race detector and a loaded machine are slow, and nothing asserts on it.
const waitDeadline = 20 * time.Second

// action is how a receiver answers one request.
type action int

const (
	accept  action = iota // 200, and the alert counts as received
	fail500               // 500
	hangup                // close the connection without an answer
	hang                  // wait until released, then accept
)

// receiver is a webhook endpoint on 127.0.0.1 that verifies the signature
// and headers of every request and records the alert ids it accepted.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	release chan struct{}

	// mu guards requests, got and respond.
	mu       sync.Mutex
	requests int
	got      []int64
	// respond decides the answer to request n (from 1); nil accepts all.
	respond func(n int) action
}

func newReceiver(t *testing.T, respond func(n int) action) *receiver {
	t.Helper()
	r := &receiver{t: t, respond: respond, release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	// Runs before srv.Close (cleanups are last in, first out), so a
	// hanging handler lets go.
	t.Cleanup(r.unblock)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: read body: %v", err)
		return
	}
	if err := VerifySignature(testSecret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), time.Minute); err != nil {
		r.t.Errorf("receiver: got signature error %v, want nil", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var a Alert
	if err := json.Unmarshal(body, &a); err != nil {
		r.t.Errorf("receiver: body: %v", err)
		return
	}
	if got, want := req.Header.Get(HeaderID), strconv.FormatInt(a.ID, 10); got != want {
		r.t.Errorf("receiver: got %s %q, want %q", HeaderID, got, want)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		r.t.Errorf("receiver: got Content-Type %q, want application/json", got)
	}
	if req.Method != http.MethodPost {
		r.t.Errorf("receiver: got method %s, want POST", req.Method)
	}

	r.mu.Lock()
	r.requests++
	act := accept
	if r.respond != nil {
		act = r.respond(r.requests)
	}
	r.mu.Unlock()

	switch act {
	case fail500:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case hangup:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			r.t.Errorf("receiver: hijack: %v", err)
			return
		}
		conn.Close()
		return
	case hang:
		select {
		case <-r.release:
		case <-req.Context().Done():
			return
		}
	}
	r.mu.Lock()
	r.got = append(r.got, a.ID)
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// unblock releases hanging requests (once).
func (r *receiver) unblock() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.release:
	default:
		close(r.release)
	}
}

// received returns the ids accepted so far, in order.
func (r *receiver) received() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// requestCount returns how many requests arrived.
func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// webhook returns a Webhook sink posting to r.
func (r *receiver) webhook(name string, min Severity) *Webhook {
	return &Webhook{SinkName: name, URL: r.srv.URL + "/hook", Secret: testSecret, Min: min}
}

// waitFor polls cond until it holds, failing the test after waitDeadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ids returns 1..n.
func ids(from, to int64) []int64 {
	out := []int64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
