package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook request headers.
const (
	HeaderID        = "X-Vigil-Alert-Id"
	HeaderTimestamp = "X-Vigil-Timestamp"
	HeaderSignature = "X-Vigil-Signature"
)

// webhookTimeout bounds one delivery attempt, connection included: a
// receiver that hangs is a failure to retry, not a stuck sink.
const webhookTimeout = 10 * time.Second

// maxDrain bounds how much of a response body is read (and discarded) so
// the connection can be reused.
const maxDrain = 64 << 10

// DefaultSignatureMaxAge is the age limit VerifySignature applies when
// given zero.
const DefaultSignatureMaxAge = 5 * time.Minute

// Webhook is a Sink that POSTs each alert as JSON (the Alert's own JSON
// form) with these headers:
//
//	Content-Type: application/json
//	X-Vigil-Alert-Id: the alert id (receivers deduplicate on it)
//	X-Vigil-Timestamp: Unix seconds when the request was signed
//	X-Vigil-Signature: "sha256=" + hex(HMAC-SHA256(Secret, timestamp + "." + body))
//
// Any 2xx response is a delivery; anything else, a transport error or no
// answer within 10 s is a failure the Dispatcher retries. Redirects are not
// followed (a 3xx is a failure). Errors never include the URL, which may
// carry a token in its path.
type Webhook struct {
	// SinkName names the sink (and its delivery cursor).
	SinkName string
	// URL receives the POSTs: https, or http to a loopback address.
	URL string
	// Secret is the HMAC-SHA256 key; it must not be empty.
	Secret []byte
	// Min drops alerts less severe; empty means every alert.
	Min Severity
	// Client sends the requests; nil means a default client. Either way
	// redirects are not followed and an attempt is bounded by 10 s.
	Client *http.Client
}

// Name returns w.SinkName.
func (w *Webhook) Name() string { return w.SinkName }

// MinSeverity returns w.Min.
func (w *Webhook) MinSeverity() Severity { return w.Min }

// Validate checks the configuration; NewDispatcher calls it.
func (w *Webhook) Validate() error {
	if w.SinkName == "" {
		return errors.New("alert: webhook without a name")
	}
	if len(w.Secret) == 0 {
		return fmt.Errorf("alert: webhook %s: no signing secret", w.SinkName)
	}
	if w.Min != "" && w.Min.Rank() == 0 {
		return fmt.Errorf("alert: webhook %s: unknown minimum severity %q", w.SinkName, w.Min)
	}
	if err := CheckURL(w.URL); err != nil {
		return fmt.Errorf("alert: webhook %s: %w", w.SinkName, err)
	}
	return nil
}

// CheckURL accepts an https URL, or an http URL to a loopback address:
// the rule for every outgoing webhook (alerts, SIEM). Its errors never
// repeat the URL (it may hold a token).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("URL is not an absolute http(s) URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return errors.New("plain http is allowed only to a loopback address; use https")
	default:
		return fmt.Errorf("URL scheme %q is not http(s)", u.Scheme)
	}
	return nil
}

// isLoopback reports whether host names the local machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send POSTs a once; nil means the receiver answered 2xx.
func (w *Webhook) Send(ctx context.Context, a Alert) error {
	if len(w.Secret) == 0 {
		return fmt.Errorf("alert: webhook %s: no signing secret; refusing to send unsigned", w.SinkName)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("alert: webhook %s: alert %d: %w", w.SinkName, a.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert: webhook %s: bad URL", w.SinkName)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, strconv.FormatInt(a.ID, 10))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
	resp, err := w.client().Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("alert: webhook %s: alert %d: %w", w.SinkName, a.ID, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("alert: webhook %s: alert %d: receiver answered %s", w.SinkName, a.ID, resp.Status)
	}
	return nil
}

// client returns w.Client, or a default one, set never to follow a
// redirect: a signed alert goes only where it was configured to go.
func (w *Webhook) client() *http.Client {
	c := http.Client{Timeout: webhookTimeout}
	if w.Client != nil {
		c = *w.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Sign returns the X-Vigil-Signature value for body sent at timestamp
// (Unix seconds, as in X-Vigil-Timestamp).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook body against its X-Vigil-Timestamp and
// X-Vigil-Signature headers, for receivers and tests. It also rejects a
// timestamp more than maxAge before or after now (a replay, or a skewed
// clock); zero maxAge means DefaultSignatureMaxAge.
func VerifySignature(secret []byte, timestamp, signature string, body []byte, now time.Time, maxAge time.Duration) error {
	if maxAge <= 0 {
		maxAge = DefaultSignatureMaxAge
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("alert: signature timestamp %q is not Unix seconds", timestamp)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > maxAge || age < -maxAge {
		return fmt.Errorf("alert: signature timestamp is %v from now, more than %v", age.Round(time.Second), maxAge)
	}
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return errors.New(`alert: signature does not start with "sha256="`)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return errors.New("alert: signature is not hex")
	}
	want, _ := hex.DecodeString(strings.TrimPrefix(Sign(secret, timestamp, body), "sha256="))
	if !hmac.Equal(got, want) {
		return errors.New("alert: signature does not match")
	}
	return nil
}
