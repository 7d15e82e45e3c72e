package publish

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/postgres"
)

// The copy in this topology is the log-based sync's DBLog merge, with the
// rows going to the partitions instead of the target: each chunk is read
// between a low and a high watermark written into the WAL; changes the
// stream delivers between the two are newer than the read, so at the high
// watermark the chunk's rows changed in the window are dropped (partial
// updates are merged), and the rest is published as upserts at the high
// watermark's position, in order with the changes. A chunk is marked done in
// the target once JetStream stored its rows; the appliers write them.

// window is one chunk between its low and high watermark.
type window struct {
	id      string
	table   *pubTable
	chunk   mysql.StoredChunk
	attempt int // reads of this chunk before this one (see pgstream.CommitLog)
	open    bool
	mark    pgstream.Mark     // the commit log at the low watermark
	snap    postgres.Snapshot // the read's
	ready   bool
	rows    []chunkRow
	touched map[string]bool // rows written whole or deleted in the window
	patches []winPatch      // partial updates seen in the window, in order
}

type chunkRow struct {
	key  []string
	cols map[string]*string
}

type winPatch struct {
	key  string
	cols map[string]*string
}

// seen shows a published change to every open window on its table.
func (p *Publisher) seen(t *pubTable, op string, cols map[string]*string, key string) {
	p.windowsMu.Lock()
	defer p.windowsMu.Unlock()
	for _, w := range p.windows {
		if w.table != t || !w.open {
			continue
		}
		if op == OpPatch {
			w.patches = append(w.patches, winPatch{key: key, cols: cols})
		} else {
			w.touched[key] = true
		}
	}
}

// waitCopyAllowed waits while the copy is paused or held back by a
// watcher; false when the run stops meanwhile.
func (p *Publisher) waitCopyAllowed(ctx context.Context) bool {
	return p.holds.WaitFree(ctx, p.stop)
}

func (p *Publisher) copyChunks(ctx context.Context) error {
	for _, t := range p.tables {
		for _, ch := range t.pending {
			if !p.waitCopyAllowed(ctx) {
				return nil
			}
			select {
			case p.inflight <- struct{}{}: // released when the chunk is marked done
			case <-ctx.Done():
				return nil
			case <-p.stop:
				return nil
			}
			if err := p.copyChunk(ctx, t, ch, 0); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

func (p *Publisher) copyChunk(ctx context.Context, t *pubTable, ch mysql.StoredChunk, attempt int) error {
	id := fmt.Sprintf("%s:%s:%d:%d", p.runID, t.rt.Plan.Target, ch.No, attempt)
	w := &window{id: id, table: t, chunk: ch, attempt: attempt, touched: map[string]bool{}}
	// a chunk read again is a read of the source like any other: the
	// watchers' holds and a pause hold it back too
	if attempt > 0 && (!pgstream.RereadPause(ctx, attempt) || !p.waitCopyAllowed(ctx)) {
		return nil
	}
	p.windowsMu.Lock()
	p.windows[id] = w
	p.windowsMu.Unlock()
	if _, err := pgstream.Emit(ctx, p.src.Pool, true, "L:"+id); err != nil {
		return err
	}
	var rows []chunkRow
	snap, err := copier.ScanRowsRunning(ctx, p.src, t.scan, t.chunkQuery(ch.Range), func(key []string, vals [][]byte) error {
		cols := make(map[string]*string, len(vals))
		for i, v := range vals {
			if v == nil {
				cols[t.cols[i]] = nil
				continue
			}
			s := string(v)
			cols[t.cols[i]] = &s
		}
		rows = append(rows, chunkRow{key: append([]string(nil), key...), cols: cols})
		return nil
	})
	if err != nil {
		return failure.Wrap(err, failure.Connection, "SLUICE-PUBLISH-CHUNK", "table %s, chunk %d", t.rt.Name, ch.No).With("table", t.rt.Name)
	}
	p.windowsMu.Lock()
	w.rows, w.snap, w.ready = rows, snap, true
	p.windowsMu.Unlock()
	_, err = pgstream.Emit(ctx, p.src.Pool, true, "H:"+id)
	return err
}

// watermark opens a window (L) or, at its high watermark (H), publishes the
// chunk's rows that no change in the window replaced.
func (p *Publisher) watermark(ctx context.Context, kind, id string, lsn uint64, next func() uint32) error {
	p.windowsMu.Lock()
	w := p.windows[id]
	if w == nil { // an earlier run's: its chunk is read again
		p.windowsMu.Unlock()
		return nil
	}
	if kind == "L" {
		w.open = true
		w.mark = p.commits.Mark()
		p.windowsMu.Unlock()
		return nil
	}
	delete(p.windows, id)
	p.windowsMu.Unlock()
	if !w.ready {
		return fmt.Errorf("sluice: high watermark of chunk %s before its rows were read", id)
	}
	if p.commits.MissedCommit(w.snap, w.mark) {
		// The read missed a commit that came before the low watermark (see
		// pgstream.CommitLog): its rows may be older than what was published.
		p.log.Info("reading a chunk again: a commit raced its low watermark", "code", "SLUICE-SYNC-REREAD",
			"table", w.table.rt.Name, "chunk", w.chunk.No, "attempt", w.attempt+1)
		p.reread(w.table, w.chunk, w.attempt+1)
		return nil
	}
	patches := map[string][]map[string]*string{}
	for _, pt := range w.patches {
		patches[pt.key] = append(patches[pt.key], pt.cols)
	}
	t := w.table
	var n int64
	for _, r := range w.rows {
		k := strings.Join(r.key, "\x00")
		if w.touched[k] {
			continue
		}
		for _, pt := range patches[k] {
			for c, v := range pt {
				r.cols[c] = v
			}
		}
		m := &Message{Table: t.rt.Name, Op: OpUpsert, Cols: r.cols, Copy: true, LSN: lsn, N: next()}
		if err := p.sendRow(ctx, Partition(t.rt.Name, t.partitionKey(r.key), p.opt.Partitions), m); err != nil {
			return err
		}
		n++
	}
	t.progress.Load().AddRows(n)
	p.copiedRows.Add(n)
	p.txChunks = append(p.txChunks, doneChunk{table: t, no: w.chunk.No, rows: n})
	return nil
}
