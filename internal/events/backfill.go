package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sluice-db/sluice/internal/codec"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
)

// The backfill copies each table in key-ordered chunks, like sluice copy,
// each chunk in one target transaction that also marks it done. Events win:
// a copied row is written only when the target holds no event version for
// its key (the version table is read with a locking read, so an event
// applied concurrently is either seen or waits for the chunk). The copy
// only fills the rows no event has touched, and an event older than what
// the copy read is overtaken by the newer event of the same row, so the
// result converges as long as every change emits an event.

func (s *Service) prepareTable(ctx context.Context, ts *tableState) error {
	t := ts.rt.Plan
	state, err := copier.StartTable(ctx, s.src, s.tgt, t, s.opt.ChunkRows, s.log)
	if err != nil {
		return err
	}
	ts.pending = state.Pending
	ts.left.Store(int64(len(ts.pending)))
	ts.copied.Store(state.Done)
	prog := s.opt.Tracker.Add(t.Source.Name.String(), max(t.Source.EstimatedRows, state.RowsDone), state.RowsDone)
	if state.Done {
		prog.SetPhase("streaming")
	} else {
		prog.SetPhase("copying")
	}
	ts.progress.Store(prog)
	return nil
}

type chunkJob struct {
	ts *tableState
	ch mysql.StoredChunk
}

func (s *Service) copyAll(ctx context.Context) error {
	var jobs []chunkJob
	for _, ts := range s.tables {
		for _, ch := range ts.pending {
			jobs = append(jobs, chunkJob{ts, ch})
		}
	}
	var resumed []*tableState // after its last chunk: read before a worker may finish one
	for _, ts := range s.tables {
		if ts.left.Load() == 0 && !ts.copied.Load() {
			resumed = append(resumed, ts)
		}
	}
	queue := make(chan chunkJob)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, j := range jobs {
			if !s.holds.WaitFree(gctx, s.stop) {
				return nil
			}
			select {
			case queue <- j:
			case <-gctx.Done():
				return nil
			case <-s.stop:
				return nil
			}
		}
		return nil
	})
	for i := 0; i < s.opt.Parallel; i++ {
		g.Go(func() error {
			for j := range queue {
				if err := s.copyChunkRetrying(gctx, j); err != nil {
					return err
				}
				if j.ts.left.Add(-1) == 0 {
					// apart: its indexes may wait for events (a unique value
					// held twice) while the other tables' chunks go on
					g.Go(func() error { return s.finishTable(gctx, j.ts) })
				}
			}
			return nil
		})
	}
	for _, ts := range resumed {
		g.Go(func() error { return s.finishTable(gctx, ts) })
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.copyErr.Store(err.Error())
		return err
	}
	if !s.tablesCopied() { // stopped before the last chunk
		return nil
	}
	// Once every table is in (a key may point at any of them), and on every
	// run until they exist: a run that ended after its last table was marked
	// done must still build them. The copy counts as done only then.
	if err := copier.CreateForeignKeys(ctx, s.tgt, s.plan); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.copyErr.Store(err.Error())
		return err
	}
	s.keysBuilt.Store(true)
	s.log.Info("copy complete; every table is kept in sync by events", "tables", len(s.tables))
	return nil
}

func (s *Service) copyChunkRetrying(ctx context.Context, j chunkJob) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		err = s.copyChunk(ctx, j.ts, j.ch)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *failure.Error
		if errors.As(err, &fe) {
			return err
		}
		s.log.Warn("chunk failed, retrying", "code", "SLUICE-COPY-RETRY", "table", j.ts.rt.Name, "chunk", j.ch.No, "attempt", attempt, "error", err.Error())
		time.Sleep(time.Duration(attempt) * time.Second)
	}
	return failure.Wrap(err, failure.Internal, "SLUICE-EVENTS-CHUNK", "table %s, chunk %d", j.ts.rt.Name, j.ch.No).
		With("table", j.ts.rt.Name).WithHint("run the same command again: it resumes from the last committed chunk")
}

type copiedRow struct {
	start, end int
	hash       [16]byte
}

