package syncer

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// --cutover=auto: an attempt cut short by the run's end (the stream broke
// while it waited for the lag) must leave the next run free to try again.
func TestAutoCutoverTriesAgainAfterARunEnds(t *testing.T) {
	s := &Syncer{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.opt.LagBound = time.Second
	s.opt.Cutover.CatchUpLimit = time.Minute
	s.status.autoTried.Store(true) // as the loop does before starting the attempt
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	began := time.Now()
	s.requestAutoCutover(ctx)
	if s.status.autoTried.Load() {
		t.Fatal("the attempt ended with the run and left autoTried set: no later run cuts over by itself")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the attempt returned %s after the run ended; want at once", d)
	}
}
