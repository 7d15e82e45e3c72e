// Package syncer runs a live migration: it copies tables while consuming
// the source's change stream, merges the two with DBLog-style watermarks
// (no locks, no long snapshot), applies changes in commit order with the
// source position stored in the target, and cuts over on request.
//
// Watermarks: for each chunk sluice writes a low watermark into the WAL
// (pg_logical_emit_message), reads the chunk, then writes a high watermark.
// Changes the stream delivers between the two are newer than or as new as
// the chunk's read, so at the high watermark the chunk's rows are replayed
// against those changes (rows changed in full are dropped, partial updates
// are merged) and written at that point in the stream.
package syncer

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/throttle"
)

// Options tune a sync.
type Options struct {
	Slot          string
	Publication   string
	Parallel      int           // chunks read ahead of the stream
	ChunkRows     int           // rows per chunk
	MaxRowsPerSec float64       // copy throttle; 0: none
	BatchRows     int           // changes per target transaction, at most
	BatchDelay    time.Duration // how long a change may wait for its batch
	Heartbeat     time.Duration // WAL message interval that keeps an idle slot moving
	LagBound      time.Duration // cutover waits until the lag is under this
	AutoCutover   bool
	// StreamProcs, when above 0, is the GOMAXPROCS to run with once every
	// table is copied: streaming is a two-stage pipeline (read, apply), and
	// idle processors spinning for work cost CPU that, on a machine shared
	// with the source, the source could use.
	StreamProcs int
	// StreamNice, when above 0, is the nice value sluice takes once every
	// table is copied, so that on a host shared with the source the
	// database's own processes win the processors whenever both want them.
	StreamNice int
	Cutover    CutoverOptions
	Tracker    *progress.Tracker
	Log        *slog.Logger
}

