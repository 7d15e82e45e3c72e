package syncer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/cpuprio"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
)

type atomicCounter struct{ atomic.Int64 }

// loop applies the stream in commit order. It is the only writer of
// replicated rows, so ordering needs no locks.
func (s *Syncer) loop(ctx context.Context, events <-chan []pgstream.Event) error {
	byRel := map[uint32]*table{}
	s.forgetUncommittedChanges() // counted by a loop that stopped before writing them
	// resumed after a table's last chunk, before its indexes
	if err := s.finishTables(ctx, s.status.applied.Load()); err != nil {
		return err
	}
	if s.copyDone() { // resumed with every table copied
		s.narrowProcs()
	}
	var (
		pos        = position{applied: pglogrepl.LSN(s.status.applied.Load())}
		oldest     time.Time // source commit time of the oldest unapplied transaction
		doneChunks []doneChunk
		// where the transaction being received starts in the batch
		txOps int
	)
	ddl := &capture.SchemaWatch{Target: s.tgt, Slot: s.opt.Slot, StoppedAt: s.schemaStopLSN, Log: s.log, Check: s.checkNotice,
		TargetOf: func(oid uint32) string {
			if t := s.byOID(oid); t != nil {
				return t.plan.Target
			}
			return ""
		}}
	stopCh, stopping := s.stop, false
	// A batch is written when it holds BatchRows changes or BatchDelay after
	// its first commit, whichever comes first. (The walsender sends a
	// keepalive after nearly every transaction when it is caught up, so
	// keepalives must not trigger writes: that would commit, and fsync,
	// once per source transaction.)
	flushTimer := time.NewTimer(time.Hour)
	defer flushTimer.Stop()
	timerArmed := false

	flush := func() error {
		if !pos.unwritten() && len(doneChunks) == 0 {
			return nil
		}
		s.status.pendingLSN = uint64(pos.lastCommit)
		chunks := doneChunks
		err := s.applier.Commit(ctx, func(ctx context.Context, tx *sql.Tx) error {
			for _, c := range chunks {
				if err := mysql.MarkChunkDone(ctx, tx, c.table.plan.Target, c.no, c.rows, 0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return applyError(err, pos.lastCommit)
		}
		applied := pos.written()
		s.moveXids = s.moveXids[:0]
		s.status.applied.Store(uint64(applied))
		s.countApplied()
		s.stream.Load().Confirm(applied)
		if !oldest.IsZero() {
			s.status.recordLag(sinceSource(oldest))
		}
		oldest = time.Time{}
		s.status.oldestPending.Store(0)
		doneChunks = doneChunks[:0]
		for _, c := range chunks {
			c.table.left--
			<-s.inflight
		}
		return s.finishTables(ctx, uint64(applied))
	}

	// A stop for a schema change in the transaction being received writes
	// the transactions before it first (see writeBefore).
	beforeStop := func() {
		if pos.inTx && !pos.skipTx {
			s.writeBefore(txOps, flush)
		}
	}
	ddl.BeforeStop = beforeStop
	stopHere := func(err error) error { beforeStop(); return err }

	var pending, received []pgstream.Event // the rest of the last batch received; all of it
	stream := s.stream.Load()
	defer func() { stream.Recycle(received) }()
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-stopCh:
				stopCh, stopping = nil, true
				if !pos.inTx { // else finish the transaction being received first
					return flush()
				}
				continue
			case <-flushTimer.C:
				timerArmed = false
				if pos.inTx { // finish the transaction being received; its commit writes
					flushTimer.Reset(s.opt.BatchDelay / 10)
					timerArmed = true
					continue
				}
				if err := flush(); err != nil {
					return err
				}
				continue
			case b := <-events:
				stream.Recycle(received) // its events were copied out
				received, pending = b, b
			}
			continue
		}
		ev := pending[0]
		pending = pending[1:]
		switch ev.Kind {
		case pgstream.Begin:
			ddl.Begin()
			txOps = s.applier.Pending()
			s.forgetTxChanges()
			s.beginDeferred()
			s.commits.Add(ev.Xid)
			s.txXid = ev.Xid
			s.status.loopCommit.Store(ev.CommitTime.UnixNano())
			skip := pos.begin(ev.LSN)
			if oldest.IsZero() && !skip {
				oldest = ev.CommitTime
				s.status.oldestPending.Store(oldest.UnixNano())
			}
		case pgstream.Commit:
			if !pos.skipTx {
				if err := ddl.Commit(ev.LSN); err != nil {
					return err // written up to this transaction by ddl.BeforeStop
				}
			}
			applies := pos.commit(ev.LSN)
			if applies {
				s.batchTxChanges()
			}
			s.endDeferred(nil)
			if stopping { // a stop waits for the transaction, applied or skipped
				return flush()
			}
			if !applies {
				continue
			}
			if s.applier.Pending() >= s.opt.BatchRows {
				if err := flush(); err != nil {
					return err
				}
			} else {
				if !timerArmed { // the batch's first commit starts its clock
					flushTimer.Reset(s.opt.BatchDelay)
					timerArmed = true
				}
			}
		case pgstream.RelationChanged:
			t := s.byName[ev.Relation.Schema+"."+ev.Relation.Name]
			if t == nil && ev.Relation.Schema == "public" {
				t = s.byName[ev.Relation.Name]
			}
			if t == nil {
				if known := s.byOID(ev.Relation.ID); known != nil {
					return stopHere(capture.Renamed(known.plan.Source, ev.Relation))
				}
				continue // warned of at its first change: a partition's own description comes with its root's
			}
			if err := t.bindRelation(ev.Relation); err != nil {
				return stopHere(err)
			}
			byRel[ev.Relation.ID] = t
		case pgstream.Change:
			if pos.skipTx {
				continue
			}
			t := byRel[ev.Relation.ID]
			if t == nil {
				s.unknown.Warn(s.log, ev.Relation)
				continue
			}
			if err := s.change(t, ev); err != nil {
				return err
			}
			t.changedIn = s.txXid
		case pgstream.Truncate:
			if pos.skipTx {
				continue
			}
			for _, rel := range ev.Truncated {
				t := byRel[rel.ID]
				if t == nil {
					continue
				}
				ddl.Truncated(t.notices.Concerns)
				if !t.keylessChunkPending() {
					s.endDeferred(t) // what the transaction did before
					s.addOp(t, apply.Op{Kind: apply.Truncate, Table: t.apply})
				}
			}
		case pgstream.Message:
			if ev.Prefix != pgstream.MessagePrefix || pos.skipTx {
				continue
			}
			if notice, ok, err := pgstream.ParseDDLNotice(ev.Content); ok {
				if err != nil {
					return err
				}
				notice.Xid = s.txXid
				if notice.Truncated && slices.ContainsFunc(s.tables, func(t *table) bool { return t.changedIn == s.txXid && t.notices.Concerns(notice) }) {
					// replayed after the stop, after a DELETE the user ran
					notice.NoCondition = "the transaction that truncated it wrote rows of the table before, which the sync writes again when it goes on"
				}
				ddl.Notice(notice)
				continue
			}
			if dc, ok := s.watermark(string(ev.Content)); ok {
				doneChunks = append(doneChunks, dc)
			}
			// The cutover's fence: write everything before it. (Only the
			// fence it waits for: any role may write a message, and a flush
			// inside another transaction would write part of it.)
			if f := s.fence.Load(); f != nil && f.id == string(ev.Content) {
				if err := flush(); err != nil {
					return err
				}
				txOps = 0 // the fence's transaction holds nothing else
				// Swapped out so that the fence, replayed after the stream
				// broke during the cutover, cannot close the channel twice.
				if s.fence.CompareAndSwap(f, nil) {
					close(f.reached)
				}
			}
		case pgstream.Keepalive:
			// With a batch pending, its flush confirms this far (else, caught
			// up, the lag would read a few bytes until the next keepalive).
			if lsn, ok := pos.keepalive(ev.WALEnd, s.applier.Pending() == 0 && len(doneChunks) == 0); ok {
				s.status.applied.Store(uint64(lsn))
				s.stream.Load().Confirm(lsn)
				if err := s.finishTables(ctx, uint64(lsn)); err != nil {
					return err
				}
			}
		}
		// Only with nothing more received: right after a flush the lag reads
		// zero until the next transaction's Begin, however long the backlog.
		if s.opt.AutoCutover && !pos.inTx && len(pending) == 0 && len(events) == 0 &&
			s.copyDone() && s.lag() < s.opt.LagBound && !s.status.autoTried.Load() {
			s.status.autoTried.Store(true)
			s.goRun(func() error { s.requestAutoCutover(ctx); return nil })
		}
	}
}

