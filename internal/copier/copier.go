// Package copier copies planned tables from the source to the target in
// key-ordered chunks, several at once. Each chunk is one short COPY on the
// source and one LOAD DATA transaction on the target that also marks the
// chunk done, so an interrupted copy resumes without losing or repeating a
// row.
package copier

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/sluice-db/sluice/internal/chunk"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/schema"
)

// Options tune a copy.
type Options struct {
	Parallel      int     // chunks copied at once
	ChunkRows     int     // rows per chunk
	MaxRowsPerSec float64 // 0: unlimited
	SkipBadRows   bool    // write rows the target cannot hold to RejectFile instead of stopping
	RejectFile    string
	Tracker       *progress.Tracker
	Log           *slog.Logger
}

// TableResult is the outcome for one table.
type TableResult struct {
	Source   string
	Target   string
	Rows     int64 // rows in the target after the copy (this run and earlier ones)
	Copied   int64 // rows written by this run
	Rejected int64
	Elapsed  time.Duration
	Err      error
}

// Result is the outcome of a copy.
type Result struct {
	Tables  []TableResult
	Elapsed time.Duration
}

// Err is the first table error, if any.
func (r *Result) Err() error {
	for _, t := range r.Tables {
		if t.Err != nil {
			return t.Err
		}
	}
	return nil
}

type tableState struct {
	plan      *plan.Table
	progress  *progress.Table
	remaining int
	copied    int64
	rejected  int64
	rows      int64
	started   time.Time
	elapsed   time.Duration
	err       error
}

type job struct {
	table *tableState
	chunk mysql.StoredChunk
}

type copier struct {
	src     *postgres.Source
	tgt     *mysql.Target
	opt     Options
	limiter *rate.Limiter
	mu      sync.Mutex
	rejects *os.File
}

// Run copies every table of p. Tables already copied by an earlier run are
// skipped; tables interrupted part-way resume at their first unfinished chunk.
func Run(ctx context.Context, src *postgres.Source, tgt *mysql.Target, p *plan.Plan, opt Options) (*Result, error) {
	start := time.Now()
	if opt.Parallel < 1 {
		opt.Parallel = 4
	}
	if opt.ChunkRows < 1 {
		opt.ChunkRows = 20000
	}
	if opt.Tracker == nil {
		opt.Tracker = &progress.Tracker{}
	}
	c := &copier{src: src, tgt: tgt, opt: opt}
	if opt.SkipBadRows {
		if err := c.openRejects(); err != nil { // before any chunk: an unusable path is a usage error, found at once
			return nil, err
		}
	}
	if opt.MaxRowsPerSec > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(opt.MaxRowsPerSec), max(1, min(int(opt.MaxRowsPerSec), 10000)))
	}
	if err := tgt.EnsureProgressTables(ctx); err != nil {
		return nil, err
	}
	var states []*tableState
	var jobs []job
	for _, t := range p.Tables {
		st, pending, err := c.prepare(ctx, t)
		if err != nil {
			return nil, err
		}
		states = append(states, st)
		for _, ch := range pending {
			jobs = append(jobs, job{table: st, chunk: ch})
		}
	}
	if err := c.run(ctx, states, jobs); err != nil {
		return nil, err
	}
	if c.rejects != nil {
		c.rejects.Close()
	}
	res := &Result{Elapsed: time.Since(start)}
	allDone := true
	for _, st := range states {
		if st.err != nil {
			allDone = false
		}
		res.Tables = append(res.Tables, TableResult{Source: st.plan.Source.Name.String(), Target: st.plan.Target,
			Rows: st.rows, Copied: st.copied, Rejected: st.rejected, Elapsed: st.elapsed, Err: st.err})
	}
	if allDone {
		if err := CreateForeignKeys(ctx, tgt, p); err != nil {
			return res, err
		}
	}
	return res, nil
}