func (o *Options) defaults() {
	if o.Parallel < 1 {
		o.Parallel = 2
	}
	if o.ChunkRows < 1 {
		o.ChunkRows = 20000
	}
	if o.BatchRows < 1 {
		o.BatchRows = 5000
	}
	if o.BatchDelay <= 0 {
		// Longer batches cost the target fewer commits and fewer rows: a
		// batch is reduced to its net effect per row, and a hot row (a
		// counter, pgbench's branches) is written once per batch. 500 ms
		// keeps the lag well under a second; measured in docs/BENCHMARKS.md.
		o.BatchDelay = 500 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.LagBound <= 0 {
		o.LagBound = time.Second
	}
	if o.Tracker == nil {
		o.Tracker = &progress.Tracker{}
	}
	o.Cutover.defaults()
}

// Syncer is one running sync.
type Syncer struct {
	src            *postgres.Source
	srcConnStr     string
	tgt            *mysql.Target
	plan           *plan.Plan
	opt            Options
	log            *slog.Logger
	tables         []*table
	deferredTables []*table                        // those of tables whose key is DEFERRABLE (see package deferred)
	byName         map[string]*table               // source "schema.name"
	stream         atomic.Pointer[pgstream.Stream] // set per run, read by the status API
	prepared       atomic.Bool                     // prepare is done: every table has its progress
	applier        *apply.Applier
	limiter        *rate.Limiter

	windowsMu sync.Mutex
	windows   map[string]*window // open watermark windows by id
	commits   pgstream.CommitLog // the stream's recent transactions (loop only)
	txXid     uint32             // the transaction being received (loop only)
	// tables changed in the transaction being received and in the batch
	// (loop only; see countChange)
	txTouched, batchTouched []*table
	reread                  func(t *table, ch mysql.StoredChunk, attempt int)
	rereads                 atomic.Int64  // chunks read again (see commitLog)
	inflight                chan struct{} // chunks read but not yet applied
	runID                   string        // guarded by windowsMu: watermark ids of this attempt

	holds     throttle.Holds // the pause and the watchers' holds on the copy
	stop      chan struct{}  // closed by Stop: flush and return
	ended     chan struct{}  // closed when Run returns
	stopOnce  sync.Once
	cutoverMu sync.Mutex            // one cutover at a time
	autoRetry time.Duration         // pause after the last failed automatic cutover (see nextAutoRetry)
	goRun     func(fn func() error) // starts fn in the current run's group (see runGroup)
	status    statusState
	fence     atomic.Pointer[fenceWait]
	changed   changedKeys               // rows changed since the last verify, for cutover
	unknown   pgstream.UnknownRelations // loop only
	// schemaStopLSN: where an earlier run stopped for a schema change (per
	// run, from the sync state; see capture.SchemaWatch)
	schemaStopLSN uint64
	rewatch       pgstream.Rewatch // a notice showed a partition to give its TRUNCATE trigger now
	// restoredAhead: rows a key move read from the source ahead of the
	// stream (apply.Table.Refetch) were the source's as of up to this
	// position, as the target stored it with them (SyncState.AheadLSN);
	// which keys, a restart does not know, so until the stream reaches it
	// every key of a table being copied counts as one (table.ahead says
	// which, within a run). Loop only.
	restoredAhead uint64
	// moveXids are the transactions of the key moves in the batch being
	// gathered (loop only): a read of the source's rows for them waits
	// until those are visible (postgres.Source.WaitVisible).
	moveXids []uint32
}

// readAhead records, within tx (which wrote t's rows under keys, read from
// the source just now), that they are the source's rows as of its WAL
// position now; see table.ahead. The insert position: with asynchronous
// commit a transaction is visible before its commit is written.
func (s *Syncer) readAhead(ctx context.Context, tx *sql.Tx, t *table, keys []string) error {
	var now string
	if err := s.src.Pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&now); err != nil {
		return fmt.Errorf("source: read the current WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(now)
	if err != nil {
		return err
	}
	if err := s.tgt.RecordAhead(ctx, tx, s.opt.Slot, uint64(lsn)); err != nil {
		return err
	}
	if t.ahead == nil {
		t.ahead = map[string]uint64{}
	}
	for _, k := range keys {
		t.ahead[k] = uint64(lsn)
	}
	return nil
}

// readAheadOf says whether t's row under key on the target may be one read
// ahead of the stream (see apply.Table.Ahead).
func (s *Syncer) readAheadOf(t *table, key string) bool {
	applied := s.status.applied.Load()
	return !t.copied.Load() && (s.restoredAhead > applied || t.ahead[key] > applied)
}

// New prepares a sync. srcConnString is used for the replication connection.
func New(src *postgres.Source, srcConnString string, tgt *mysql.Target, p *plan.Plan, opt Options) *Syncer {
	opt.defaults()
	s := &Syncer{src: src, srcConnStr: srcConnString, tgt: tgt, plan: p, opt: opt, log: opt.Log,
		byName: map[string]*table{}, windows: map[string]*window{}, inflight: make(chan struct{}, opt.Parallel),
		stop: make(chan struct{}), ended: make(chan struct{}), rewatch: pgstream.NewRewatch(),
		runID: fmt.Sprintf("%x", time.Now().UnixNano())}
	s.holds.Log = opt.Log
	if opt.MaxRowsPerSec > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opt.MaxRowsPerSec), max(1, min(int(opt.MaxRowsPerSec), 10000)))
	}
	s.status.started = time.Now()
	for _, t := range p.Tables {
		tt := &table{plan: t, apply: apply.NewTable(t), notices: capture.NewTableNotices(t, s.rewatch)}
		if !t.Keyless && t.Source.RowKeyDeferrable() { // REPLICA IDENTITY FULL (capture checks)
			tt.deferred = newDeferredTx()
			s.deferredTables = append(s.deferredTables, tt)
		}
		tt.apply.Refetch = func(ctx context.Context, tx *sql.Tx, keys ...string) error {
			// Only while the table is copied: then the row can be missing for
			// that reason, and the target has no secondary unique index yet
			// through which the load (a REPLACE, of the source's current row)
			// could delete a row the stream has not moved out of its way.
			if tt.copied.Load() {
				return nil
			}
			// the rows as the batch's key moves left them, at least
			if err := s.src.WaitVisible(ctx, s.moveXids, 30*time.Second); err != nil {
				return err
			}
			split := make([][]string, len(keys))
			for i, k := range keys {
				split[i] = strings.Split(k, "\x00")
			}
			if _, err := copier.CopyKeys(ctx, s.src, tx, t, split, false); err != nil {
				return fmt.Errorf("table %s: read the row a key moved to from the source: %w", t.Source.Name, err)
			}
			return s.readAhead(ctx, tx, tt, keys)
		}
		tt.apply.Ahead = func(key string) bool { return s.readAheadOf(tt, key) }
		tt.apply.Unmatched = func() { s.unmatched(tt) }
		s.tables = append(s.tables, tt)
		s.byName[t.Source.Name.String()] = tt
	}
	return s
}