// change turns one streamed row change into ops.
func (s *Syncer) change(t *table, ev pgstream.Event) error {
	if t.plan.Keyless {
		return s.keylessChange(t, ev)
	}
	if t.deferred != nil {
		return s.deferredChange(t, ev)
	}
	switch ev.Op {
	case pgstream.Insert:
		row, key, err := s.row(t, ev.New, nil)
		if err != nil {
			return err
		}
		s.addOp(t, apply.Op{Kind: apply.Upsert, Table: t.apply, Key: key, Row: row})
	case pgstream.Delete:
		row, key, err := s.row(t, ev.Old, nil)
		if err != nil {
			return err
		}
		s.addOp(t, apply.Op{Kind: apply.Delete, Table: t.apply, Key: key, Row: row})
	case pgstream.Update:
		row, key, err := s.row(t, ev.New, ev.Old)
		if err != nil {
			return err
		}
		var oldRow apply.Row
		oldKey := key
		if ev.Old != nil {
			if oldRow, oldKey, err = s.row(t, ev.Old, nil); err != nil {
				return err
			}
		}
		partial := row.Partial()
		switch {
		case oldKey != key && partial:
			s.addOp(t, apply.Op{Kind: apply.Move, Table: t.apply, Key: key, Row: row, OldKey: oldRow, OldKeyID: oldKey})
		case oldKey != key:
			s.addOp(t, apply.Op{Kind: apply.Delete, Table: t.apply, Key: oldKey, Row: oldRow})
			s.addOp(t, apply.Op{Kind: apply.Upsert, Table: t.apply, Key: key, Row: row})
		case partial:
			s.addOp(t, apply.Op{Kind: apply.Patch, Table: t.apply, Key: key, Row: row})
		default:
			s.addOp(t, apply.Op{Kind: apply.Upsert, Table: t.apply, Key: key, Row: row})
		}
	}
	s.countChange(t)
	return nil
}

