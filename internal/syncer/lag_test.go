package syncer

import (
	"testing"
	"time"
)

// The histogram is cumulative like Prometheus's, so two readings subtracted
// give the lag of the commits in between (what `make bench` reports).
func TestLagHistogramIsCumulative(t *testing.T) {
	var st statusState
	for _, d := range []time.Duration{20 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond, 900 * time.Millisecond, 2 * time.Hour} {
		st.recordLag(d)
	}
	h := st.lagHist
	at := func(bound float64) uint64 {
		for i, b := range h.Bounds {
			if b == bound {
				return h.Counts[i]
			}
		}
		t.Fatalf("no bucket %v in %v", bound, h.Bounds)
		return 0
	}
	if got := at(0.025); got != 1 {
		t.Errorf("commits with lag <= 25 ms = %d, want 1", got)
	}
	if got := at(0.15); got != 3 {
		t.Errorf("commits with lag <= 150 ms = %d, want 3", got)
	}
	if got := at(0.8); got != 3 { // the bench's lags sit between 0.5 and 1 s: they need buckets there
		t.Errorf("commits with lag <= 800 ms = %d, want 3", got)
	}
	if got := at(0.9); got != 4 {
		t.Errorf("commits with lag <= 900 ms = %d, want 4", got)
	}
	if got := at(1); got != 4 {
		t.Errorf("commits with lag <= 1 s = %d, want 4", got)
	}
	if got := at(300); got != 4 { // the 2-hour lag is only in +Inf (Count)
		t.Errorf("commits with lag <= 300 s = %d, want 4", got)
	}
	if h.Count != 5 || h.Sum < 7201 || h.Sum > 7202 {
		t.Errorf("count %d sum %v, want 5 and 7201.16", h.Count, h.Sum)
	}
}

func TestLagNeverNegative(t *testing.T) {
	if d := sinceSource(time.Now().Add(time.Second)); d != 0 { // source clock ahead of sluice's
		t.Errorf("lag from a commit 1 s in the future = %v, want 0", d)
	}
	if d := sinceSource(time.Now().Add(-2 * time.Second)); d < 2*time.Second || d > 3*time.Second {
		t.Errorf("lag from a commit 2 s ago = %v", d)
	}
}
