package syncer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// window is one chunk between its low and high watermark.
type window struct {
	id      string
	table   *table
	chunk   mysql.StoredChunk
	attempt int           // reads of this chunk before this one (see pgstream.CommitLog)
	open    bool          // the low watermark has come through the stream
	mark    pgstream.Mark // the commit log at the low watermark
	ops     []apply.Op    // changes to the table seen since then, in order
	opXids  []uint32      // the transaction of each op
	rows    []bufRow      // the chunk as read; set before the high watermark is written
	snap    postgres.Snapshot
	ready   bool
}

type bufRow struct {
	key string
	row apply.Row
}

type doneChunk struct {
	table *table
	no    int
	rows  int64
}

// copyChunks reads every pending chunk between watermarks, a few ahead of
// the stream. It pauses when asked and while the throttle says so.
func (s *Syncer) copyChunks(ctx context.Context) error {
	for _, t := range s.tables {
		for _, ch := range t.pending {
			select {
			case s.inflight <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			// after the slot: the wait for it can be long, and a throttle
			// raised meanwhile holds this chunk back too
			if !s.waitCopyAllowed(ctx) {
				return nil
			}
			if err := s.copyChunk(ctx, t, ch, 0); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

// waitCopyAllowed waits while the copy is paused or throttled; false when
// ctx ended.
func (s *Syncer) waitCopyAllowed(ctx context.Context) bool {
	return s.holds.WaitFree(ctx, nil)
}

func (s *Syncer) copyChunk(ctx context.Context, t *table, ch mysql.StoredChunk, attempt int) error {
	// a chunk read again (a commit raced its low watermark) is a read of
	// the source like any other: the throttle holds it back too
	if attempt > 0 && (!pgstream.RereadPause(ctx, attempt) || !s.waitCopyAllowed(ctx)) {
		return nil
	}
	s.windowsMu.Lock()
	id := fmt.Sprintf("%s:%s:%d:%d", s.runID, t.plan.Target, ch.No, attempt)
	w := &window{id: id, table: t, chunk: ch, attempt: attempt}
	s.windows[id] = w
	s.windowsMu.Unlock()
	if _, err := pgstream.Emit(ctx, s.src.Pool, true, "L:"+id); err != nil {
		return err
	}
	var rows []bufRow
	snap, err := copier.ScanRowsRunning(ctx, s.src, t.plan, t.plan.SourceQuery(ch.Range), func(key []string, vals [][]byte) error {
		row := make(apply.Row, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i].Data = append([]byte{}, v...)
			}
		}
		id := strings.Join(key, "\x00")
		if t.plan.Keyless {
			id = apply.Identity(row)
		}
		rows = append(rows, bufRow{key: id, row: row})
		return nil
	})
	var bv *typemap.BadValue
	if errors.As(err, &bv) {
		return failure.Wrap(err, failure.BadRow, "SLUICE-SYNC-CHUNK", "table %s, chunk %d", t.plan.Source.Name, ch.No).
			With("table", t.plan.Source.Name.String()).With("chunk", fmt.Sprint(ch.No)).
			WithHint("fix the value on the source or map the column to a type that holds it, then run sync again")
	}
	if err != nil {
		return fmt.Errorf("table %s, chunk %d: %w", t.plan.Source.Name, ch.No, err)
	}
	s.windowsMu.Lock()
	w.rows, w.snap, w.ready = rows, snap, true
	s.windowsMu.Unlock()
	if s.limiter != nil {
		if err := copier.WaitRows(ctx, s.limiter, int64(len(rows))); err != nil {
			return nil
		}
	}
	_, err = pgstream.Emit(ctx, s.src.Pool, true, "H:"+id)
	return err
}

// watermark handles a low or high watermark from the stream. At a high
// watermark it replays the window's changes against the chunk and queues
// what is left as upserts at this point of the stream.
func (s *Syncer) watermark(content string) (doneChunk, bool) {
	kind, id, ok := strings.Cut(content, ":")
	if !ok || (kind != "L" && kind != "H") {
		return doneChunk{}, false
	}
	s.windowsMu.Lock()
	w := s.windows[id]
	if w == nil { // from an earlier run: its chunk will be read again
		s.windowsMu.Unlock()
		return doneChunk{}, false
	}
	if kind == "L" {
		w.open = true
		w.mark = s.commits.Mark()
		w.table.readStarted = true
		s.windowsMu.Unlock()
		if w.table.plan.Keyless {
			// Its one chunk is read from here, changes the stream applied
			// after an earlier low watermark included (a run that broke, or a
			// read again): empty the target first, or they would go in twice.
			// Not shown to the window: it is not a change of the source.
			s.applier.Add(apply.Op{Kind: apply.Truncate, Table: w.table.apply})
		}
		return doneChunk{}, false
	}
	if !w.ready {
		// The high watermark is written after the read, so this one belongs
		// to an earlier attempt with the same id: ignore it.
		s.windowsMu.Unlock()
		s.log.Warn("ignoring a stale high watermark", "code", "SLUICE-SYNC-STALEWATERMARK", "id", id)
		return doneChunk{}, false
	}
	delete(s.windows, id)
	s.windowsMu.Unlock()
	if s.commits.MissedCommit(w.snap, w.mark) {
		// The read missed a commit that came before the low watermark: its
		// rows may be older than what the stream has written. Read again.
		s.log.Info("reading a chunk again: a commit raced its low watermark", "code", "SLUICE-SYNC-REREAD",
			"table", w.table.plan.Source.Name.String(), "chunk", w.chunk.No, "attempt", w.attempt+1)
		s.rereads.Add(1)
		s.reread(w.table, w.chunk, w.attempt+1)
		return doneChunk{}, false
	}
	opKind := apply.Load
	var rows []bufRow
	seen := make([]bool, len(w.ops))
	for i, xid := range w.opXids {
		seen[i] = w.snap.Sees(xid)
	}
	if w.table.plan.Keyless {
		opKind, rows = apply.Append, replayKeyless(w.rows, w.ops, seen)
	} else {
		rows = replayWindow(w.rows, w.ops, seen)
	}
	for _, r := range rows {
		s.applier.Add(apply.Op{Kind: opKind, Table: w.table.apply, Key: r.key, Row: r.row})
	}
	w.table.progress.AddRows(int64(len(rows)))
	return doneChunk{table: w.table, no: w.chunk.No, rows: int64(len(rows))}, true
}

// replayWindow applies the changes seen in a window to the chunk as read:
// a row inserted, replaced or deleted in the window is dropped (the stream
// has written its newest state already); a partial update (unchanged TOAST
// left out) the read did not see (seen[i] for ops[i]) is merged into the
// row, which the stream could not do for a row the target does not have
// yet. One the read saw is in the row already; a key move it saw left
// the row under its new key, and whatever the read found under the old
// key is another row.
func replayWindow(rows []bufRow, ops []apply.Op, seen []bool) []bufRow {
	if len(ops) == 0 {
		return rows
	}
	idx := make(map[string]int, len(rows))
	for i, r := range rows {
		idx[r.key] = i
	}
	dropped := make([]bool, len(rows))
	for n, op := range ops {
		switch op.Kind {
		case apply.Truncate:
			for i := range dropped {
				dropped[i] = true
			}
		case apply.Upsert, apply.Delete, apply.Rewrite:
			if i, ok := idx[op.Key]; ok {
				dropped[i] = true
			}
		case apply.Patch:
			if seen[n] {
				continue
			}
			if i, ok := idx[op.Key]; ok && !dropped[i] {
				rows[i].row = apply.Merge(rows[i].row, op.Row)
			}
		case apply.Move:
			if seen[n] {
				continue
			}
			if i, ok := idx[op.OldKeyID]; ok && !dropped[i] {
				rows[i] = bufRow{key: op.Key, row: apply.Merge(rows[i].row, op.Row)}
				delete(idx, op.OldKeyID)
				idx[op.Key] = i
			}
		}
	}
	out := rows[:0]
	for i, r := range rows {
		if !dropped[i] {
			out = append(out, r)
		}
	}
	return out
}

// replayKeyless is replayWindow for a table without a key, where rows are
// identified by all their values and equal rows are interchangeable, so what
// matters is how many copies of each row the target ends with. seen[i] says
// whether the chunk's snapshot saw ops[i].
//
// At the low watermark the target was emptied; since then the stream has
// applied every op of the window to it (a delete or an update's old side
// removing a copy only if the stream itself put one there). The source,
// from the chunk's snapshot on, adds only the ops the snapshot did not see.
// So of each row the chunk keeps
//
//	copies in the chunk + unseen ops' net count − copies the stream wrote
//
// and drops the rest. (Dropping one copy per op in the window lost rows:
// an insert after the read took out an older equal row the chunk held.)
func replayKeyless(rows []bufRow, ops []apply.Op, seen []bool) []bufRow {
	if len(ops) == 0 {
		return rows
	}
	type count struct{ target, unseen int }
	counts := map[string]*count{}
	step := func(id string, delta int, seen bool) {
		c := counts[id]
		if c == nil {
			c = &count{}
			counts[id] = c
		}
		c.target = max(c.target+delta, 0)
		if !seen {
			c.unseen += delta
		}
	}
	for i, op := range ops {
		switch op.Kind {
		case apply.Truncate:
			if !seen[i] { // the source emptied the table after the read
				return rows[:0]
			}
			counts = map[string]*count{} // before the read: the chunk is what came after
		case apply.Append:
			step(op.Key, +1, seen[i])
		case apply.DeleteOne:
			step(op.Key, -1, seen[i])
		case apply.UpdateOne:
			step(op.OldKeyID, -1, seen[i])
			step(op.Key, +1, seen[i])
		}
	}
	drop := make(map[string]int, len(counts))
	for id, c := range counts {
		if n := c.target - c.unseen; n > 0 {
			drop[id] = n
		}
	}
	out := rows[:0]
	for _, r := range rows {
		if drop[r.key] > 0 {
			drop[r.key]--
			continue
		}
		out = append(out, r)
	}
	return out
}