// countChange counts a change of t in the transaction being received. The
// counts status shows move on only when the target commits the change:
// per table and in all, the same changes.
func (s *Syncer) countChange(t *table) {
	if t.txChanges == 0 {
		s.txTouched = append(s.txTouched, t)
	}
	t.txChanges++
}

// forgetTxChanges drops the counts of a transaction that is skipped or
// stopped before it is written.
func (s *Syncer) forgetTxChanges() {
	for _, t := range s.txTouched {
		t.txChanges = 0
	}
	s.txTouched = s.txTouched[:0]
}

func (s *Syncer) forgetUncommittedChanges() {
	s.forgetTxChanges()
	for _, t := range s.batchTouched {
		t.batchChanges = 0
	}
	s.batchTouched = s.batchTouched[:0]
}

// batchTxChanges adds a received transaction's counts to the batch.
func (s *Syncer) batchTxChanges() {
	for _, t := range s.txTouched {
		if t.batchChanges == 0 {
			s.batchTouched = append(s.batchTouched, t)
		}
		t.batchChanges += t.txChanges
		t.txChanges = 0
	}
	s.txTouched = s.txTouched[:0]
}

// countApplied moves the committed batch's counts into the tables' status.
func (s *Syncer) countApplied() {
	for _, t := range s.batchTouched {
		t.changes.Add(t.batchChanges)
		t.batchChanges = 0
	}
	s.batchTouched = s.batchTouched[:0]
}

// keylessChange handles a table without a key: REPLICA IDENTITY FULL sends
// the whole old row, which identifies the row to change.
func (s *Syncer) keylessChange(t *table, ev pgstream.Event) error {
	if t.keylessChunkPending() {
		return nil
	}
	var row, old apply.Row
	var err error
	if ev.New != nil {
		if row, _, err = s.row(t, ev.New, ev.Old); err != nil {
			return err
		}
	}
	if ev.Old != nil {
		if old, _, err = s.row(t, ev.Old, nil); err != nil {
			return err
		}
	}
	switch ev.Op {
	case pgstream.Insert:
		s.addOp(t, apply.Op{Kind: apply.Append, Table: t.apply, Key: apply.Identity(row), Row: row})
	case pgstream.Delete:
		s.addOp(t, apply.Op{Kind: apply.DeleteOne, Table: t.apply, Key: apply.Identity(old), Row: old})
	case pgstream.Update:
		if old == nil {
			return fmt.Errorf("table %s: an update arrived without its old row; is REPLICA IDENTITY still FULL?", t.plan.Source.Name)
		}
		s.addOp(t, apply.Op{Kind: apply.UpdateOne, Table: t.apply, Key: apply.Identity(row), Row: row,
			OldKey: old, OldKeyID: apply.Identity(old)})
	}
	s.countChange(t)
	return nil
}