// prepare creates the target table if needed and returns its unfinished chunks.
func (c *copier) prepare(ctx context.Context, t *plan.Table) (*tableState, []mysql.StoredChunk, error) {
	name := t.Source.Name.String()
	state, err := StartTable(ctx, c.src, c.tgt, t, c.opt.ChunkRows, c.opt.Log)
	if err != nil {
		return nil, nil, err
	}
	st := &tableState{plan: t, started: time.Now(), rows: state.RowsDone, rejected: state.RowsRejected}
	pending := state.Pending
	st.progress = c.opt.Tracker.Add(name, max(t.Source.EstimatedRows, st.rows), st.rows)
	st.remaining = len(pending)
	switch {
	case state.Done:
		st.progress.SetPhase("done")
		c.opt.Log.Info("table already copied", "table", name, "rows", st.rows)
	case len(pending) == 0:
		st.progress.SetPhase("indexing")
	default:
		if st.rows > 0 {
			c.opt.Log.Info("resuming table", "table", name, "rows_already_copied", st.rows, "chunks_left", len(pending))
		}
		st.progress.SetPhase("copying")
	}
	return st, pending, nil
}

// State is what the target records of a table's copy.
type State struct {
	Done         bool                // every chunk copied and the indexes built
	Pending      []mysql.StoredChunk // chunks still to copy
	RowsDone     int64               // rows in the chunks already copied
	RowsRejected int64               // rows those chunks set aside (--on-bad-row=skip)
}

// StartTable creates t's target table and records its chunk plan the first
// time it is seen; then, and on every resume, it returns what is left to copy.
func StartTable(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table, chunkRows int, log *slog.Logger) (State, error) {
	phase, err := tgt.Phase(ctx, t.Target)
	if err != nil {
		return State{}, err
	}
	columns := columnNumbers(t.Source)
	if phase != "" {
		// The bookkeeping outlived the table (dropped by hand): trusting it
		// would call an absent table copied.
		if exists, err := tgt.TableExists(ctx, t.Target); err != nil {
			return State{}, err
		} else if !exists {
			return State{}, failure.New(failure.Schema, "SLUICE-COPY-TABLEGONE", "target table %s does not exist, but sluice's bookkeeping on the target records it as %s", t.Target, phase).
				With("table", t.Target).
				WithHint("to copy it again from the start, remove the bookkeeping with sluice abort (it drops sluice's tables on the target, and a sync's slot), then run the command again")
		}
		if err := checkRowKey(ctx, tgt, t); err != nil {
			return State{}, err
		}
		if err := checkColumnNumbers(ctx, tgt, t, columns); err != nil {
			return State{}, err
		}
	}
	if phase == "" {
		if err := CreateTargetTable(ctx, tgt, t); err != nil {
			return State{}, err
		}
		ranges, err := PlanChunks(ctx, src, t, chunkRows)
		if err != nil {
			return State{}, err
		}
		if err := tgt.StartTable(ctx, t.Target, t.Source.Name.String(), ranges, columns); err != nil {
			return State{}, err
		}
		log.Info("table planned", "table", t.Source.Name.String(), "target", t.Target, "chunks", len(ranges), "estimated_rows", t.Source.EstimatedRows)
	}
	return chunkState(ctx, tgt, t.Target, phase)
}

// columnNumbers is what the target records of the source table's columns:
// each one's attnum, which a column dropped and added again under its
// name changes (its rows lose their values without a change in the stream).
func columnNumbers(st *schema.Table) mysql.ColumnNumbers {
	nums := make(mysql.ColumnNumbers, len(st.Columns)+1)
	for _, c := range st.Columns {
		nums[c.Name] = int64(c.Num)
	}
	nums[mysql.TableIdentity] = int64(st.OID)
	return nums
}

