package throttle

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The copy is held while any watcher holds it, each hold is logged once
// when set and once when lifted, and Reasons is a copy callers may keep.
func TestHolds(t *testing.T) {
	var logs bytes.Buffer
	h := Holds{Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if h.Held() {
		t.Fatal("a new Holds holds the copy")
	}
	h.Throttle("stress", "10 sessions")
	h.Throttle("stress", "11 sessions") // updated, not logged again
	h.Throttle("lag", "lag 40 s")
	if !h.Held() || h.Reasons()["stress"] != "11 sessions" {
		t.Fatalf("after two holds: held %v, reasons %v", h.Held(), h.Reasons())
	}
	r := h.Reasons()
	r["stress"] = "changed by the caller"
	h.Unthrottle("stress")
	if !h.Held() || h.Reasons()["lag"] == "" {
		t.Errorf("the lag hold went with the stress one: %v", h.Reasons())
	}
	h.Unthrottle("lag")
	h.Unthrottle("lag") // lifting twice is harmless, logged once
	if h.Held() || len(h.Reasons()) != 0 {
		t.Errorf("after both lifted: held %v, %v", h.Held(), h.Reasons())
	}
	if n := strings.Count(logs.String(), "SLUICE-THROTTLE"); n != 2 {
		t.Errorf("%d SLUICE-THROTTLE lines for two holds:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "copy throttle released"); n != 2 {
		t.Errorf("%d release lines for two lifts:\n%s", n, logs.String())
	}
}

// WaitFree returns once neither a pause nor a hold blocks the copy, and
// false when the run ends or stops while it waits.
func TestWaitFree(t *testing.T) {
	var h Holds
	h.Throttle("disk", "critical")
	h.Pause()
	time.AfterFunc(300*time.Millisecond, func() { h.Unthrottle("disk") })
	time.AfterFunc(600*time.Millisecond, h.Resume)
	start := time.Now()
	if !h.WaitFree(context.Background(), nil) {
		t.Fatal("WaitFree reported a stop when the hold and the pause were lifted")
	}
	if waited := time.Since(start); waited < 600*time.Millisecond {
		t.Errorf("WaitFree returned after %s, while the copy was still paused", waited)
	}
	if h.Paused() || h.Blocked() {
		t.Errorf("after Resume: paused %v, blocked %v", h.Paused(), h.Blocked())
	}
	h.Pause() // a pause alone blocks, and stop ends the wait
	stop := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(stop) })
	if h.WaitFree(context.Background(), stop) {
		t.Error("WaitFree went on after stop closed, the copy still paused")
	}
	h.Resume()
	h.Throttle("disk", "critical")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if h.WaitFree(ctx, nil) {
		t.Error("WaitFree went on after its context ended, the hold still set")
	}
}