// unmatched warns that a change of a table without a key, matched on all
// its columns, found no row on the target once the table was copied: the
// target differs from the source (edited by hand, or a value written
// otherwise than the stream spells it), and the change did not happen
// there. Once, then every 1000th time, for a log that stays readable.
func (s *Syncer) unmatched(t *table) {
	if !t.copied.Load() {
		return // its rows are still to come
	}
	if n := t.unmatched.Add(1); n == 1 || n%1000 == 0 {
		s.log.Warn("a row the source updated or deleted is not on the target: the target differs from the source there, and the change was not made",
			"code", "SLUICE-SYNC-NOMATCH", "table", t.plan.Source.Name.String(), "rows_so_far", n,
			"hint", "run sluice verify --tables "+t.plan.Source.Name.String()+"; a table without a key is made equal by copying it again (drop the target table, then sync it anew)")
	}
}

// Pause stops the copy from reading more chunks; streaming goes on so the
// slot keeps draining.
func (s *Syncer) Pause() { s.holds.Pause() }

// Resume undoes Pause.
func (s *Syncer) Resume() { s.holds.Resume() }

// Stop ends the sync cleanly: what was received is applied and its position
// stored, so the next run resumes exactly there.
func (s *Syncer) Stop() { s.stopOnce.Do(func() { close(s.stop) }) }

// Run prepares the slot, publication and target tables, then copies and
// streams until Stop is called or ctx ends. It keeps streaming after a
// cutover, so writes that still reach the source while the application
// switches over are not lost; it returns the cutover report if there was one.
func (s *Syncer) Run(ctx context.Context) (report *CutoverReport, err error) {
	defer func() {
		// A cutover asked for through the API ends with the run (see
		// fence.UntilStopped); wait until it has lifted its fence and given
		// back what it revoked, while the source connections are still open.
		close(s.ended)
		s.cutoverMu.Lock()
		s.cutoverMu.Unlock() // (taken only to wait for the cutover to end)
	}()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if failure.Code(err) == "SLUICE-SYNC-NOSTATE" {
			// finish or abort removed the run; had it dropped the slot
			// before this run made it, the slot would hold WAL for nobody.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if derr := pgstream.Drop(dctx, s.src.Pool, s.opt.Slot, s.opt.Publication); derr != nil {
				s.log.Warn("could not drop the replication slot of the removed run; run sluice abort", "slot", s.opt.Slot, "error", derr.Error())
			}
		}
	}()
	backoff := time.Second
	unknown := 0 // unclassified errors in a row
	for {
		began := time.Now()
		report, err := s.runOnce(ctx)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return report, err
		}
		if time.Since(began) > time.Minute {
			backoff, unknown = time.Second, 0
		}
		// A connection that breaks is retried for as long as it takes (an
		// outage ends); an error nobody classified is retried a few times
		// in case it was transient, then reported instead of looping.
		if failure.Code(err) == "SLUICE-INTERNAL" && !connectionLost(err) {
			if unknown++; unknown > maxUnknownRetries {
				return report, fmt.Errorf("sync gave up after %d attempts failed the same way: %w", unknown, err)
			}
		}
		s.log.Warn("sync interrupted; it resumes by itself from the last applied change", "code", failure.Code(err),
			"error", err.Error(), "retry_in", backoff.String())
		if stopped, err := s.resume(ctx, &backoff); stopped || err != nil {
			return report, err
		}
	}
}