// checkColumnNumbers stops a resumed run when a column of the source table
// is another one than the one copied: dropped and added again while no run
// watched (its DDL notice, replayed, matches the table as read now). The
// new numbers are recorded, so the run after this one goes on, as after a
// stop in the stream.
func checkColumnNumbers(ctx context.Context, tgt *mysql.Target, t *plan.Table, columns mysql.ColumnNumbers) error {
	before, err := tgt.SourceColumns(ctx, t.Target)
	if err != nil || maps.Equal(before, columns) {
		return err
	}
	if oid, ok := before[mysql.TableIdentity]; ok && oid != columns[mysql.TableIdentity] {
		// Its rows are not the ones copied and streamed: resuming would
		// leave the target holding the old table's rows.
		return failure.New(failure.Schema, "SLUICE-SYNC-TABLEREPLACED", "source table %s is another table than the one sluice copied to %s: it was dropped and made again, or another table was renamed into its place",
			t.Source.Name, t.Target).
			With("table", t.Source.Name.String()).
			WithHint("copy it again: drop the target table %s, remove sluice's bookkeeping with sluice abort, then run the command again", t.Target)
	}
	var changed []string
	for _, pc := range t.Columns { // the ones copied: not a generated one, or one the mapping drops
		c := t.Source.Column(pc.Source)
		if n, ok := before[pc.Source]; ok && c != nil && c.Generated == "" && n != int64(c.Num) {
			changed = append(changed, c.Name)
		}
	}
	if err := tgt.SetSourceColumns(ctx, t.Target, columns); err != nil || len(changed) == 0 {
		return err // an older build recorded nothing, or a column came or went (the stream's description tells)
	}
	return failure.New(failure.Schema, "SLUICE-SYNC-SCHEMACHANGE", "source table %s changed while sluice was stopped: column %s is another column than the one copied (dropped and added again): existing rows hold other values without a change in the stream",
		t.Source.Name, strings.Join(changed, ", ")).
		With("table", t.Source.Name.String()).
		WithHint("apply the same change to the target table and run the command again (it goes on past this change); then, once the copy is done and a sync has caught up, sluice verify --repair --tables %s", t.Source.Name)
}

// LoadState reads a table's copy state back from the target.
func LoadState(ctx context.Context, tgt *mysql.Target, target string) (State, error) {
	phase, err := tgt.Phase(ctx, target)
	if err != nil {
		return State{}, err
	}
	return chunkState(ctx, tgt, target, phase)
}

// chunkState reads the table's chunks; phase is its recorded phase (a table
// just started is not done, whatever the phase it was started with).
func chunkState(ctx context.Context, tgt *mysql.Target, target, phase string) (State, error) {
	chunks, err := tgt.Chunks(ctx, target)
	if err != nil {
		return State{}, err
	}
	st := State{Done: phase == mysql.PhaseDone}
	for _, c := range chunks {
		if c.Done {
			st.RowsDone += c.Rows
			st.RowsRejected += c.Rejected
		} else {
			st.Pending = append(st.Pending, c)
		}
	}
	return st, nil
}

// CreateTargetTable creates t's target table (row key only; secondary
// indexes come after the data). An existing table is used only when it is
// empty (CheckTargetEmpty), has no unique index the source does not enforce,
// and is the table sluice would create (refuseOtherShape).
func CreateTargetTable(ctx context.Context, tgt *mysql.Target, t *plan.Table) error {
	exists, err := tgt.TableExists(ctx, t.Target)
	if err != nil {
		return err
	}
	if exists {
		if err := refuseRows(ctx, tgt, t); err != nil {
			return err
		}
		if err := t.Replace().RefuseExtraUnique(ctx, tgt.DB, t.Target); err != nil {
			return err
		}
		return refuseOtherShape(ctx, tgt, t)
	}
	if _, err := tgt.DB.ExecContext(ctx, t.CreateTable); err != nil {
		return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-DDL", "target: create table %s", t.Target).With("table", t.Target)
	}
	return nil
}

// CheckTargetEmpty refuses a target table that exists and holds rows: sluice
// never writes over data it did not copy.
func CheckTargetEmpty(ctx context.Context, tgt *mysql.Target, t *plan.Table) error {
	exists, err := tgt.TableExists(ctx, t.Target)
	if err != nil || !exists {
		return err
	}
	return refuseRows(ctx, tgt, t)
}

// refuseRows is CheckTargetEmpty for a table known to exist.
func refuseRows(ctx context.Context, tgt *mysql.Target, t *plan.Table) error {
	nonEmpty, err := tgt.HasRows(ctx, t.Target)
	if err != nil || !nonEmpty {
		return err
	}
	return failure.New(failure.Schema, "SLUICE-TARGET-NOTEMPTY",
		"target table %s already holds rows that sluice did not copy", t.Target).
		With("table", t.Target).
		WithHint("sluice never writes over data it did not copy: drop or empty the target table, or map the source table to another name")
}

