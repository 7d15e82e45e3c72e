package syncer

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/failure"
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

// A failed automatic cutover is retried after 5 s, then twice as long each
// time up to 5 minutes: an attempt that requests the fence stalls writers,
// and what made it fail (a long transaction) may last.
func TestAutoCutoverBacksOff(t *testing.T) {
	var got []time.Duration
	d := time.Duration(0)
	for range 9 {
		d = nextAutoRetry(d)
		got = append(got, d)
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("pauses %v; want %v", got, want)
	}
}

// A panic in one of a run's goroutines ends the run with an internal error
// (exit 10, the stack in its context) instead of crashing the process.
func TestPanicInARunGoroutineEndsTheRun(t *testing.T) {
	eg, ctx := errgroup.WithContext(context.Background())
	g := runGroup{eg}
	g.Go(func() error { <-ctx.Done(); return nil })
	g.Go(func() error {
		var s *Syncer
		return s.tgt.DB.Ping() // a nil Syncer: the run's bug
	})
	err := g.Wait()
	if failure.Code(err) != "SLUICE-PANIC" || failure.ExitCode(err) != failure.ExitInternal || failure.ContextOf(err)["stack"] == "" {
		t.Fatalf("run with a panicking goroutine ended with %v (code %s, exit %d); want SLUICE-PANIC, exit 10, with the stack",
			err, failure.Code(err), failure.ExitCode(err))
	}
}
