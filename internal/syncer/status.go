package syncer

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
)

type statusState struct {
	started        time.Time
	applied        atomic.Uint64 // source position applied on the target
	pendingLSN     uint64        // position the next commit stores (loop goroutine only)
	walRetained    atomic.Int64
	walRetainedMax atomic.Int64
	currentLSN     atomic.Uint64
	oldestPending  atomic.Int64 // source commit time (unix nanos) of the oldest unapplied transaction; 0: none
	loopCommit     atomic.Int64 // source commit time (unix nanos) of the last transaction the apply loop has begun
	autoTried      atomic.Bool
	cutover        atomic.Pointer[CutoverReport]

	lagMu      sync.Mutex
	lagSamples []time.Duration // ring of recent apply lags
	lagNext    int
	lagHist    LagHistogram // every apply lag since the start
}

// LagWindow is how many recent target commits the lag quantiles cover.
const LagWindow = 4096

// LagBuckets are the upper bounds, in seconds, of the apply-lag histogram.
// Finest from 0.5 to 1 s: the default batch delay (500 ms) puts a busy
// stream's lags there, and a quantile read off the histogram is only as
// precise as the bucket it falls in.
var LagBuckets = []float64{0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1, 1.5, 2, 5, 10, 30, 60, 300}

// LagHistogram counts target commits by their lag, Prometheus style: Counts[i]
// is how many had a lag of at most Bounds[i] seconds (cumulative). Two
// readings subtracted give the lag over any stretch of time.
type LagHistogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

func (h *LagHistogram) observe(d time.Duration) {
	if h.Counts == nil {
		h.Bounds, h.Counts = LagBuckets, make([]uint64, len(LagBuckets))
	}
	v := d.Seconds()
	for i, b := range h.Bounds {
		if v <= b {
			h.Counts[i]++
		}
	}
	h.Count++
	h.Sum += v
}

func (st *statusState) recordLag(d time.Duration) {
	st.lagMu.Lock()
	defer st.lagMu.Unlock()
	st.lagHist.observe(d)
	if len(st.lagSamples) < LagWindow {
		st.lagSamples = append(st.lagSamples, d)
		return
	}
	st.lagSamples[st.lagNext] = d
	st.lagNext = (st.lagNext + 1) % LagWindow
}

// lagSnapshot returns the p50 and p99 of the recent lags and a copy of the
// histogram, read together.
func (st *statusState) lagSnapshot() (p50, p99 time.Duration, hist LagHistogram) {
	st.lagMu.Lock()
	s := slices.Clone(st.lagSamples)
	hist = st.lagHist
	hist.Counts = slices.Clone(hist.Counts)
	st.lagMu.Unlock()
	if len(s) == 0 {
		return 0, 0, hist
	}
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], hist
}

// Status is what `sluice status` and the API show.
type Status struct {
	Phase string `json:"phase"` // copying, streaming, cut over
	// Topology is "events" for an events sync (docs/EVENTS.md), which has
	// no slot, WAL or lag in bytes: Slot and the positions describe its
	// events. Empty for the log-based sync and the publisher.
	Topology            string            `json:"topology,omitempty"`
	Slot                string            `json:"slot"`
	Publication         string            `json:"publication"`
	Paused              bool              `json:"paused"`
	Throttled           map[string]string `json:"throttled,omitempty"` // why the copy is held back, by watcher
	AppliedLSN          string            `json:"applied_lsn"`
	SourceLSN           string            `json:"source_lsn"`
	LagBytes            int64             `json:"lag_bytes"`
	LagSeconds          float64           `json:"lag_seconds"`
	LagP50Seconds       float64           `json:"lag_p50_seconds"`
	LagP99Seconds       float64           `json:"lag_p99_seconds"` // p50/p99: of the last 4,096 target commits
	LagHistogram        LagHistogram      `json:"lag_histogram"`
	WALRetainedBytes    int64             `json:"wal_retained_bytes"`
	WALRetainedMaxBytes int64             `json:"wal_retained_max_bytes"`
	ChangesApplied      int64             `json:"changes_applied"`
	ChunksReread        int64             `json:"chunks_reread"` // reads a racing commit made sluice repeat (SLUICE-SYNC-REREAD)
	UptimeSeconds       float64           `json:"uptime_seconds"`
	Tables              []TableStatus     `json:"tables"`
	Cutover             *CutoverReport    `json:"cutover,omitempty"`
}

