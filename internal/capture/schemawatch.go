package capture

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
)

// SchemaWatch checks the schema-change notices of the source's event
// triggers (pgstream.DDLNotice) at the commit of the transaction that
// wrote them, all of them together: a table's shape as the transaction
// left it (a key dropped and added again, or a column added and dropped, in
// one transaction is no change), with every rewrite and drop on the way. A
// row changed in between comes with the stream's own description of the
// table, checked on its own.
//
// A stop is recorded on the target at the transaction's commit position
// (SyncState.SchemaStopLSN), with the column numbers the notices show. The
// run after it goes on past that transaction and every one before it (all
// checked by the run that stopped), since the stop's message said what to
// do; otherwise every restart would stop again at the same notices
// replayed.
type SchemaWatch struct {
	Target    *mysql.Target
	Slot      string
	StoppedAt uint64 // from the sync state: transactions committed at or before it were reported
	Log       *slog.Logger
	// Check compares a notice with the run's table of its OID (nil: not a
	// table of the run, or no problem).
	Check func(pgstream.DDLNotice) error
	// TargetOf names the target table of a run's table by its source OID
	// ("" for another OID, a partition's included).
	TargetOf func(oid uint32) string
	// BeforeStop, when set, runs before a stop is recorded: the sync
	// writes the transactions before the stopping one, so that a run
	// killed meanwhile stops there again rather than go past it.
	BeforeStop func()

	tx map[uint32]*txNotices // by OID, the transaction's notices
}

// txNotices is what one transaction told of one table.
type txNotices struct {
	shape     *pgstream.DDLNotice // the last
	rewrite   int                 // every reason
	dropped   *pgstream.DDLNotice
	truncated *pgstream.DDLNotice // a partition's, not (yet) followed by one of its whole table
}

// Notice takes a notice of the transaction being received.
func (w *SchemaWatch) Notice(n pgstream.DDLNotice) {
	if w.tx == nil {
		w.tx = map[uint32]*txNotices{}
	}
	t := w.tx[n.OID]
	if t == nil {
		t = &txNotices{}
		w.tx[n.OID] = t
	}
	switch {
	case n.Truncated:
		t.truncated = &n
	case n.Dropped:
		t.dropped = &n
	case n.Rewrite != 0:
		t.rewrite |= n.Rewrite
	default:
		t.shape = &n
	}
}

// Truncated takes a TRUNCATE the stream shows of a whole table, concerns
// saying which notices are of its partitions: it emptied every partition
// the transaction truncated before, whose own TRUNCATE notices thus need no
// stop. (Its partitions' triggers fire before the stream's TRUNCATE.)
func (w *SchemaWatch) Truncated(concerns func(pgstream.DDLNotice) bool) {
	for _, t := range w.tx {
		if t.truncated != nil && concerns(*t.truncated) {
			t.truncated = nil
		}
	}
}

// Begin forgets what a transaction the stream broke off in left behind.
func (w *SchemaWatch) Begin() { clear(w.tx) }

// Commit checks what the transaction committed at lsn told.
func (w *SchemaWatch) Commit(lsn pglogrepl.LSN) error {
	if len(w.tx) == 0 {
		return nil
	}
	defer clear(w.tx)
	// The shapes first: a partitioned table's tells of the partitions the
	// transaction created, which a drop or TRUNCATE of one must be known by.
	var shapes, others []pgstream.DDLNotice
	for oid, t := range w.tx {
		if t.shape != nil {
			shapes = append(shapes, *t.shape)
		}
		if t.dropped != nil {
			others = append(others, *t.dropped)
		}
		if t.truncated != nil {
			others = append(others, *t.truncated)
		}
		if t.rewrite != 0 {
			others = append(others, pgstream.DDLNotice{OID: oid, Rewrite: t.rewrite})
		}
	}
	var errs []error
	for _, n := range append(shapes, others...) {
		if err := w.Check(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	if uint64(lsn) <= w.StoppedAt {
		w.Log.Warn("going on past the schema change this sync stopped at before: "+err.Error(),
			"code", "SLUICE-SYNC-SCHEMACHANGE", "lsn", lsn.String())
		return nil
	}
	if w.BeforeStop != nil {
		w.BeforeStop()
	}
	w.recordStop(lsn)
	return err
}

// recordStop records the stop, and the column numbers the transaction
// left, so that neither stops the next run again.
func (w *SchemaWatch) recordStop(lsn pglogrepl.LSN) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the run's context may be ending
	defer cancel()
	warn := func(err error) {
		w.Log.Warn("could not record the schema change the sync stops at; the next run stops there again",
			"code", "SLUICE-SYNC-STATE", "error", err.Error())
	}
	if err := w.Target.RecordSchemaStop(ctx, w.Slot, uint64(lsn)); err != nil {
		warn(err)
	}
	for oid, t := range w.tx {
		target := w.TargetOf(oid)
		if t.shape == nil || target == "" {
			continue
		}
		nums := make(mysql.ColumnNumbers, len(t.shape.Columns)+1)
		for _, c := range t.shape.Columns {
			nums[c.Name] = int64(c.Num)
		}
		nums[mysql.TableIdentity] = int64(oid) // the table the sync streamed, whatever holds its name now
		if err := w.Target.SetSourceColumns(ctx, target, nums); err != nil {
			warn(err)
		}
	}
}
