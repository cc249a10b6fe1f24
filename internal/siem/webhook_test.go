package siem

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
)

// testSecret signs the test webhooks.
var testSecret = []byte("test-siem-secret")

// receiver is a webhook endpoint on 127.0.0.1 that checks the signature
// and headers of every request and records the seqs it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// status answers request n (from 1); nil accepts all.
	status func(n int) int

	// mu guards requests, got and sizes.
	mu       sync.Mutex
	requests int
	got      []int64
	// sizes are the event counts and body lengths of accepted requests.
	sizes  []int
	bodies []int
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{t: t, status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: read: %v", err)
		return
	}
	if err := alert.VerifySignature(testSecret, req.Header.Get(alert.HeaderTimestamp), req.Header.Get(alert.HeaderSignature), body, time.Now(), 0); err != nil {
		r.t.Errorf("receiver: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		r.t.Errorf("receiver: Content-Type: got %q, want application/json", ct)
	}
	var events []audit.Event
	if err := json.Unmarshal(body, &events); err != nil || len(events) == 0 {
		r.t.Errorf("receiver: body is not a non-empty JSON array of events: %v", err)
		return
	}
	if got, want := req.Header.Get(HeaderBatch), fmt.Sprintf("%d-%d", events[0].Seq, events[len(events)-1].Seq); got != want {
		r.t.Errorf("receiver: %s: got %q, want %q", HeaderBatch, got, want)
	}
	r.mu.Lock()
	r.requests++
	status := http.StatusOK
	if r.status != nil {
		status = r.status(r.requests)
	}
	if status/100 == 2 {
		for _, ev := range events {
			r.got = append(r.got, ev.Seq)
		}
		r.sizes = append(r.sizes, len(events))
		r.bodies = append(r.bodies, len(body))
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

// received returns the seqs accepted, in order.
func (r *receiver) received() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.got...)
}

// webhook returns a sink posting to r.
func (r *receiver) webhook(name string) *Webhook {
	return &Webhook{SinkName: name, URL: r.srv.URL + "/siem", Secret: testSecret}
}

// TestWebhookThroughFailures: 500s for a while, then 200s: every event
// arrives once, in order, in signed batches of at most 500.
func TestWebhookThroughFailures(t *testing.T) {
	db := openDB(t)
	l := openLog(t, db)
	rcv := newReceiver(t, func(n int) int {
		if n <= 4 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	appendN(t, l, 1100, 20)
	reg := prometheus.NewRegistry()
	startForwarder(t, db, l, reg, rcv.webhook("hook"))
	waitFor(t, "cursor at 1100", func() bool { return cursorOf(t, db, "hook") == 1100 })
	checkExactlyOnce(t, rcv.received(), 1100)
	rcv.mu.Lock()
	sizes := rcv.sizes
	rcv.mu.Unlock()
	for _, n := range sizes {
		if n > 500 {
			t.Fatalf("batch sizes %v: one is over 500", sizes)
		}
	}
	if f := metricValue(t, reg, "vigil_siem_send_failures_total", "hook"); f != 4 {
		t.Fatalf("failures: got %v, want 4", f)
	}
}

// TestWebhookBatchLimits: Send takes the longest prefix within 500
// events and 1 MiB, and an event larger than 1 MiB alone.
func TestWebhookBatchLimits(t *testing.T) {
	rcv := newReceiver(t, nil)
	ev := func(seq int64, size int) audit.Event {
		return audit.Event{Seq: seq, Time: t0, Type: "x", Data: map[string]any{"pad": strings.Repeat("y", size)}}
	}
	many := func(n, size int) []audit.Event {
		var out []audit.Event
		for i := range n {
			out = append(out, ev(int64(i+1), size))
		}
		return out
	}
	tests := []struct {
		name   string
		events []audit.Event
		want   int
	}{
		{"one", many(1, 10), 1},
		{"500 of 600 small", many(600, 10), 500},
		{"3 of 300 KiB", many(5, 300<<10), 3},
		{"one of 2 MiB alone", []audit.Event{ev(1, 2<<20), ev(2, 10)}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := rcv.webhook("hook").Send(context.Background(), tc.events)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Fatalf("got %d events sent, want %d", n, tc.want)
			}
		})
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for i, b := range rcv.bodies {
		if b > webhookMaxBody && rcv.sizes[i] > 1 {
			t.Fatalf("request %d: %d events in %d bytes, over 1 MiB", i, rcv.sizes[i], b)
		}
	}
}

func TestWebhookCEFBody(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ = io.ReadAll(req.Body)
	}))
	t.Cleanup(srv.Close)
	w := &Webhook{SinkName: "hook", URL: srv.URL, Secret: testSecret, Format: FormatCEF}
	if _, err := w.Send(context.Background(), []audit.Event{authDenied}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	if err := json.Unmarshal(body, &lines); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if want := strings.TrimSuffix(string(CEF(authDenied)), "\n"); len(lines) != 1 || lines[0] != want {
		t.Fatalf("got %q, want [%q]", lines, want)
	}
}

func TestWebhookFailures(t *testing.T) {
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "http://127.0.0.1:1/elsewhere", http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	tests := []struct {
		name    string
		w       *Webhook
		wantErr string
	}{
		{"redirect not followed", &Webhook{SinkName: "h", URL: redirect.URL + "/tok", Secret: testSecret},
			"siem: webhook h: events 7-7: receiver answered 302 Found"},
		{"receiver down, URL not repeated", &Webhook{SinkName: "h", URL: goneURL + "/secret-token", Secret: testSecret},
			"siem: webhook h: events 7-7: dial tcp"},
		{"no secret", &Webhook{SinkName: "h", URL: redirect.URL}, "siem: webhook h: no signing secret; refusing to send unsigned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.w.Send(context.Background(), []audit.Event{authDenied})
			if n != 0 || err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("got %d, %v, want 0 and %q", n, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Fatalf("error %q repeats the URL", err)
			}
		})
	}
}

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		name    string
		w       *Webhook
		wantErr string
	}{
		{"https", &Webhook{SinkName: "h", URL: "https://siem.example/in", Secret: testSecret}, ""},
		{"loopback http", &Webhook{SinkName: "h", URL: "http://127.0.0.1:9000/in", Secret: testSecret}, ""},
		{"localhost http", &Webhook{SinkName: "h", URL: "http://localhost/in", Secret: testSecret}, ""},
		{"no name", &Webhook{URL: "https://x/", Secret: testSecret}, "siem: webhook sink without a name"},
		{"no secret", &Webhook{SinkName: "h", URL: "https://x/"}, "siem: webhook h: no signing secret"},
		{"remote http", &Webhook{SinkName: "h", URL: "http://siem.example/in", Secret: testSecret},
			"siem: webhook h: plain http is allowed only to a loopback address; use https"},
		{"ftp", &Webhook{SinkName: "h", URL: "ftp://siem.example/in", Secret: testSecret}, `siem: webhook h: URL scheme "ftp" is not http(s)`},
		{"relative", &Webhook{SinkName: "h", URL: "/in", Secret: testSecret}, "siem: webhook h: URL is not an absolute http(s) URL"},
		{"bad format", &Webhook{SinkName: "h", URL: "https://x/", Secret: testSecret, Format: "leef"},
			`siem: webhook h: unknown format "leef" (want "jsonl" or "cef")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}
