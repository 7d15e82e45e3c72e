package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
)

// Webhook posts every alert event as JSON: a Slack-compatible body
// ({"text": "…"}) with the structured fields beside it. Events are sent in
// order by one goroutine, each tried up to three times; a webhook that
// fails is logged (SLUICE-ALERT-WEBHOOK) and never blocks the sync.
type Webhook struct {
	url     string
	host    string // for logs: the URL itself is a secret (Slack's carry the token)
	client  *http.Client
	log     *slog.Logger
	labels  map[string]string // added to every body: slot, host
	queue   chan Event
	done    chan struct{}
	mu      sync.Mutex // guards closed and the queue's closing, so Notify never sends on a closed queue
	closed  bool
	backoff time.Duration
}

// NewWebhook starts the sender. labels go into every body.
func NewWebhook(rawURL string, timeout time.Duration, labels map[string]string, log *slog.Logger) *Webhook {
	host := "webhook"
	if u, err := url.Parse(rawURL); err == nil {
		host = u.Host
	}
	w := &Webhook{url: rawURL, host: host, client: &http.Client{Timeout: timeout}, log: log, labels: labels,
		queue: make(chan Event, 256), done: make(chan struct{}), backoff: time.Second}
	go w.run()
	return w
}

// Notify queues ev; when the queue is full the event is dropped and logged.
// After Close (a check or a verify may still end while sluice stops) the
// event is only logged.
func (w *Webhook) Notify(ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.log.Info("alert event after the webhook closed; not sent", "code", CodeWebhook, "webhook_host", w.host, "alert", ev.Code, "state", ev.State)
		return
	}
	select {
	case w.queue <- ev:
	default:
		w.log.Warn("alert webhook queue full; event dropped", "code", CodeWebhook, "webhook_host", w.host, "alert", ev.Code, "state", ev.State)
	}
}

// Close sends what is queued (until ctx ends) and stops.
func (w *Webhook) Close(ctx context.Context) {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		// the queued ones (and one in flight, if any) are not sent: say so
		w.log.Warn("alert webhook: exiting before every alert event was sent", "code", CodeWebhook, "webhook_host", w.host,
			"queued_unsent", len(w.queue))
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for ev := range w.queue {
		// A panic while sending one event is logged and the next is sent:
		// alerts keep going out, and the process does not exit with status 2.
		if err := failure.Guard(func() error { w.send(ev); return nil }); err != nil {
			w.log.Error("alert webhook: sending an event failed", "code", failure.Code(err), "webhook_host", w.host,
				"alert", ev.Code, "state", ev.State, "error", err.Error(), "stack", failure.ContextOf(err)["stack"])
		}
	}
}

// Body is what the webhook receives.
func (w *Webhook) Body(ev Event) map[string]any {
	text := fmt.Sprintf("[%s %s] %s: %s", strings.ToUpper(ev.State), ev.Severity, ev.Code, ev.Message)
	if ev.State == "resolved" {
		text = fmt.Sprintf("[RESOLVED] %s: %s", ev.Code, ev.Message)
	}
	if slot := w.labels["slot"]; slot != "" {
		text += " (sluice sync " + slot
		if h := w.labels["host"]; h != "" {
			text += " on " + h
		}
		text += ")"
	}
	if ev.State != "resolved" && ev.Hint != "" {
		text += "\n" + ev.Hint
	}
	body := map[string]any{"text": text, "status": ev.State, "code": ev.Code, "severity": ev.Severity,
		"subject": ev.Subject, "message": ev.Message, "value": ev.Value, "threshold": ev.Threshold, "unit": ev.Unit,
		"since": ev.Since, "at": ev.At, "check": ev.Check}
	if ev.Previous != "" {
		body["previous_severity"] = ev.Previous
	}
	if ev.Hint != "" {
		body["hint"] = ev.Hint
	}
	if len(ev.Context) > 0 {
		body["context"] = ev.Context
	}
	for k, v := range w.labels {
		body[k] = v
	}
	return body
}

func (w *Webhook) send(ev Event) {
	payload, _ := json.Marshal(w.Body(ev))
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(w.backoff << (attempt - 1))
		}
		req, err := http.NewRequest(http.MethodPost, w.url, bytes.NewReader(payload))
		if err != nil {
			lastErr = err
			break
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "sluice-alerts")
		resp, err := w.client.Do(req)
		if err != nil {
			// url.Error quotes the URL (as Go rewrote it: the configured
			// text could not be masked), which is a secret: keep the cause.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			lastErr = err
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 300 {
			return
		}
		lastErr = fmt.Errorf("HTTP %d", resp.StatusCode)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			break // the request is wrong; repeating it will not help
		}
	}
	msg := strings.ReplaceAll(lastErr.Error(), w.url, w.host) // in case a cause quotes it too
	w.log.Error("alert webhook failed", "code", CodeWebhook, "webhook_host", w.host, "alert", ev.Code,
		"state", ev.State, "subject", ev.Subject, "error", msg)
}
