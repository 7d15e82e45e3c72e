package syncer

// Throttle holds the copy back for reason until Unthrottle(source). Watchers
// call it when the source is stressed, the lag is high or disk or WAL is
// critical; streaming never waits, so the slot keeps draining.
func (s *Syncer) Throttle(source, reason string) { s.holds.Throttle(source, reason) }

// Unthrottle lifts the hold set by source.
func (s *Syncer) Unthrottle(source string) { s.holds.Unthrottle(source) }

// Throttled returns the current reasons (empty when the copy runs freely).
func (s *Syncer) Throttled() map[string]string { return s.holds.Reasons() }