// PlanChunks splits a table: arithmetic ranges for a single integer key
// (no scan), boundaries from one ordered key scan otherwise.
func PlanChunks(ctx context.Context, src *postgres.Source, t *plan.Table, chunkRows int) ([]chunk.Range, error) {
	if t.Keyless {
		// One chunk: the stream says nothing about where a keyless row lives,
		// so changes before the chunk's read are left to the read itself
		// (see syncer), which only works when one read covers the table.
		return []chunk.Range{{}}, nil
	}
	keys := t.KeyExprsSource()
	if len(t.Key) == 1 && t.Source.EstimatedRows > 0 {
		switch t.Columns[t.Key[0]].SourceType.Name {
		case "int2", "int4", "int8":
			lo, hi, ok, err := src.KeyRange(ctx, t.Source.Name, keys[0])
			if err != nil || !ok {
				return []chunk.Range{{}}, err
			}
			min, _ := new(big.Int).SetString(lo, 10)
			max, _ := new(big.Int).SetString(hi, 10)
			// Arithmetic ranges suit dense keys; when the keys are sparser
			// than the statistics promise (or the statistics are stale), the
			// ranges would be mostly empty, so scan for boundaries instead.
			span := new(big.Int).Sub(max, min)
			want := t.Source.EstimatedRows/int64(chunkRows) + 1
			if span.Cmp(big.NewInt(4*want*int64(chunkRows)+int64(chunkRows))) <= 0 {
				return chunk.IntegerRanges(min, max, t.Source.EstimatedRows, chunkRows), nil
			}
		}
	}
	bounds, err := src.KeyBoundaries(ctx, t.Source.Name, keys, chunkRows)
	if err != nil {
		return nil, err
	}
	return chunk.BoundaryRanges(bounds), nil
}

