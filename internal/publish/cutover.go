package publish

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
)

// CutoverReport says what a cutover of the partitioned topology did.
type CutoverReport struct {
	Fence         string           `json:"fence"`
	FenceID       string           `json:"fence_id"`
	FenceLSN      string           `json:"fence_lsn"`
	Partitions    int              `json:"partitions"`
	WritePauseMS  float64          `json:"write_pause_ms"` // from the lock request to done: what writers see
	LockWaitMS    float64          `json:"lock_wait_ms"`   // lock request until granted
	DrainMS       float64          `json:"drain_ms"`       // until every partition had applied the fence
	AutoIncrement map[string]int64 `json:"auto_increment,omitempty"`
	// AutoIncrementUnknown: see syncer.CutoverReport.
	AutoIncrementUnknown []string  `json:"auto_increment_unknown,omitempty"`
	FinishedAt           time.Time `json:"finished_at"`
	Published            int64     `json:"rows_published"` // row changes and copied rows
	// EarlierRun: the target records a cutover an earlier run made; this
	// run did not fence, and has no figures of it.
	EarlierRun bool `json:"earlier_run,omitempty"`
}

// Cutover waits for the copy (every partition applied every table's copied
// rows) and for the appliers to be nearly caught up, then fences writes on
// the source (LOCK TABLE … IN EXCLUSIVE MODE), writes a fence into the WAL,
// which the publisher broadcasts to every partition, and waits until every
// applier has recorded that fence in the target: everything before the
// fence is applied, on every partition. It then moves each AUTO_INCREMENT
// past its source sequence and lifts the fence.
func (p *Publisher) Cutover(ctx context.Context) (_ *CutoverReport, err error) {
	if !p.cutoverMu.TryLock() {
		return nil, failure.New(failure.Usage, "SLUICE-CUTOVER-BUSY", "a cutover is already running")
	}
	defer p.cutoverMu.Unlock()
	if r := p.cutover.Load(); r != nil {
		return r, nil
	}
	ctx, cancel := fence.UntilStopped(ctx, p.stop, p.ended)
	defer cancel()
	defer func() { err = fence.Ended(ctx, err) }()
	if err := p.waitFor(ctx, 10*time.Minute, "the copy is not done on every partition", p.copyDone); err != nil {
		return nil, err
	}
	// Catch up before fencing, so the fence stays up briefly: a probe mark
	// at the end of the stream, applied by every partition.
	target, err := p.probe(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.waitFor(ctx, 10*time.Minute, "the appliers did not catch up", func() bool {
		parts, err := p.tgt.Partitions(ctx, p.opt.Endpoint.Stream)
		return err == nil && AllPast(parts, p.opt.Partitions, target)
	}); err != nil {
		return nil, err
	}
	report, err := p.fenced(ctx)
	if err != nil {
		err = fence.Ended(ctx, err)
		fence.LogFailed(p.log, "cutover failed; the fence is lifted and publishing goes on", err)
		return nil, err
	}
	// The fence is committed: the cutover happened, and a stop or a client
	// that went away must not keep the target from recording it.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if err := p.tgt.RecordCutover(rctx, p.opt.Slot); err != nil {
		return nil, err
	}
	p.cutover.Store(report)
	p.log.Info("cutover done", "write_pause_ms", report.WritePauseMS, "drain_ms", report.DrainMS, "partitions", report.Partitions)
	return report, nil
}

