// Package throttle records why a copy is held back: the watchers hold it
// while the source is stressed, the lag is high or a disk or the WAL is
// critical, each under its own name, and the copy waits while any hold is
// set. Streaming never waits, so the slot (or the event stream) keeps
// draining.
package throttle

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Holds is the set of holds on one copy. The zero value holds nothing and
// logs through slog's default logger.
type Holds struct {
	Log *slog.Logger

	mu      sync.Mutex
	reasons map[string]string // who holds → why
}

// Throttle holds the copy back for reason until Unthrottle(source).
func (h *Holds) Throttle(source, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reasons == nil {
		h.reasons = map[string]string{}
	}
	if _, already := h.reasons[source]; !already {
		h.log().Warn("copy throttled", "code", "SLUICE-THROTTLE", "by", source, "reason", reason)
	}
	h.reasons[source] = reason
}

// Unthrottle lifts the hold set by source.
func (h *Holds) Unthrottle(source string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.reasons[source]; ok {
		delete(h.reasons, source)
		h.log().Info("copy throttle released", "by", source)
	}
}

// Reasons returns the holds now (empty when the copy runs freely).
func (h *Holds) Reasons() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.reasons))
	maps.Copy(out, h.reasons)
	return out
}

// Held reports whether any hold is set.
func (h *Holds) Held() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reasons) > 0
}

func (h *Holds) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// Wait waits while held reports true (a pause, a hold), looking every
// 200 ms. It reports false when ctx ends or stop closes first (stop may be
// nil).
func Wait(ctx context.Context, stop <-chan struct{}, held func() bool) bool {
	for held() {
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
	return true
}
