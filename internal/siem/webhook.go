package siem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/vigil-pam/vigil/internal/alert"
	"github.com/vigil-pam/vigil/internal/audit"
)

// HeaderBatch is the webhook header naming the seqs of the first and last
// event of the batch, "FIRST-LAST".
const HeaderBatch = "X-Vigil-Batch"

// Webhook batch limits: a batch holds at most webhookMaxEvents events and
// its body at most webhookMaxBody bytes, unless a single event is larger,
// which is then sent alone.
const (
	webhookMaxEvents = 500
	webhookMaxBody   = 1 << 20
)

// webhookTimeout bounds one POST, connection included: a receiver that
// hangs is a failure to retry, not a stuck sink.
const webhookTimeout = 10 * time.Second

// maxDrain bounds how much of a response body is read (and discarded) so
// the connection can be reused.
const maxDrain = 64 << 10

// Webhook is a Sink that POSTs batches of events as a JSON array: with
// format "jsonl" each element is the event's JSONL object, with "cef" the
// event's CEF line as a JSON string. Each request has these headers:
//
//	Content-Type: application/json
//	X-Vigil-Batch: FIRST-LAST, the seqs of the first and last event
//	X-Vigil-Timestamp: Unix seconds when the request was signed
//	X-Vigil-Signature: "sha256=" + hex(HMAC-SHA256(Secret, timestamp + "." + body))
//
// The signature is the alert webhooks' (alert.Sign); receivers check it
// with alert.VerifySignature and deduplicate on seq. A 2xx answer is a
// delivery; anything else, a transport error or no answer within 10 s is
// a failure the Forwarder retries. Redirects are not followed. Errors
// never include the URL, which may carry a token.
type Webhook struct {
	// SinkName names the sink (and its forwarding cursor).
	SinkName string
	// URL receives the POSTs: https, or http to a loopback address.
	URL string
	// Secret is the HMAC-SHA256 key; it must not be empty.
	Secret []byte
	// Format is "jsonl" or "cef"; empty means "jsonl".
	Format string
	// Client sends the requests; nil means a default client. Either way
	// redirects are not followed and a request is bounded by 10 s.
	Client *http.Client
	// Now is the clock for X-Vigil-Timestamp; nil means time.Now.
	Now func() time.Time
}

// Name returns w.SinkName.
func (w *Webhook) Name() string { return w.SinkName }

// Validate checks the configuration; NewForwarder calls it.
func (w *Webhook) Validate() error {
	if w.SinkName == "" {
		return errors.New("siem: webhook sink without a name")
	}
	if len(w.Secret) == 0 {
		return fmt.Errorf("siem: webhook %s: no signing secret", w.SinkName)
	}
	if err := alert.CheckURL(w.URL); err != nil {
		return fmt.Errorf("siem: webhook %s: %w", w.SinkName, err)
	}
	if _, err := w.formatter(); err != nil {
		return fmt.Errorf("siem: webhook %s: %w", w.SinkName, err)
	}
	return nil
}

// formatter returns the function formatting one array element.
func (w *Webhook) formatter() (func(audit.Event) []byte, error) {
	switch w.Format {
	case "", FormatJSONL:
		return func(ev audit.Event) []byte { return bytes.TrimSuffix(JSONL(ev), []byte{'\n'}) }, nil
	case FormatCEF:
		return func(ev audit.Event) []byte {
			b, _ := marshal(string(bytes.TrimSuffix(CEF(ev), []byte{'\n'})))
			return b
		}, nil
	}
	_, err := lookupFormat(w.Format)
	return nil, err
}

// Send POSTs the longest prefix of events that fits one batch (at most
// 500 events and 1 MiB, or a single larger event) and returns how many it
// sent once the receiver answers 2xx; the Forwarder sends the rest next.
// Any failure returns 0.
func (w *Webhook) Send(ctx context.Context, events []audit.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if len(w.Secret) == 0 {
		return 0, fmt.Errorf("siem: webhook %s: no signing secret; refusing to send unsigned", w.SinkName)
	}
	format, err := w.formatter()
	if err != nil {
		return 0, fmt.Errorf("siem: webhook %s: %w", w.SinkName, err)
	}
	body, n := batchBody(events, format)
	first, last := events[0].Seq, events[n-1].Seq
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("siem: webhook %s: bad URL", w.SinkName)
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderBatch, fmt.Sprintf("%d-%d", first, last))
	req.Header.Set(alert.HeaderTimestamp, ts)
	req.Header.Set(alert.HeaderSignature, alert.Sign(w.Secret, ts, body))
	resp, err := w.client().Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return 0, fmt.Errorf("siem: webhook %s: events %d-%d: %w", w.SinkName, first, last, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, fmt.Errorf("siem: webhook %s: events %d-%d: receiver answered %s", w.SinkName, first, last, resp.Status)
	}
	return n, nil
}

// batchBody returns the JSON array of the longest prefix of events within
// the batch limits (at least one event) and its length.
func batchBody(events []audit.Event, format func(audit.Event) []byte) ([]byte, int) {
	body := []byte{'['}
	n := 0
	for _, ev := range events {
		if n == webhookMaxEvents {
			break
		}
		item := format(ev)
		// +2: the separator and the closing bracket.
		if n > 0 && len(body)+len(item)+2 > webhookMaxBody {
			break
		}
		if n > 0 {
			body = append(body, ',')
		}
		body = append(body, item...)
		n++
	}
	return append(body, ']'), n
}

// client returns w.Client, or a default one, set never to follow a
// redirect: signed events go only where they were configured to go.
func (w *Webhook) client() *http.Client {
	c := http.Client{Timeout: webhookTimeout}
	if w.Client != nil {
		c = *w.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Close does nothing: the client's idle connections are its own.
func (w *Webhook) Close() error { return nil }