// writeBefore writes the batch up to the transaction whose ops start at
// txOps (flush), whose schema change the run stops at, and drops that
// transaction's ops: what the stop tells the user to do on the target then
// meets a target where it holds. Left unwritten, the transactions before it
// would be written again after it (a DELETE of a truncated partition's rows
// would lose to rows written just before the TRUNCATE).
func (s *Syncer) writeBefore(txOps int, flush func() error) {
	s.applier.Discard(txOps)
	if err := flush(); err != nil {
		s.log.Warn("writing the transactions before the schema change the sync stops at failed; what was not written is written when it runs again, so run sluice verify --repair then rather than change rows on the target by hand",
			"code", "SLUICE-SYNC-STATE", "error", err.Error())
	}
}

// addOp queues op and shows it to every open watermark window on its table.
func (s *Syncer) addOp(t *table, op apply.Op) {
	s.applier.Add(op)
	if op.Kind == apply.Move && (len(s.moveXids) == 0 || s.moveXids[len(s.moveXids)-1] != s.txXid) {
		s.moveXids = append(s.moveXids, s.txXid)
	}
	if op.Kind != apply.Truncate && !t.plan.Keyless {
		s.changed.add(t, op.Key)
		if op.Kind == apply.Move {
			s.changed.add(t, op.OldKeyID)
		}
	}
	s.windowsMu.Lock()
	for _, w := range s.windows {
		if w.table == t && w.open {
			w.ops = append(w.ops, op)
			w.opXids = append(w.opXids, s.txXid)
		}
	}
	s.windowsMu.Unlock()
}

// row converts streamed values to the target's form and returns the row's
// key (source text). Unchanged TOAST values are taken from old when the
// relation streams full old rows (REPLICA IDENTITY FULL now, not when
// planned: other old rows hold the key alone, the other columns null), and
// an unchanged TOASTed key column always (the old key holds it).
func (s *Syncer) row(t *table, vals, old []pgstream.Value) (apply.Row, string, error) {
	if t.relIdx == nil {
		return nil, "", fmt.Errorf("table %s: change before its relation was described", t.plan.Source.Name)
	}
	row := make(apply.Row, len(t.plan.Columns))
	var key strings.Builder
	for n, k := range t.plan.Key {
		if n > 0 {
			key.WriteByte(0)
		}
		v := vals[t.relIdx[k]]
		if v.Unchanged && old != nil {
			v = old[t.relIdx[k]]
		}
		d := v.Data
		if conv := t.plan.Columns[k].StreamConvert; conv != nil && d != nil {
			// The copy's chunk rows are keyed by the text its select
			// expression gives (money as numeric: 11.00, not $11.00);
			// a window matches changes to them by this key.
			var err error
			if d, err = conv(d); err != nil {
				return nil, "", s.badValue(t, key.String(), t.plan.Columns[k].Target, err)
			}
		}
		key.Write(d)
	}
	for i, c := range t.plan.Columns {
		v := vals[t.relIdx[i]]
		if v.Unchanged && old != nil && !old[t.relIdx[i]].Unchanged && (t.rel.ReplicaIdentity == 'f' || t.rel.Columns[t.relIdx[i]].Key) {
			v = old[t.relIdx[i]]
		}
		if v.Unchanged {
			row[i].Unchanged = true
			continue
		}
		if v.Data == nil {
			continue
		}
		d := v.Data
		var err error
		if c.StreamConvert != nil {
			if d, err = c.StreamConvert(d); err != nil {
				return nil, "", s.badValue(t, key.String(), c.Target, err)
			}
		}
		if c.Convert != nil {
			if d, err = c.Convert(d); err != nil {
				return nil, "", s.badValue(t, key.String(), c.Target, err)
			}
		}
		row[i].Data = d
	}
	return row, key.String(), nil
}

func (s *Syncer) badValue(t *table, key, column string, err error) error {
	key = strings.ReplaceAll(key, "\x00", ",")
	return failure.Wrap(err, failure.BadRow, "SLUICE-SYNC-BADROW", "table %s, key %s, column %s", t.plan.Source.Name, key, column).
		With("table", t.plan.Source.Name.String()).With("key", key).With("column", column).
		WithHint("fix the value on the source or map the column to a type that holds it, then run sync again")
}

