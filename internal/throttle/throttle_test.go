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

// Wait returns once nothing holds the copy, and false when the run ends or
// stops while it waits.
func TestWait(t *testing.T) {
	var h Holds
	h.Throttle("disk", "critical")
	time.AfterFunc(300*time.Millisecond, func() { h.Unthrottle("disk") })
	if !Wait(context.Background(), nil, h.Held) {
		t.Fatal("Wait reported a stop when the hold was lifted")
	}
	h.Throttle("disk", "critical")
	stop := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(stop) })
	if Wait(context.Background(), stop, h.Held) {
		t.Error("Wait went on after stop closed, the hold still set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if Wait(ctx, nil, h.Held) {
		t.Error("Wait went on after its context ended, the hold still set")
	}
}