// TableStatus is one table's part of Status.
type TableStatus struct {
	Source         string  `json:"source"`
	Target         string  `json:"target"`
	Phase          string  `json:"phase"`
	RowsCopied     int64   `json:"rows_copied"`
	RowsEstimate   int64   `json:"rows_estimate"`
	RowsPerSecond  float64 `json:"rows_per_second"`
	ETASeconds     float64 `json:"eta_seconds"` // -1 when unknown
	ChangesApplied int64   `json:"changes_applied"`
}

// Status reports the sync's state now.
func (s *Syncer) Status() Status {
	st := Status{Slot: s.opt.Slot, Publication: s.opt.Publication, Paused: s.holds.Paused(), Throttled: s.Throttled(),
		WALRetainedBytes: s.status.walRetained.Load(), WALRetainedMaxBytes: s.status.walRetainedMax.Load(),
		ChunksReread: s.rereads.Load(), UptimeSeconds: time.Since(s.status.started).Seconds(),
		Cutover: s.status.cutover.Load()}
	applied := pglogrepl.LSN(s.status.applied.Load())
	st.AppliedLSN = applied.String()
	srcLSN := pglogrepl.LSN(s.status.currentLSN.Load())
	if stream := s.stream.Load(); stream != nil && stream.Received() > srcLSN {
		srcLSN = stream.Received()
	}
	st.SourceLSN = srcLSN.String()
	if srcLSN > applied {
		st.LagBytes = int64(srcLSN - applied)
	}
	st.LagSeconds = s.lag().Seconds()
	p50, p99, hist := s.status.lagSnapshot()
	st.LagP50Seconds, st.LagP99Seconds, st.LagHistogram = p50.Seconds(), p99.Seconds(), hist
	st.Phase = "streaming"
	if !s.prepared.Load() { // the tables' progress is not set up yet
		st.Phase = "starting"
		return st
	}
	for _, t := range s.tables {
		snap := t.progress.Snapshot()
		if !t.copied.Load() {
			st.Phase = "copying"
		}
		eta := -1.0
		if snap.ETA >= 0 {
			eta = snap.ETA.Seconds()
		}
		st.Tables = append(st.Tables, TableStatus{Source: t.plan.Source.Name.String(), Target: t.plan.Target, Phase: snap.Phase,
			RowsCopied: snap.Rows, RowsEstimate: snap.Total, RowsPerSecond: snap.RowsPerSec, ETASeconds: eta,
			ChangesApplied: t.changes.Load()})
		st.ChangesApplied += st.Tables[len(st.Tables)-1].ChangesApplied // the header is the tables' sum
	}
	if st.Cutover != nil {
		st.Phase = "cut over"
	}
	return st
}

// lag is how far the target is behind the source's commits: the age of the
// oldest source commit received and not yet applied, zero when none waits.
// A transaction the stream has delivered but the apply loop has not
// reached yet counts too (the loop may be busy for long, building a
// table's indexes): the age of the last one received, at least.
func (s *Syncer) lag() time.Duration {
	var lag time.Duration
	if oldest := s.status.oldestPending.Load(); oldest != 0 {
		lag = sinceSource(time.Unix(0, oldest))
	}
	if st := s.stream.Load(); st != nil {
		if last := st.LastCommitReceived(); !last.IsZero() && last.UnixNano() > s.status.loopCommit.Load() {
			lag = max(lag, sinceSource(last))
		}
	}
	return lag
}

// sinceSource is how long ago the source committed at t, by sluice's clock;
// never negative (the hosts' clocks may differ a little).
func sinceSource(t time.Time) time.Duration {
	return max(time.Since(t), 0)
}