// resume waits out the back-off and reads the progress committed on the
// target again, as often as it takes: only progress read back whole will
// do, since a table left with the chunk list of the attempt that failed
// would copy chunks again and count itself done early. It reports a stop
// (Stop, or ctx's end with its error) that came meanwhile.
func (s *Syncer) resume(ctx context.Context, backoff *time.Duration) (stopped bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-s.stop:
			s.log.Warn("stopped while it could not write: what the stream brought since the last write is not on the target; the next sluice sync resumes from the position stored there and writes it",
				"code", "SLUICE-SYNC-STOPPED")
			return true, nil
		case <-time.After(*backoff):
		}
		*backoff = min(2**backoff, 30*time.Second)
		// sluice finish or abort (from another host, or one whose stop
		// request this process never got) removed the run: stop, for good.
		if state, err := s.tgt.LoadSyncState(ctx, s.opt.Slot); err == nil && state == nil {
			return false, errNoState()
		}
		err := s.reload(ctx)
		if err == nil {
			return false, nil
		}
		if !retryable(err) {
			return false, err
		}
		s.log.Warn("cannot resume yet", "code", failure.Code(err), "error", err.Error(), "retry_in", backoff.String())
	}
}

// reload forgets in-flight chunks and reads the progress committed on the
// target again, as a fresh process would.
func (s *Syncer) reload(ctx context.Context) error {
	s.windowsMu.Lock()
	s.windows = map[string]*window{}
	// New watermark ids: the stream replays the old attempt's watermarks,
	// which must not match this attempt's windows.
	s.runID = fmt.Sprintf("%x", time.Now().UnixNano())
	s.windowsMu.Unlock()
	s.inflight = make(chan struct{}, s.opt.Parallel)
	for _, t := range s.tables {
		if err := s.loadChunks(ctx, t); err != nil {
			return failure.Wrap(err, failure.Connection, "SLUICE-SYNC-RELOAD", "target: read progress")
		}
	}
	return nil
}

func errNoState() error {
	return failure.New(failure.Schema, "SLUICE-SYNC-NOSTATE", "the sync state on the target was removed (sluice finish or abort ran?)")
}

