package pgstream

import (
	"testing"
	"time"
)

// A deadline passes when its time comes, not before; none by default or when
// set to the zero time; a time without a monotonic reading counts by the wall
// clock. (That a step of the system clock does not move a deadline set from
// time.Now is the monotonic clock's doing: Sub uses it when both times have
// one.)
func TestDeadline(t *testing.T) {
	var d connDeadline
	if _, ok := d.left(); ok || d.passed() {
		t.Fatal("a new deadline is set")
	}
	d.set(time.Now().Add(200 * time.Millisecond))
	if left, ok := d.left(); !ok || left <= 100*time.Millisecond || left > 200*time.Millisecond {
		t.Fatalf("200 ms ahead: left %v, set %v", left, ok)
	}
	if d.passed() {
		t.Fatal("passed 200 ms early")
	}
	time.Sleep(250 * time.Millisecond)
	if !d.passed() {
		t.Fatal("not passed 50 ms after it")
	}
	d.set(time.Time{})
	if _, ok := d.left(); ok || d.passed() {
		t.Fatal("the zero time did not remove the deadline")
	}
	d.set(time.Now().Add(-time.Minute))
	if !d.passed() {
		t.Fatal("a deadline a minute ago has not passed")
	}
	d.set(monoBase) // the origin itself is a deadline, not "none"
	if !d.passed() {
		t.Fatal("a deadline at the origin reads as none")
	}
	wall := time.Unix(0, time.Now().Add(time.Hour).UnixNano()) // no monotonic reading
	d.set(wall)
	if left, ok := d.left(); !ok || left < time.Hour-time.Second || left > time.Hour {
		t.Fatalf("an hour ahead by the wall clock: left %v", left)
	}
}
