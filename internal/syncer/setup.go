package syncer

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/deferred"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/progress"
)

// table is a migrated table at run time.
type table struct {
	plan    *plan.Table
	apply   *apply.Table
	relIdx  []int                // plan column → position in the stream's relation, -1 for computed
	rel     *pgstream.Relation   // as the stream last described it
	notices capture.TableNotices // the source triggers' notices of it, and its partitions as the loop knows them
	pending []mysql.StoredChunk
	left    int         // chunks not yet applied
	copied  atomic.Bool // read by the status API
	// readStarted: the low watermark of the table's chunk came through the
	// stream in this run. A keyless table (one chunk) ignores its changes
	// before that while its chunk is still to be written (left > 0): the
	// chunk's read includes them.
	readStarted bool
	changedIn   uint32 // the xid of the last transaction the stream changed it in
	progress    *progress.Table
	changes     atomicCounter // changes committed on the target
	// changes received in the transaction and in the batch not yet
	// committed (loop only; see countChange)
	txChanges, batchChanges int64
	unmatched               atomic.Int64            // changes of a keyless table that found no row on the target
	deferred                *deferred.Tx[apply.Row] // the key is DEFERRABLE: a transaction is replayed whole
	// ahead: keys whose target row a key move read from the source, with
	// the source position it was read at, until the stream has passed it
	// (loop only; see apply.Table.Ahead).
	ahead map[string]uint64
}

// keylessChunkPending reports whether a change streamed now is one the
// keyless table's one chunk, still to be read, will hold: such changes are
// ignored. A chunk written already (the run restarted before the table was
// finished: its indexes, a key move's read-ahead) holds none after it.
func (t *table) keylessChunkPending() bool {
	return t.plan.Keyless && t.left > 0 && !t.readStarted
}

// SlotName derives the default slot (and publication) name from the target
// database, so two syncs into different targets do not collide.
func SlotName(targetDB string) string {
	var b strings.Builder
	b.WriteString("sluice_")
	for _, r := range strings.ToLower(targetDB) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

func (s *Syncer) prepare(ctx context.Context) error {
	plans := make([]*plan.Table, len(s.tables))
	for i, t := range s.tables {
		if err := checkStreamable(t.plan); err != nil {
			return err
		}
		plans[i] = t.plan
	}
	start := capture.Start{Source: s.src, Target: s.tgt, Slot: s.opt.Slot, Publication: s.opt.Publication,
		Tables: plans, Phase: "streaming", Log: s.log}
	if err := start.Prepare(ctx, func(ctx context.Context, i int) error { return s.prepareTable(ctx, s.tables[i]) }); err != nil {
		return err
	}
	s.prepared.Store(true)
	return nil
}

func (s *Syncer) prepareTable(ctx context.Context, t *table) error {
	state, err := copier.StartTable(ctx, s.src, s.tgt, t.plan, s.opt.ChunkRows, s.log)
	if err != nil {
		return err
	}
	s.setChunkPlan(t, state)
	t.progress = s.opt.Tracker.Add(t.plan.Source.Name.String(), max(t.plan.Source.EstimatedRows, state.RowsDone), state.RowsDone)
	if t.copied.Load() {
		t.progress.SetPhase("streaming")
	} else {
		t.progress.SetPhase("copying")
	}
	return nil
}

// loadChunks reads which chunks are still to copy, after a reconnect.
func (s *Syncer) loadChunks(ctx context.Context, t *table) error {
	state, err := copier.LoadState(ctx, s.tgt, t.plan.Target)
	if err != nil {
		return err
	}
	s.setChunkPlan(t, state)
	return nil
}

func (s *Syncer) setChunkPlan(t *table, state copier.State) {
	t.pending = state.Pending
	t.left = len(t.pending)
	t.copied.Store(state.Done)
	t.readStarted = false
}

// checkStreamable refuses what the stream cannot keep: computed columns
// (it carries the source's columns, not expressions over them) and a row
// filter (it carries every row's changes, and a row can move in or out of
// the filter).
func checkStreamable(t *plan.Table) error {
	if t.Filter != "" {
		return failure.New(failure.Schema, "SLUICE-SYNC-FILTER", "table %s: a row filter (where: %s) cannot be kept in sync from the change stream", t.Source.Name, t.Filter).
			With("table", t.Source.Name.String()).
			WithHint("remove where: from the table's configuration for the sync (and delete the rows after the cutover), or use sluice copy for a filtered snapshot")
	}
	for _, c := range t.Columns {
		if c.Source == "" {
			return failure.New(failure.Schema, "SLUICE-SYNC-COMPUTED", "table %s: computed column %s cannot be kept in sync from the change stream yet", t.Source.Name, c.Target).
				With("table", t.Source.Name.String()).With("column", c.Target).
				WithHint("use sluice copy for tables with computed columns, or compute the column on the target (a generated column)")
		}
	}
	return nil
}

// byOID finds the run's table with the source OID; nil for another table.
func (s *Syncer) byOID(oid uint32) *table {
	for _, t := range s.tables {
		if t.plan.Source.OID == oid {
			return t
		}
	}
	return nil
}

// wholeOld says the table matches rows on the whole old row, which only
// REPLICA IDENTITY FULL sends: a table without a key, or a DEFERRABLE one.
func (t *table) wholeOld() bool { return t.plan.Keyless || t.deferred != nil }

// schemaChanged is the error that stops the sync when the source table no
// longer has the shape it is copied into.
func (t *table) schemaChanged(problems []string) error {
	src := t.plan.Source
	return failure.New(failure.Schema, "SLUICE-SYNC-SCHEMACHANGE", "source table %s changed while syncing: %s", src.Name, strings.Join(problems, "; ")).
		With("table", src.Name.String()).
		WithHint("sluice stopped before writing wrong data: apply the same change to the target table (and the mapping), then run sync again; it goes on past this change")
}

// checkNotice stops the sync on a schema change the source's event
// trigger recorded that leaves the table in another shape.
func (s *Syncer) checkNotice(n pgstream.DDLNotice) error {
	i := slices.IndexFunc(s.tables, func(t *table) bool { return t.notices.Concerns(n) })
	if i < 0 {
		return nil
	}
	t := s.tables[i]
	problems, err := t.notices.Changes(n, s.src.Pool, s.log, t.wholeOld())
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return t.schemaChanged(problems)
	}
	return nil
}

// bindRelation checks a relation the stream announced against the plan and
// maps its columns. A schema change on the source stops the sync rather
// than write wrong data.
func (t *table) bindRelation(rel *pgstream.Relation) error {
	src := t.plan.Source
	// A keyless table and one with a DEFERRABLE key match rows on the whole
	// old row, which only REPLICA IDENTITY FULL sends.
	if problems := capture.RelationChanges(src, rel, src.RowKey(), t.wholeOld()); len(problems) > 0 {
		return t.schemaChanged(problems)
	}
	t.relIdx = make([]int, len(t.plan.Columns))
	pos := map[string]int{}
	for i, c := range rel.Columns {
		pos[c.Name] = i
	}
	for i, c := range t.plan.Columns {
		t.relIdx[i] = pos[c.Source]
	}
	t.rel = rel
	return nil
}