// runOnce streams from the stored position until the loop ends.
func (s *Syncer) runOnce(ctx context.Context) (*CutoverReport, error) {
	state, err := s.tgt.LoadSyncState(ctx, s.opt.Slot)
	if err != nil {
		return nil, failure.Wrap(err, failure.Connection, "SLUICE-SYNC-STATE", "target: read the sync position")
	}
	if state == nil {
		return nil, errNoState()
	}
	s.status.applied.Store(state.AppliedLSN)
	if state.Phase == mysql.PhaseCutover && s.status.cutover.Load() == nil {
		// cut over before a restart: neither --cutover=auto nor sluice
		// cutover may fence the source again
		s.status.cutover.Store(&CutoverReport{Fence: "taken by an earlier run", EarlierRun: true})
		s.status.autoTried.Store(true)
	}
	if state.RevokedGrants != "" && state.Phase != mysql.PhaseCutover {
		s.restoreInterruptedRevoke(ctx)
	}
	s.schemaStopLSN = state.SchemaStopLSN
	s.restoredAhead = state.AheadLSN
	stream, err := pgstream.Open(ctx, s.srcConnStr, s.opt.Slot, s.opt.Publication, pglogrepl.LSN(state.AppliedLSN))
	if err != nil {
		return nil, pgstream.StreamError(err, s.opt.Slot, "open the change stream",
			"check that the source is up and allows replication connections (pg_hba.conf) for this user")
	}
	s.stream.Store(stream)
	defer stream.Close()
	stream.WarnSmallSocketBuffer(s.log)
	s.applier = apply.New(s.tgt.DB, s.log, func(ctx context.Context, tx *sql.Tx) error {
		return mysql.StoreAppliedLSN(ctx, tx, s.opt.Slot, s.status.pendingLSN)
	})
	s.log.Info("streaming", "slot", s.opt.Slot, "publication", s.opt.Publication, "from", pglogrepl.LSN(state.AppliedLSN).String())

	eg, gctx := errgroup.WithContext(ctx)
	g := runGroup{eg}
	s.goRun = g.Go
	events := make(chan []pgstream.Event, 1024)
	var report *CutoverReport
	g.Go(func() error { return s.read(gctx, events) })
	g.Go(func() error {
		err := s.loop(gctx, events)
		report = s.status.cutover.Load()
		if err == nil {
			return errDone // stop the other goroutines
		}
		return err
	})
	s.reread = func(t *table, ch mysql.StoredChunk, attempt int) {
		g.Go(func() error {
			if err := s.copyChunk(gctx, t, ch, attempt); err != nil && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { return s.copyChunks(gctx) })
	g.Go(func() error { return s.heartbeat(gctx) })
	g.Go(func() error {
		pgstream.KeepWatchingTruncates(gctx, s.src.Pool, s.opt.Slot, s.opt.Publication, s.log, s.rewatch)
		return nil
	})
	err = g.Wait()
	if err == errDone {
		err = nil
	}
	return report, err
}

var errDone = fmt.Errorf("sync finished")

// runGroup is the errgroup of one run. Its goroutines run through
// failure.Guard: a panic in one ends the run with an internal error (exit
// 10, the stack logged) instead of crashing the process.
type runGroup struct{ *errgroup.Group }

func (g runGroup) Go(fn func() error) {
	g.Group.Go(func() error { return failure.Guard(fn) })
}

// read moves stream events into the channel; a broken stream ends the run
// (run sync again to resume from the stored position).
func (s *Syncer) read(ctx context.Context, out chan<- []pgstream.Event) error {
	err := s.stream.Load().Pump(ctx, out)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return pgstream.StreamError(err, s.opt.Slot, "change stream broken",
		"sluice retries by itself; if it gave up, run sync again: it resumes from the last applied change")
}

// heartbeat writes a small WAL message now and then, so a slot on an idle
// table still advances and the WAL it retains stays small, and samples the
// slot's retained WAL for status.
func (s *Syncer) heartbeat(ctx context.Context) error {
	if os.Getenv("SLUICE_TEST_PANIC") == "heartbeat" { // a test hook: how a bug in a goroutine ends the run
		panic("test hook: SLUICE_TEST_PANIC=heartbeat")
	}
	t := time.NewTicker(s.opt.Heartbeat)
	defer t.Stop()
	s.sampleSlot(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// transactional, so its commit flushes the WAL and moves the slot
			if _, err := pgstream.Emit(ctx, s.src.Pool, true, "hb"); err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "code", "SLUICE-SYNC-HEARTBEAT", "error", err.Error())
			}
			s.sampleSlot(ctx)
		}
	}
}

func (s *Syncer) sampleSlot(ctx context.Context) {
	st, err := pgstream.Status(ctx, s.src.Pool, s.opt.Slot)
	if err != nil {
		return
	}
	s.status.walRetained.Store(st.RetainedBytes)
	s.status.currentLSN.Store(uint64(st.CurrentLSN))
	if st.RetainedBytes > s.status.walRetainedMax.Load() {
		s.status.walRetainedMax.Store(st.RetainedBytes)
	}
}
