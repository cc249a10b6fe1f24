package alert

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":1}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := Sign(testSecret, ts, body)
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	future := strconv.FormatInt(now.Add(10*time.Minute).Unix(), 10)
	tests := []struct {
		name      string
		secret    []byte
		timestamp string
		signature string
		body      []byte
		maxAge    time.Duration
		want      string // "" means valid
	}{
		{"valid", testSecret, ts, good, body, time.Minute, ""},
		{"valid with default max age", testSecret, ts, good, body, 0, ""},
		{"old but within max age", testSecret, old, Sign(testSecret, old, body), body, time.Hour, ""},
		{"wrong secret", []byte("other"), ts, good, body, time.Minute, "does not match"},
		{"body changed", testSecret, ts, good, []byte(`{"id":2}`), time.Minute, "does not match"},
		{"timestamp changed", testSecret, strconv.FormatInt(now.Unix()-1, 10), good, body, time.Minute, "does not match"},
		{"too old", testSecret, old, Sign(testSecret, old, body), body, 5 * time.Minute, "from now"},
		{"too far ahead", testSecret, future, Sign(testSecret, future, body), body, 5 * time.Minute, "from now"},
		{"timestamp not a number", testSecret, "yesterday", good, body, time.Minute, "not Unix seconds"},
		{"no prefix", testSecret, ts, strings.TrimPrefix(good, "sha256="), body, time.Minute, "sha256="},
		{"not hex", testSecret, ts, "sha256=zz", body, time.Minute, "not hex"},
		{"empty", testSecret, ts, "", body, time.Minute, "sha256="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.secret, tc.timestamp, tc.signature, tc.body, now, tc.maxAge)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestWebhookSend(t *testing.T) {
	a := Alert{ID: 7, Time: t0, LastTime: t0, Severity: High, Kind: "rule", Summary: "x", Count: 1}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		client  *http.Client
		want    string // "" means delivered
	}{
		{"200", func(w http.ResponseWriter, r *http.Request) {}, nil, ""},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, nil, ""},
		{"202 with a body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(strings.Repeat("ok", 100_000)))
		}, nil, ""},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) }, nil, "500"},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, nil, "404"},
		{"hang up", func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, nil, "EOF"},
		{"no answer in time", func(w http.ResponseWriter, r *http.Request) {
			// The server notices the client leaving only once the body is read.
			io.ReadAll(r.Body)
			<-r.Context().Done()
		},
			&http.Client{Timeout: 50 * time.Millisecond}, "Timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			w := &Webhook{SinkName: "h", URL: srv.URL + "/token/s3cr3t-path", Secret: testSecret, Client: tc.client}
			err := w.Send(context.Background(), a)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cr3t"):
				t.Fatalf("got %v, want an error without the URL", err)
			}
		})
	}
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	for _, client := range []*http.Client{nil, {}} {
		w := &Webhook{SinkName: "h", URL: srv.URL, Secret: testSecret, Client: client}
		err := w.Send(context.Background(), Alert{ID: 1, Severity: Low, Kind: "rule", Summary: "x"})
		if err == nil || !strings.Contains(err.Error(), "307") {
			t.Fatalf("got %v, want a 307 failure", err)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("redirect target got %d requests, want 0", n)
	}
}

func TestWebhookSendUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := srv.URL + "/token/s3cr3t-path"
	srv.Close()
	w := &Webhook{SinkName: "h", URL: url, Secret: testSecret}
	err := w.Send(context.Background(), Alert{ID: 1})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.HasPrefix(err.Error(), "alert: webhook h") {
		t.Fatalf("got %v, want an alert: webhook h error without the URL", err)
	}
	w.Secret = nil
	if err := w.Send(context.Background(), Alert{ID: 1}); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("no secret: got %v, want a refusal", err)
	}
}

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		name string
		w    Webhook
		want string // "" means valid
	}{
		{"https", Webhook{SinkName: "a", URL: "https://siem.example/hook", Secret: testSecret, Min: High}, ""},
		{"http loopback", Webhook{SinkName: "a", URL: "http://127.0.0.1:9000/hook", Secret: testSecret}, ""},
		{"http localhost", Webhook{SinkName: "a", URL: "http://localhost/hook", Secret: testSecret}, ""},
		{"http ipv6 loopback", Webhook{SinkName: "a", URL: "http://[::1]:80/", Secret: testSecret}, ""},
		{"http remote", Webhook{SinkName: "a", URL: "http://siem.example/hook", Secret: testSecret}, "use https"},
		{"other scheme", Webhook{SinkName: "a", URL: "ftp://siem.example/", Secret: testSecret}, "scheme"},
		{"relative", Webhook{SinkName: "a", URL: "/hook", Secret: testSecret}, "absolute"},
		{"no name", Webhook{URL: "https://siem.example/", Secret: testSecret}, "without a name"},
		{"no secret", Webhook{SinkName: "a", URL: "https://siem.example/"}, "secret"},
		{"bad severity", Webhook{SinkName: "a", URL: "https://siem.example/", Secret: testSecret, Min: "urgent"}, "severity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}
