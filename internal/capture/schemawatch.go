package capture

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
)

// SchemaWatch checks the schema-change notices of the source's event
// triggers (pgstream.DDLNotice) as a run receives them. A rewrite or a
// dropped table is checked at once: no later statement brings the old
// values back. A table's shape is checked at the commit, as the transaction
// left it: a key dropped and added again, or a column added and dropped, in
// one transaction is no change (and a row changed in between comes with the
// stream's own description of the table, checked on its own).
//
// A stop is recorded on the target (SyncState.SchemaStopLSN). The run after
// it goes on past that notice, since the stop's message said what to do;
// otherwise every restart would stop again at the same notice replayed.
type SchemaWatch struct {
	Target    *mysql.Target
	Slot      string
	StoppedAt uint64 // from the sync state: notices at or before it were reported
	Log       *slog.Logger
	// Check compares a notice with the run's table of its OID (nil: not a
	// table of the run, or no problem).
	Check func(pgstream.DDLNotice) error

	shapes map[uint32]pgstream.DDLNotice // the transaction's last shape per table
}

// Notice takes a notice received at lsn.
func (w *SchemaWatch) Notice(n pgstream.DDLNotice, lsn pglogrepl.LSN) error {
	if n.Dropped || n.Rewrite != 0 {
		return w.check(n, lsn)
	}
	if w.shapes == nil {
		w.shapes = map[uint32]pgstream.DDLNotice{}
	}
	w.shapes[n.OID] = n
	return nil
}

// Begin forgets what a transaction the stream broke off in left behind.
func (w *SchemaWatch) Begin() { clear(w.shapes) }

// Commit checks the shapes the transaction committed at lsn left.
func (w *SchemaWatch) Commit(lsn pglogrepl.LSN) error {
	for oid, n := range w.shapes {
		delete(w.shapes, oid)
		if err := w.check(n, lsn); err != nil {
			clear(w.shapes)
			return err
		}
	}
	return nil
}

func (w *SchemaWatch) check(n pgstream.DDLNotice, lsn pglogrepl.LSN) error {
	err := w.Check(n)
	if err == nil {
		return nil
	}
	if uint64(lsn) <= w.StoppedAt {
		w.Log.Warn("going on past the schema change this sync stopped at before: "+err.Error(),
			"code", "SLUICE-SYNC-SCHEMACHANGE", "lsn", lsn.String())
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the run's context may be ending
	defer cancel()
	if rerr := w.Target.RecordSchemaStop(ctx, w.Slot, uint64(lsn)); rerr != nil {
		w.Log.Warn("could not record the schema change the sync stops at; the next run stops there again",
			"code", "SLUICE-SYNC-STATE", "error", rerr.Error())
	}
	return err
}
