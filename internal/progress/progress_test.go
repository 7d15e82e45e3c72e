package progress

import (
	"testing"
	"time"
)

// The copy rate is the recent one: a table that waited an hour for its turn
// shows the speed of its own copy, a paused copy falls to zero, and the ETA
// follows the rate.
func TestRateIsRecent(t *testing.T) {
	tr := &Tracker{}
	tb := tr.Add("public.logs", 10_000_000, 0)
	tb.SetPhase("copying")
	start := time.Now().Add(time.Hour) // its first row comes an hour after Add
	tb.firstRow.Store(start.UnixNano())

	tb.done.Store(100_000)
	s := tb.snapshotAt(start.Add(10 * time.Second))
	if s.RowsPerSec < 9_999 || s.RowsPerSec > 10_001 {
		t.Fatalf("rate %.0f rows/s, want 10000 (100,000 rows in 10 s)", s.RowsPerSec)
	}
	if want := 990 * time.Second; s.ETA < want-time.Second || s.ETA > want+time.Second {
		t.Fatalf("ETA %s, want about %s", s.ETA, want)
	}

	// paused: no rows for more than the window
	for sec := 11; sec <= 50; sec++ {
		s = tb.snapshotAt(start.Add(time.Duration(sec) * time.Second))
	}
	if s.RowsPerSec > 3_000 {
		t.Fatalf("rate %.0f rows/s after 40 s without a row; want it near zero", s.RowsPerSec)
	}
	s = tb.snapshotAt(start.Add(80 * time.Second))
	if s.RowsPerSec != 0 || s.ETA != -1 {
		t.Fatalf("rate %.0f, ETA %s after 70 s without a row; want 0 and unknown", s.RowsPerSec, s.ETA)
	}

	// copied: the mean of its own copy, from its first row to its last
	tb.done.Store(10_000_000)
	tb.finished.Store(start.Add(1000 * time.Second).UnixNano())
	tb.phase.Store("streaming")
	if s = tb.snapshotAt(start.Add(5000 * time.Second)); s.RowsPerSec != 10_000 {
		t.Fatalf("rate once copied %.0f rows/s, want 10000", s.RowsPerSec)
	}
}

// A resumed table counts only this run's rows in its rate.
func TestRateOfAResumedTable(t *testing.T) {
	tr := &Tracker{}
	tb := tr.Add("public.t", 1_000_000, 600_000)
	start := time.Now()
	tb.firstRow.Store(start.UnixNano())
	tb.done.Store(650_000)
	if s := tb.snapshotAt(start.Add(5 * time.Second)); s.RowsPerSec != 10_000 {
		t.Fatalf("rate %.0f rows/s, want 10000 (50,000 new rows in 5 s)", s.RowsPerSec)
	}
}

func TestNoRowsNoRate(t *testing.T) {
	tb := (&Tracker{}).Add("public.t", 100, 0)
	if s := tb.Snapshot(); s.RowsPerSec != 0 || s.ETA != -1 {
		t.Fatalf("%+v", s)
	}
	tb.AddRows(5)
	if tb.firstRow.Load() == 0 {
		t.Fatal("the first row did not start the clock")
	}
}
