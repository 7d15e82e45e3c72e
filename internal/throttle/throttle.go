// Package throttle records why a copy is held back: a person pauses it, the
// watchers hold it while the source is stressed, the lag is high or a disk
// or the WAL is critical, each under its own name, and the copy waits while
// it is paused or any hold is set. Streaming never waits, so the slot (or
// the event stream) keeps draining.
package throttle

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Holds is the pause and the set of holds on one copy. The zero value holds
// nothing and logs through slog's default logger.
type Holds struct {
	Log *slog.Logger

	paused  atomic.Bool // by a person (POST /api/v1/pause)
	mu      sync.Mutex
	reasons map[string]string // who holds → why
}

// Pause holds the copy until Resume.
func (h *Holds) Pause() { h.paused.Store(true) }

// Resume lifts a pause (the watchers' holds stay).
func (h *Holds) Resume() { h.paused.Store(false) }

// Paused reports whether a person paused the copy.
func (h *Holds) Paused() bool { return h.paused.Load() }

// Blocked reports whether the copy must wait: paused, or held by a watcher.
func (h *Holds) Blocked() bool { return h.Paused() || h.Held() }

// WaitFree waits while the copy is blocked; false when ctx ends or stop
// closes first (stop may be nil).
func (h *Holds) WaitFree(ctx context.Context, stop <-chan struct{}) bool {
	for h.Blocked() {
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