func (p *Publisher) waitFor(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return failure.New(failure.Internal, "SLUICE-CUTOVER-LAG", "cutover gave up: %s after %s", what, limit).
				WithHint("check sluice status: is every partition's applier (sluice apply --partition i/%d) running?", p.opt.Partitions)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func (p *Publisher) fenced(ctx context.Context) (*CutoverReport, error) {
	lock, err := fence.Take(ctx, p.src, p.tablePlans(), p.opt.LockTimeout, p.opt.CutoverTimeout)
	if err != nil {
		return nil, err
	}
	defer lock.Release() // lifts the fence on every failure
	fenced := lock.Granted
	// The fence stays up for CutoverTimeout at most: every step under it
	// runs in fctx.
	fctx, cancel, overtime := lock.Within(ctx)
	defer cancel()
	fw := &fenceWait{id: fmt.Sprintf("F:%s:%d", p.runID, fenced.UnixNano()), reached: make(chan Pos, 1)}
	p.fence.Store(fw)
	defer p.fence.Store(nil)
	// Committed after the lock was granted: every write to the tables is
	// before it in the WAL.
	lsn, err := pgstream.Emit(fctx, p.src.Pool, true, fw.id)
	if err != nil {
		return nil, overtime("writing the fence", err)
	}
	select {
	case <-fw.reached:
	case <-fctx.Done():
		return nil, overtime("publishing up to the fence", fctx.Err())
	}
	for {
		parts, err := p.tgt.Partitions(fctx, p.opt.Endpoint.Stream)
		if err != nil {
			return nil, overtime("waiting for the partitions", err)
		}
		reached := 0
		for _, st := range parts {
			if st.Partition < p.opt.Partitions && st.Partitions == p.opt.Partitions && st.Fence == fw.id {
				reached++
			}
		}
		if reached == p.opt.Partitions {
			break
		}
		select {
		case <-fctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, failure.New(failure.Internal, "SLUICE-CUTOVER-DRAIN", "cutover: %d of %d partitions applied the fence within %s", reached, p.opt.Partitions, p.opt.CutoverTimeout).
				WithHint("the fence is lifted; check that every applier runs (sluice apply --partition i/%d) and try again", p.opt.Partitions)
		case <-time.After(20 * time.Millisecond):
		}
	}
	drained := time.Since(fenced)
	autoInc, autoIncUnknown, err := lock.SyncAutoIncrement(fctx, p.tgt, p.opt.AutoIncrementGap, p.log)
	if err != nil {
		return nil, overtime("setting AUTO_INCREMENT", err)
	}
	if err := lock.Commit(fctx); err != nil {
		return nil, overtime("lifting the fence", err)
	}
	// Writers queue behind the lock from the moment it is requested, so
	// the pause they see starts there, not when it is granted, and ends
	// when the fence's transaction has committed.
	pause := time.Since(lock.Requested)
	return &CutoverReport{Fence: "lock", FenceID: fw.id, FenceLSN: pglogrepl.LSN(lsn).String(), Partitions: p.opt.Partitions,
		WritePauseMS: float64(pause.Microseconds()) / 1000, LockWaitMS: float64(fenced.Sub(lock.Requested).Microseconds()) / 1000, DrainMS: float64(drained.Microseconds()) / 1000,
		AutoIncrement: autoInc, AutoIncrementUnknown: autoIncUnknown, FinishedAt: time.Now(), Published: p.published.Load()}, nil
}

// tablePlans lists the published tables' plans.
func (p *Publisher) tablePlans() []*plan.Table {
	out := make([]*plan.Table, len(p.tables))
	for i, t := range p.tables {
		out[i] = t.rt.Plan
	}
	return out
}

// Status is what the publisher reports.
type Status struct {
	Phase        string  `json:"phase"` // copying, streaming, cut over
	Slot         string  `json:"slot"`
	Stream       string  `json:"stream"`
	Partitions   int     `json:"partitions"`
	ConfirmedLSN string  `json:"confirmed_lsn"` // the slot is confirmed up to here: JetStream stored everything before
	PublishedPos string  `json:"published_position"`
	Published    int64   `json:"rows_published"` // row changes and copied rows
	LagSeconds   float64 `json:"lag_seconds"`    // see Publisher.lag
	// WALRetainedBytes is what the slot retains now, sampled with the
	// heartbeat; WALRetainedMaxBytes the most this run saw.
	WALRetainedBytes    int64             `json:"wal_retained_bytes"`
	WALRetainedMaxBytes int64             `json:"wal_retained_max_bytes"`
	CopiedRows          int64             `json:"rows_copied"`
	UptimeSeconds       float64           `json:"uptime_seconds"`
	Paused              bool              `json:"paused"`
	Throttled           map[string]string `json:"throttled,omitempty"` // why the copy is held back, by watcher
	Parts               []PartitionStatus `json:"partition_progress"`
	Tables              []TableStatus     `json:"tables"`
	Cutover             *CutoverReport    `json:"cutover,omitempty"`
}

// PartitionStatus is one partition's progress, as its applier stored it.
type PartitionStatus struct {
	Partition int    `json:"partition"`
	LastSeq   uint64 `json:"last_stream_seq"`
	Position  string `json:"position"`
	Applied   int64  `json:"applied"`
	Fence     string `json:"fence,omitempty"`
	CaughtUp  bool   `json:"caught_up"` // applied everything published so far
}

// TableStatus is one table's part of Status.
type TableStatus struct {
	Source        string  `json:"source"`
	Target        string  `json:"target"`
	Phase         string  `json:"phase"`
	RowsCopied    int64   `json:"rows_copied"`
	RowsEstimate  int64   `json:"rows_estimate"`
	RowsPerSecond float64 `json:"rows_per_second"`
	ETASeconds    float64 `json:"eta_seconds"`
	Changes       int64   `json:"changes_published"`
}

// Status reports the publisher now.
func (p *Publisher) Status() Status {
	st := Status{Slot: p.opt.Slot, Stream: p.opt.Endpoint.Stream, Partitions: p.opt.Partitions,
		ConfirmedLSN: pglogrepl.LSN(p.confirmedL.Load()).String(), Published: p.published.Load(), CopiedRows: p.copiedRows.Load(),
		UptimeSeconds: time.Since(p.started).Seconds(), Paused: p.holds.Paused(), Throttled: p.holds.Reasons(), Cutover: p.cutover.Load(),
		LagSeconds: p.lag().Seconds(), WALRetainedBytes: p.walRetained.Load(), WALRetainedMaxBytes: p.walRetainedMax.Load()}
	if pp := p.pubPos.Load(); pp != nil {
		st.PublishedPos = pp.String()
	}
	p.partMu.Lock()
	last := append([]Pos(nil), p.partLast...)
	p.partMu.Unlock()
	if parts := p.parts.Load(); parts != nil {
		for _, ps := range *parts {
			if ps.Partitions != p.opt.Partitions {
				continue
			}
			pos := Pos{ps.PosLSN, ps.PosN}
			caughtUp := ps.Partition < len(last) && !pos.Less(last[ps.Partition])
			st.Parts = append(st.Parts, PartitionStatus{Partition: ps.Partition, LastSeq: ps.LastSeq, Position: pos.String(), Applied: ps.Applied,
				Fence: ps.Fence, CaughtUp: caughtUp})
		}
	}
	st.Phase = "streaming"
	for _, t := range p.tables {
		prog := t.progress.Load()
		if prog == nil {
			continue
		}
		snap := prog.Snapshot()
		if !t.copied.Load() {
			st.Phase = "copying"
		}
		eta := -1.0
		if snap.ETA >= 0 {
			eta = snap.ETA.Seconds()
		}
		st.Tables = append(st.Tables, TableStatus{Source: t.rt.Name, Target: t.rt.Plan.Target, Phase: snap.Phase, RowsCopied: snap.Rows,
			RowsEstimate: snap.Total, RowsPerSecond: snap.RowsPerSec, ETASeconds: eta, Changes: t.changes.Load()})
	}
	if st.Cutover != nil {
		st.Phase = "cut over"
	}
	return st
}