// finishTables finishes the tables whose chunks are all in, once the
// stream has been applied up to applied, past the rows a key move read
// from the source ahead of it (table.ahead, restoredAhead): a unique index
// built over rows of two moments could fail.
func (s *Syncer) finishTables(ctx context.Context, applied uint64) error {
	if s.restoredAhead > applied {
		return nil
	}
	for _, t := range s.tables {
		if t.left != 0 || t.copied.Load() {
			continue
		}
		maps.DeleteFunc(t.ahead, func(_ string, lsn uint64) bool { return lsn <= applied })
		if len(t.ahead) > 0 {
			continue
		}
		if err := s.finishTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// finishTable builds the secondary indexes once a table's chunks are all in.
func (s *Syncer) finishTable(ctx context.Context, t *table) error {
	t.progress.SetPhase("indexing")
	if err := copier.BuildIndexes(ctx, s.tgt, t.plan, s.log); err != nil {
		return err
	}
	if err := s.tgt.SetPhase(ctx, t.plan.Target, t.plan.Source.Name.String(), mysql.PhaseDone); err != nil {
		return err
	}
	t.copied.Store(true)
	t.progress.SetPhase("streaming")
	s.log.Info("table copied; streaming changes", "table", t.plan.Source.Name.String())
	if s.copyDone() {
		if err := copier.CreateForeignKeys(ctx, s.tgt, s.plan); err != nil {
			return err
		}
		s.log.Info("copy complete; every table is streaming", "tables", len(s.tables))
		s.narrowProcs()
	}
	return nil
}

// narrowProcs limits sluice to StreamProcs cores once only the stream is
// left: it needs little CPU then, and fewer threads handing work to each
// other means fewer context switches taken from a shared source host. The
// garbage collector runs less often too: streaming keeps little alive (the
// read-ahead buffers, one batch), so a heap five times that costs little
// memory, and GC was a steady share of sluice's CPU (A/B at 8 pgbench
// clients: 0.888 of pgbench's TPS kept against 0.881, better in 4 of 5
// rounds). The soft limit of 2 GiB keeps GC no more frequent than Go's
// default while less than 1 GiB is alive (a huge source transaction held
// for one batch); GOGC and GOMEMLIMIT in the environment win. It also takes
// nice StreamNice, so that on a host shared with the source the database's
// backends run first (A/B at 8 pgbench clients, two runs of 6 and 9 rounds:
// 0.931 and 0.925 of pgbench's TPS kept against 0.921 and 0.920 at nice 0,
// better in 11 of 15 rounds; lag p99 0.67 s against 0.61-0.65 s).
func (s *Syncer) narrowProcs() {
	if s.opt.StreamProcs > 0 && s.opt.StreamProcs < runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(s.opt.StreamProcs)
		s.log.Debug("streaming only: GOMAXPROCS lowered", "procs", s.opt.StreamProcs)
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(400)
		debug.SetMemoryLimit(2 << 30)
	}
	if s.opt.StreamNice > 0 {
		if nice, err := cpuprio.Lower(s.opt.StreamNice); err != nil {
			s.log.Warn("streaming only: could not lower sluice's CPU priority", "code", "SLUICE-SYNC-NICE", "err", err)
		} else {
			s.log.Debug("streaming only: CPU priority lowered", "nice", nice)
		}
	}
}

func (s *Syncer) copyDone() bool {
	for _, t := range s.tables {
		if !t.copied.Load() {
			return false
		}
	}
	return true
}

// applyError tells a target that refuses the data or the statement (stop: a
// person must fix the target, and retrying would fail the same way forever)
// from one that cannot be reached or is busy (resume by itself).
func applyError(err error, upTo pglogrepl.LSN) error {
	var fe *failure.Error
	if errors.As(err, &fe) { // classified where it was found
		return err
	}
	if mysql.IsDataError(err) {
		return failure.Wrap(err, failure.BadRow, "SLUICE-SYNC-REFUSED", "target: refused the changes up to %s", upTo).
			With("source_position", upTo.String()).
			WithHint("the target table differs from the source (a unique index, a narrower column, a check): fix it to accept the source's rows and run sync again; it resumes from the last applied change")
	}
	if mysql.IsStatementRefused(err) {
		return failure.Wrap(err, failure.Schema, "SLUICE-SYNC-TARGET", "target: cannot apply the changes up to %s", upTo).
			With("source_position", upTo.String()).
			WithHint("the target refuses the statement itself (the server's error says why: a table, column or privilege dropped during the sync, a full disk): fix that and run sync again; it resumes from the last applied change")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-SYNC-APPLY", "target: apply changes up to %s", upTo).
		With("source_position", upTo.String()).
		WithHint("sluice retries by itself; if it gave up, run sync again once the target is reachable: it resumes from the last applied change")
}