func (c *copier) run(ctx context.Context, states []*tableState, jobs []job) error {
	queue := make(chan job)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, j := range jobs {
			select {
			case queue <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	// Tables with nothing left to copy (resumed after their last chunk) still
	// need their indexes. (Read before the workers start: they count remaining down.)
	for _, st := range states {
		if st.remaining == 0 && st.progress.Snapshot().Phase != "done" {
			g.Go(func() error { return c.finishTable(gctx, st) })
		}
	}
	for i := 0; i < c.opt.Parallel; i++ {
		g.Go(func() error {
			for j := range queue {
				if err := c.runJob(gctx, j); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// runJob copies one chunk. A bad row fails only its table; a broken
// connection is retried a few times before the run stops (run it again to
// resume).
func (c *copier) runJob(ctx context.Context, j job) error {
	st := j.table
	c.mu.Lock()
	failed := st.err != nil
	c.mu.Unlock()
	if failed {
		return nil
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			// The failure may have been a commit that went through with
			// its answer lost: copying the chunk again would load its rows
			// twice.
			done, rows, rejected, derr := c.tgt.ChunkDone(ctx, st.plan.Target, j.chunk.No)
			if derr == nil && done {
				st.progress.AddRows(rows) // counted while streaming, taken back on the failure
				c.chunkIn(st, rows, rejected)
				err = nil
				break
			}
		}
		err = c.copyChunk(ctx, st, j.chunk)
		if err == nil || ctx.Err() != nil {
			break
		}
		var fe *failure.Error
		if errors.As(err, &fe) {
			break
		}
		c.opt.Log.Warn("chunk failed, retrying", "code", "SLUICE-COPY-RETRY", "table", st.plan.Source.Name.String(),
			"chunk", j.chunk.No, "attempt", attempt, "error", err.Error())
		time.Sleep(time.Duration(attempt) * time.Second)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *failure.Error
		if errors.As(err, &fe) && (fe.Kind == failure.BadRow || fe.Kind == failure.Schema) {
			c.mu.Lock()
			st.err = err
			st.elapsed = time.Since(st.started)
			c.mu.Unlock()
			st.progress.SetPhase("failed")
			return nil // other tables go on
		}
		if fe != nil { // classified where it was found (a reject file that cannot be written: usage)
			return err
		}
		return failure.Wrap(err, failure.Internal, "SLUICE-COPY-CHUNK", "table %s, chunk %d (%s)",
			st.plan.Source.Name, j.chunk.No, describeRange(j.chunk.Range)).
			With("table", st.plan.Source.Name.String()).With("chunk", fmt.Sprint(j.chunk.No)).
			WithHint("run the same command again: it resumes from the last committed chunk")
	}
	c.mu.Lock()
	st.remaining--
	last := st.remaining == 0 && st.err == nil
	c.mu.Unlock()
	if last {
		return c.finishTable(ctx, st)
	}
	return nil
}

func describeRange(r chunk.Range) string {
	lo, hi := "start", "end"
	if r.Lo != nil {
		lo = strings.Join(r.Lo, ",")
	}
	if r.Hi != nil {
		hi = strings.Join(r.Hi, ",")
	}
	return "keys from " + lo + " to before " + hi
}

func (c *copier) copyChunk(ctx context.Context, st *tableState, ch mysql.StoredChunk) error {
	t := st.plan
	tx, err := c.tgt.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback()

	tr, err := streamRows(ctx, c.src, tx, t, t.SourceQuery(ch.Range), false, c.opt.SkipBadRows, c.limiter, st.progress.AddRows)
	if err != nil {
		if tr != nil {
			st.progress.AddRows(-tr.rows)
		}
		var warn *mysql.ValueWarning
		if errors.As(err, &warn) {
			return failure.Wrap(err, failure.BadRow, "SLUICE-COPY-TARGETWARN", "table %s, chunk %d (%s)", t.Source.Name, ch.No, describeRange(ch.Range)).
				With("table", t.Source.Name.String()).With("chunk", fmt.Sprint(ch.No)).
				WithHint("MariaDB would have changed a value (see its warning): if the column's type was set in the mapping, widen it; otherwise fix the value on the source or run with --on-bad-row=skip")
		}
		return err
	}
	if err := mysql.MarkChunkDone(ctx, tx, t.Target, ch.No, tr.rows, int64(len(tr.rejects))); err != nil {
		st.progress.AddRows(-tr.rows)
		return err
	}
	// The rejected rows are written (and synced) before the chunk commits:
	// once it has, a run resumed after a failure here would never see them
	// again. A chunk that then fails to commit is read again and writes
	// them a second time, which the file can stand.
	if len(tr.rejects) > 0 {
		if err := c.writeRejects(tr.rejects); err != nil {
			st.progress.AddRows(-tr.rows)
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		st.progress.AddRows(-tr.rows)
		return fmt.Errorf("target: commit chunk %d of %s: %w", ch.No, t.Target, err)
	}
	c.chunkIn(st, tr.rows, int64(len(tr.rejects)))
	return nil
}

// chunkIn counts a chunk committed on the target with its rows and rejects
// (the progress counted its rows as they streamed).
func (c *copier) chunkIn(st *tableState, rows, rejected int64) {
	c.mu.Lock()
	st.copied += rows
	st.rows += rows
	st.rejected += rejected
	c.mu.Unlock()
	st.progress.AddRejected(rejected)
}

// openRejects opens the reject file for appending, once.
func (c *copier) openRejects() error {
	if c.rejects != nil {
		return nil
	}
	f, err := os.OpenFile(c.opt.RejectFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return failure.Wrap(err, failure.Usage, "SLUICE-REJECTFILE", "cannot open reject file %s", c.opt.RejectFile).
			WithHint("give a writable path with --reject-file")
	}
	c.rejects = f
	return nil
}

func (c *copier) writeRejects(rejects []Reject) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.openRejects(); err != nil {
		return err
	}
	enc := json.NewEncoder(c.rejects)
	for _, r := range rejects {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write reject file %s: %w", c.opt.RejectFile, err)
		}
	}
	if err := c.rejects.Sync(); err != nil {
		return fmt.Errorf("write reject file %s: %w", c.opt.RejectFile, err)
	}
	return nil
}

// finishTable builds the secondary indexes once the data is in.
func (c *copier) finishTable(ctx context.Context, st *tableState) error {
	t := st.plan
	st.progress.SetPhase("indexing")
	if err := BuildIndexes(ctx, c.tgt, t, c.opt.Log); err != nil {
		return err
	}
	if err := c.tgt.SetPhase(ctx, t.Target, t.Source.Name.String(), mysql.PhaseDone); err != nil {
		return err
	}
	c.mu.Lock()
	st.elapsed = time.Since(st.started)
	c.mu.Unlock()
	st.progress.SetPhase("done")
	return nil
}

// BuildIndexes creates t's secondary indexes that do not exist yet.
func BuildIndexes(ctx context.Context, tgt *mysql.Target, t *plan.Table, log *slog.Logger) error {
	for _, s := range t.PostData {
		exists, err := tgt.IndexExists(ctx, t.Target, s.Name)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		began := time.Now()
		if _, err := tgt.DB.ExecContext(ctx, s.SQL); err != nil {
			return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-INDEX", "target: build indexes of %s", t.Target).With("table", t.Target)
		}
		log.Info("indexes built", "table", t.Target, "seconds", time.Since(began).Seconds())
	}
	return nil
}

// CreateForeignKeys adds the foreign keys of every table of p that do not
// exist yet; call it once all tables hold their data.
func CreateForeignKeys(ctx context.Context, tgt *mysql.Target, p *plan.Plan) error {
	var stmts []plan.Statement
	targets := map[string]string{}
	for _, t := range p.Tables {
		for _, fk := range t.ForeignKeys {
			stmts = append(stmts, fk)
			targets[fk.Name] = t.Target
		}
	}
	sort.SliceStable(stmts, func(i, j int) bool { return stmts[i].Name < stmts[j].Name })
	for _, s := range stmts {
		exists, err := tgt.IndexExists(ctx, targets[s.Name], s.Name)
		if err != nil {
			return err
		}
		if exists {
			continue
		}
		if _, err := tgt.DB.ExecContext(ctx, s.SQL); err != nil {
			return failure.Wrap(err, failure.Schema, "SLUICE-TARGET-FK", "target: create foreign key %s on %s", s.Name, targets[s.Name]).
				With("table", targets[s.Name])
		}
	}
	return nil
}

func formatKey(k map[string]string) string {
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + k[n]
	}
	return strings.Join(parts, ",")
}

// streamRows runs query on the source and loads its rows into t's target
// table inside tx: COPY text out, converted row by row, LOAD DATA in. The
// returned translator says how many rows went in and which were rejected.
func streamRows(ctx context.Context, src *postgres.Source, tx *sql.Tx, t *plan.Table, query string, replace, skipBad bool,
	limiter *rate.Limiter, onRows func(int64)) (*rowTranslator, error) {
	pr, pw := io.Pipe()
	tr := newRowTranslator(ctx, t, pw, skipBad, limiter, onRows)
	readErr := make(chan error, 1)
	go func() {
		// Guard: the translator converts every value; a panic there would
		// end the process with status 2 and no log line.
		err := failure.Guard(func() error {
			if err := src.CopyOut(ctx, query, tr); err != nil {
				return err
			}
			return tr.Close()
		})
		pw.CloseWithError(err) // nil: the loader sees EOF
		readErr <- err
	}()
	var mode *mysql.Replace
	if replace {
		mode = t.Replace()
	}
	loaded, loadErr := mysql.LoadData(ctx, tx, t.Target, t.LoadColumns(), pr, mode)
	pr.CloseWithError(errLoadStopped) // unblocks the reader if the load failed first
	if err := <-readErr; err != nil && !(loadErr != nil && errors.Is(err, errLoadStopped)) {
		return tr, err
	}
	if loadErr != nil {
		return tr, loadErr
	}
	if !replace && loaded != tr.rows {
		return tr, failure.New(failure.Internal, "SLUICE-COPY-COUNT", "table %s: sent %d rows but the target stored %d",
			t.Source.Name, tr.rows, loaded).With("table", t.Source.Name.String())
	}
	return tr, nil
}

var errLoadStopped = errors.New("target load stopped")

// CopyKeys copies the source rows with the given keys (source text form)
// into the target within tx, replacing rows with the same key. Used by
// verify --repair.
func CopyKeys(ctx context.Context, src *postgres.Source, tx *sql.Tx, t *plan.Table, keys [][]string, skipBad bool) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	tr, err := streamRows(ctx, src, tx, t, t.KeyFilterSource(keys), true, skipBad, nil, nil)
	if err != nil {
		return 0, err
	}
	return tr.rows, nil
}
