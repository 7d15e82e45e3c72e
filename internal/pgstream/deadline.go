package pgstream

import (
	"sync/atomic"
	"time"
)

// connDeadline is a connection's read or write deadline, safe to set from any
// goroutine. It is kept on the monotonic clock: stored as wall-clock time, a
// step of the system clock (NTP on a VM) made a deadline pass at once, and
// the stream spin on timeouts until the status update was really due, or
// hold it back by as much as the clock went back.
type connDeadline struct {
	at atomic.Int64 // since monoBase, in ns, shifted so 0 means none (see set)
}

// monoBase is the origin of deadlines; its monotonic reading is what counts.
var monoBase = time.Now()

// set makes t the deadline; the zero time removes it. t from time.Now().Add
// (pgconn's, context deadlines) carries a monotonic reading; a t without one
// is taken by its wall-clock time.
func (d *connDeadline) set(t time.Time) {
	if t.IsZero() {
		d.at.Store(0)
		return
	}
	v := int64(t.Sub(monoBase))
	if v >= 0 {
		v++ // 0 is "none"
	}
	d.at.Store(v)
}

// left returns the time until the deadline (≤ 0: passed), and false when
// there is none.
func (d *connDeadline) left() (time.Duration, bool) {
	v := d.at.Load()
	if v == 0 {
		return 0, false
	}
	if v > 0 {
		v--
	}
	return time.Duration(v) - time.Since(monoBase), true
}

// passed reports a deadline that has passed.
func (d *connDeadline) passed() bool {
	left, ok := d.left()
	return ok && left <= 0
}