// copyChunk reads one chunk and writes the rows no event has touched.
func (s *Service) copyChunk(ctx context.Context, ts *tableState, ch mysql.StoredChunk) error {
	t := ts.rt.Plan
	var buf []byte
	var rows []copiedRow
	err := copier.ScanRows(ctx, s.src, t, t.SourceQuery(ch.Range), func(key []string, vals [][]byte) error {
		start := len(buf)
		buf = codec.AppendLoadDataRow(buf, vals)
		rows = append(rows, copiedRow{start: start, end: len(buf), hash: KeyHash(t, key)})
		return nil
	})
	if err != nil {
		return failure.Wrap(err, failure.BadRow, "SLUICE-EVENTS-COPYROW", "table %s, chunk %d", ts.rt.Name, ch.No).With("table", ts.rt.Name).
			WithHint("fix the value on the source or map the column to a type that holds it, then run again")
	}
	if s.limiter != nil { // --max-rows-per-sec: the next read waits for this one's rows
		if err := copier.WaitRows(ctx, s.limiter, int64(len(rows))); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		written, err := s.writeChunk(ctx, ts, ch, buf, rows)
		if err == nil {
			ts.progress.Load().AddRows(written)
			return nil
		}
		if !mysql.IsTransient(err) || attempt >= 8 || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
}

func (s *Service) writeChunk(ctx context.Context, ts *tableState, ch mysql.StoredChunk, buf []byte, rows []copiedRow) (int64, error) {
	t := ts.rt.Plan
	tx, err := s.tgt.DB.BeginTx(ctx, interlock)
	if err != nil {
		return 0, fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback()
	touched := map[[16]byte]bool{}
	for start := 0; start < len(rows); start += perStatement {
		part := rows[start:min(start+perStatement, len(rows))]
		args := make([]any, 0, len(part))
		for _, r := range part {
			h := r.hash
			args = append(args, h[:])
		}
		q := `SELECT key_hash FROM ` + mysql.EventVersionsTable + ` WHERE key_hash IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ") + `) LOCK IN SHARE MODE`
		res, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return 0, fmt.Errorf("target: read event versions of %s: %w", t.Target, err)
		}
		for res.Next() {
			var h []byte
			if err := res.Scan(&h); err != nil {
				res.Close()
				return 0, err
			}
			var k [16]byte
			copy(k[:], h)
			touched[k] = true
		}
		if err := res.Close(); err != nil {
			return 0, err
		}
		if err := res.Err(); err != nil {
			return 0, fmt.Errorf("target: read event versions of %s: %w", t.Target, err)
		}
	}
	out := buf
	var written int64
	if len(touched) > 0 {
		out = make([]byte, 0, len(buf))
		for _, r := range rows {
			if !touched[r.hash] {
				out = append(out, buf[r.start:r.end]...)
				written++
			}
		}
	} else {
		written = int64(len(rows))
	}
	if written > 0 {
		// REPLACE: a row without a version can only be the copy's own.
		if _, err := mysql.LoadData(ctx, tx, t.Target, t.LoadColumns(), bytes.NewReader(out), t.Replace()); err != nil {
			var warn *mysql.ValueWarning
			if errors.As(err, &warn) {
				return 0, failure.Wrap(err, failure.BadRow, "SLUICE-COPY-TARGETWARN", "table %s, chunk %d", ts.rt.Name, ch.No).With("table", ts.rt.Name)
			}
			return 0, err
		}
	}
	if err := mysql.MarkChunkDone(ctx, tx, t.Target, ch.No, written, 0); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("target: commit chunk %d of %s: %w", ch.No, t.Target, err)
	}
	return written, nil
}

// finishTable builds the secondary indexes once a table's chunks are in.
func (s *Service) finishTable(ctx context.Context, ts *tableState) error {
	t := ts.rt.Plan
	ts.progress.Load().SetPhase("indexing")
	if built, err := s.buildIndexesWhenUnique(ctx, ts); !built {
		return err // nil: stopped while it waited
	}
	if err := s.tgt.SetPhase(ctx, t.Target, t.Source.Name.String(), mysql.PhaseDone); err != nil {
		return err
	}
	ts.copied.Store(true)
	ts.progress.Load().SetPhase("streaming")
	s.log.Info("table copied; applying events", "table", ts.rt.Name)
	return nil
}

// duplicateRetry is how soon a unique index that two rows' values keep
// out is tried again, doubling up to duplicateRetryMax: each try builds
// the index over the whole table.
var duplicateRetry, duplicateRetryMax = 5 * time.Second, time.Minute

// buildIndexesWhenUnique builds t's secondary indexes. Events of different
// rows come in any order, and while the table is copied its unique indexes
// do not exist yet to refuse anything: an event that gives row B a value
// row A still holds (A's event freeing it is yet to come) leaves the value
// twice, and the unique index cannot be built. Such a conflict is not an
// error of the run: the index is tried again while events flow (the table
// stays "indexing", the copy not done, so a cutover waits) until the
// events that settle it arrive; unless the source holds the rows as the
// target does, which no event settles (uniqueCollision).
func (s *Service) buildIndexesWhenUnique(ctx context.Context, ts *tableState) (built bool, err error) {
	var warned time.Time
	wait := duplicateRetry
	for {
		err := copier.BuildIndexes(ctx, s.tgt, ts.rt.Plan, s.log)
		if err == nil || !mysql.IsDuplicateEntry(err) || ctx.Err() != nil {
			return err == nil, err
		}
		if err := s.uniqueCollision(ctx, ts.rt.Plan); err != nil {
			return false, err // no event settles it: the mapping's type or collation does not tell the values apart
		}
		if time.Since(warned) > time.Minute {
			s.log.Warn("a unique index cannot be built yet: two rows hold one value (events of different rows came out of order, or the target's index compares values the source tells apart, such as a case-insensitive collation set in the mapping); it is tried again while events are applied",
				"code", "SLUICE-EVENTS-UNIQUE", "table", ts.rt.Name, "error", err.Error(), "retry_in", wait.String(),
				"hint", "send the events that change the rows holding the value named (the row that gave it up); if the source holds both values, map the column to a type and collation that tell them apart; sluice verify names rows that differ from the source")
			warned = time.Now()
		}
		ts.progress.Load().SetPhase("indexing (a unique value held twice)")
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-s.stop:
			return false, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, duplicateRetryMax)
	}
}
