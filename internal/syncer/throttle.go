package syncer

import (
	"sync"
)

// throttleState records why the copy is held back. The copy waits while any
// reason is set; streaming never waits, so the slot keeps draining.
type throttleState struct {
	mu      sync.Mutex
	reasons map[string]string // source of the throttle → why
}

// Throttle holds the copy back for reason until Unthrottle(source). Watchers
// call it when the source is stressed, the lag is high or disk or WAL is
// critical.
func (s *Syncer) Throttle(source, reason string) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	if s.throttle.reasons == nil {
		s.throttle.reasons = map[string]string{}
	}
	if _, already := s.throttle.reasons[source]; !already {
		s.log.Warn("copy throttled", "code", "SLUICE-THROTTLE", "by", source, "reason", reason)
	}
	s.throttle.reasons[source] = reason
}

// Unthrottle lifts the hold set by source.
func (s *Syncer) Unthrottle(source string) {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	if _, ok := s.throttle.reasons[source]; ok {
		delete(s.throttle.reasons, source)
		s.log.Info("copy throttle released", "by", source)
	}
}

// Throttled returns the current reasons (empty when the copy runs freely).
func (s *Syncer) Throttled() map[string]string {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	out := make(map[string]string, len(s.throttle.reasons))
	for k, v := range s.throttle.reasons {
		out[k] = v
	}
	return out
}

// holdCopy reports whether the copy must wait: paused by a person or held
// back by a throttle.
func (s *Syncer) holdCopy() bool {
	if s.paused.Load() {
		return true
	}
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	return len(s.throttle.reasons) > 0
}
