// Package capture starts a run that copies tables while streaming their
// changes (sluice sync, the publisher): it records the run on the target and
// makes the source capture every change, in an order that leaves nothing on
// the source when a step fails.
package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/schema"
)

// Start is what a run needs to begin or resume capturing changes.
type Start struct {
	Source      *postgres.Source
	Target      *mysql.Target
	Slot        string
	Publication string
	Tables      []*plan.Table
	Phase       string // recorded once the slot exists: streaming, publishing
	Log         *slog.Logger
	// AllColumns: the run streams every source column, not only the ones
	// the mapping keeps (the publisher).
	AllColumns bool
	// Stream is the publisher's JetStream stream, and Partitions the number
	// of partitions it routes keys to, recorded with the run.
	Stream     string
	Partitions int
}

// Prepare checks the source and the tables, records the run on the target,
// runs prepareTable on every table (by its index in Tables) (create it on the target, plan its
// chunks), and only then creates the publication and the slot. A failure
// before the slot exists thus retains no WAL; the chunks cover the whole key
// space and are read once the slot exists, so nothing written in between is
// missed. A resumed run reuses its slot, and stops if the slot is gone.
func (st Start) Prepare(ctx context.Context, prepareTable func(ctx context.Context, i int) error) error {
	if err := pgstream.Preflight(ctx, st.Source.Pool, st.Slot); err != nil {
		return err
	}
	for _, t := range st.Tables {
		if err := CheckInheritance(t); err != nil {
			return err
		}
		if err := CheckIdentity(t); err != nil {
			return err
		}
		if err := CheckGenerated(t, st.AllColumns); err != nil {
			return err
		}
		if err := CheckArrayElements(t, st.AllColumns); err != nil {
			return err
		}
		if u := t.Source.UnloggedPartitions; len(u) > 0 {
			return failure.New(failure.Schema, "SLUICE-SYNC-UNLOGGED", "table %s has UNLOGGED partitions (%s): their changes write no WAL and reach no change stream", t.Source.Name, strings.Join(u, ", ")).
				With("table", t.Source.Name.String()).
				WithHint("ALTER TABLE %s SET LOGGED for each, or use sluice copy", u[0])
		}
	}
	if err := st.Target.EnsureProgressTables(ctx); err != nil {
		return err
	}
	if err := st.Target.EnsureSyncTable(ctx); err != nil {
		return err
	}
	st.Target.WarnIfNotDurable(ctx, st.Log)
	state, err := st.Target.LoadSyncState(ctx, st.Slot)
	if err != nil {
		return err
	}
	if state == nil || state.Phase == mysql.PhasePreparing {
		if err := st.checkFresh(ctx, state); err != nil {
			return err
		}
	}
	names := make([]schema.TableName, len(st.Tables))
	progressNames := make([]string, len(st.Tables))
	for i, t := range st.Tables {
		names[i] = t.Source.Name
		progressNames[i] = t.Source.Name.String()
	}
	if state == nil {
		// Recorded before anything else, so a run that fails below is
		// resumed by the next one rather than refused as someone else's.
		state = &mysql.SyncState{Slot: st.Slot, Publication: st.Publication, Phase: mysql.PhasePreparing,
			Tables: progressNames, Stream: st.Stream, Partitions: st.Partitions, RunID: newRunID()}
		if err := st.Target.CreateSyncState(ctx, *state); err != nil {
			return err
		}
	} else if err := st.Target.RecordSyncTables(ctx, st.Slot, progressNames, st.Stream, st.Partitions); err != nil {
		var other *mysql.OtherPartitionsError
		if errors.As(err, &other) {
			// Keys would move to other partitions, whose appliers are at
			// other positions: changes of one row could apply out of order.
			return failure.Wrap(err, failure.Schema, "SLUICE-PUBLISH-PARTITIONCOUNT", "%s", err.Error()).
				With("slot", st.Slot).
				WithHint("run it again with --partitions %d; to change the count, run sluice abort --slot %s, drop the target tables and the JetStream stream, and start again", other.Recorded, st.Slot)
		}
		if errors.Is(err, mysql.ErrNoSyncState) {
			return failure.Wrap(err, failure.Schema, "SLUICE-SYNC-NOSTATE", "the run was aborted while it started").
				With("slot", st.Slot).
				WithHint("run sync again to start afresh")
		}
		return err
	}
	if state.Phase != mysql.PhasePreparing {
		if exists, err := pgstream.SlotExists(ctx, st.Source.Pool, st.Slot); err != nil {
			return err
		} else if !exists {
			return failure.New(failure.Schema, "SLUICE-SYNC-SLOTLOST",
				"the target records a run on replication slot %s, but the source no longer has that slot: changes since then are lost", st.Slot).
				With("slot", st.Slot).
				WithHint("run sluice abort --slot %s, empty the target tables (and a publisher's JetStream stream), and start again", st.Slot)
		} else if state.RunID != "" {
			// A slot of that name whose publication another run tagged: this
			// run's slot was dropped and another migration made its own since.
			run, err := pgstream.PublicationRun(ctx, st.Source.Pool, st.Publication)
			if err != nil {
				return err
			}
			if run != "" && run != state.RunID {
				return failure.New(failure.Schema, "SLUICE-SYNC-SLOTLOST",
					"the target records a run on replication slot %s, but the slot of that name on the source is another run's (its publication says so): this run's slot was dropped, and changes since then are lost", st.Slot).
					With("slot", st.Slot).
					WithHint("start this migration again under a slot of its own: sluice abort --slot %s on this target (it leaves the other run's slot), empty the target tables, and run sync with --slot NAME", st.Slot)
			}
		}
	}
	for i := range st.Tables {
		if err := prepareTable(ctx, i); err != nil {
			return err
		}
	}
	if err := pgstream.EnsureCapture(ctx, st.Source.Pool, st.Publication, st.Slot, state.RunID, names, st.Log); err != nil {
		return err
	}
	if state.Phase == mysql.PhasePreparing {
		if err := st.Target.SetSyncPhase(ctx, st.Slot, st.Phase); err != nil {
			st.dropUnrecordedCapture()
			if errors.Is(err, mysql.ErrNoSyncState) {
				return failure.Wrap(err, failure.Schema, "SLUICE-SYNC-NOSTATE", "the run was aborted while it started").
					With("slot", st.Slot).
					WithHint("run sync again to start afresh; its replication slot was dropped")
			}
			return err
		}
	}
	return nil
}

// newRunID names a run: 16 random bytes in hex.
func newRunID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// dropUnrecordedCapture drops the slot and publication of a run still
// preparing when recording that they exist failed, and the target confirms
// it did not record them: its state is gone (a sluice abort that ran
// meanwhile could not see the new slot) or still "preparing". Nothing was
// copied or streamed, so the slot holds nothing to lose, and the next run
// makes a new one. When the state cannot be read (the phase may have been
// recorded after all) the slot stays, for the next run to reuse.
func (st Start) dropUnrecordedCapture() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the run's ctx may be what ended
	defer cancel()
	state, err := st.Target.LoadSyncState(ctx, st.Slot)
	if err != nil || state != nil && state.Phase != mysql.PhasePreparing {
		return
	}
	if err := pgstream.Drop(ctx, st.Source.Pool, st.Slot, st.Publication); err != nil {
		st.Log.Warn("could not drop the replication slot of the run that failed to start; run sluice abort to drop it",
			"code", "SLUICE-SYNC-SLOTLEFT", "slot", st.Slot, "error", err.Error())
	}
}

// checkFresh refuses target tables a new run must not write into: ones
// sluice copy filled without a change stream, and ones holding rows sluice
// did not copy. A run still preparing (resumed: state is not nil) may find
// the tables it started itself: planned, never copied, so still empty.
func (st Start) checkFresh(ctx context.Context, state *mysql.SyncState) error {
	preparing := state != nil
	// A run records its state on the target before it creates its slot, so
	// a slot the target knows nothing of is not this migration's: another
	// one's whose target database has the same name (the default slot name
	// derives from it), or a leftover whose target state was removed.
	// Reusing it would take over the other run's slot and narrow its
	// publication to this run's tables.
	if exists, err := pgstream.SlotExists(ctx, st.Source.Pool, st.Slot); err != nil {
		return err
	} else if exists && !preparing {
		return failure.New(failure.Usage, "SLUICE-SYNC-SLOTTAKEN", "replication slot %s exists on the source, but the target records no run on it: it is another migration's (the default slot name derives from the target database's name), or one whose state on the target was removed", st.Slot).
			With("slot", st.Slot).
			WithHint("give this migration a slot of its own with --slot (the same on every sync, status, cutover, finish and abort of it); only if the slot is a leftover of this migration, which no other migration uses, sluice abort --slot %s drops it (it refuses a slot a sync is reading, and asks for --run naming the run that made it)", st.Slot)
	} else if exists && state.RunID != "" {
		// A run that failed while preparing resumes: the slot is its own
		// only if its publication carries this run's tag, set before the
		// slot was made; another migration may have made it meanwhile.
		run, err := pgstream.PublicationRun(ctx, st.Source.Pool, st.Publication)
		if err != nil {
			return err
		}
		if run != state.RunID {
			return failure.New(failure.Usage, "SLUICE-SYNC-SLOTTAKEN", "replication slot %s exists on the source, but this migration's run, still preparing, did not make it: another migration's, made since this run last stopped (the default slot name derives from the target database's name)", st.Slot).
				With("slot", st.Slot).
				WithHint("give this migration a slot of its own with --slot (the same on every sync, status, cutover, finish and abort of it), after sluice abort --slot %s on this target only if the slot is not another migration's", st.Slot)
		}
	}
	for _, t := range st.Tables {
		phase, err := st.Target.Phase(ctx, t.Target)
		if err != nil {
			return err
		}
		if phase != "" && !(preparing && phase == mysql.PhaseCopying) {
			if other, err := st.syncHolding(ctx, t); err != nil || other != nil {
				if err != nil {
					return err
				}
				return failure.New(failure.Usage, "SLUICE-SYNC-OTHERSLOT",
					"target table %s belongs to the sync recorded on slot %s (phase %s), not to slot %s", t.Target, other.Slot, other.Phase, st.Slot).
					With("table", t.Target).With("slot", other.Slot).
					WithHint("to go on with that sync, run it with --slot %s; to start again, sluice abort --slot %s first (it drops that sync's state and slot, and its tables must be emptied or dropped)", other.Slot, other.Slot)
			}
			return failure.New(failure.Schema, "SLUICE-SYNC-COPIED",
				"target table %s was filled by sluice without this change stream: changes made since then are not in it", t.Target).
				With("table", t.Target).
				WithHint("drop the target table (and sluice's _sluice_* tables, or run sluice abort) and let the sync copy it while it streams")
		}
		if err := copier.CheckTargetEmpty(ctx, st.Target, t); err != nil {
			return err
		}
	}
	return nil
}

// syncHolding is the sync recorded on another slot whose tables include
// t, or nil: the table's copy progress is that sync's, not a plain copy's.
func (st Start) syncHolding(ctx context.Context, t *plan.Table) (*mysql.SyncState, error) {
	others, err := st.Target.OtherSyncs(ctx, st.Slot)
	if err != nil {
		return nil, err
	}
	for i, o := range others {
		if slices.Contains(o.Tables, t.Source.Name.String()) {
			return &others[i], nil
		}
	}
	return nil, nil
}

// CheckInheritance refuses a table other tables inherit from (INHERITS):
// its copy (a read of it) holds their rows, but their changes come through
// the stream, or from the application, as theirs. They would be lost, or,
// the children migrated too, their rows held twice. (Partitions are
// another matter: their changes are streamed as the root's.) The events
// topology refuses it too.
func CheckInheritance(t *plan.Table) error {
	st := t.Source
	if len(st.InheritedBy) == 0 {
		return nil
	}
	return failure.New(failure.Schema, "SLUICE-SYNC-INHERITS", "table %s is inherited by %s (INHERITS): a read of it returns their rows too, but their changes are theirs, not its own; a sync would lose them",
		st.Name, strings.Join(st.InheritedBy, ", ")).
		With("table", st.Name.String()).
		WithHint("sync the tables that hold rows themselves and leave the parent out, or make them partitions of a partitioned table; sluice copy copies the parent with its children's rows")
}

// CheckIdentity refuses a table whose updates and deletes PostgreSQL does
// not stream with the row they touched.
func CheckIdentity(t *plan.Table) error {
	st := t.Source
	name := postgres.Ident(st.Name.Schema, st.Name.Name)
	switch st.ReplicaIdentity {
	case "nothing":
		return failure.New(failure.Schema, "SLUICE-SYNC-IDENTITY", "table %s has REPLICA IDENTITY NOTHING: its updates and deletes are not streamed", st.Name).
			With("table", st.Name.String()).WithHint("ALTER TABLE %s REPLICA IDENTITY DEFAULT (it has a primary key) or FULL", name)
	case "default":
		if len(st.PrimaryKey) == 0 {
			return failure.New(failure.Schema, "SLUICE-SYNC-IDENTITY", "table %s has no primary key, so PostgreSQL does not stream which row an update or delete touched", st.Name).
				With("table", st.Name.String()).WithHint("add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL", name)
		}
	case "index":
		// The stream names a changed row by the identity index's columns;
		// sluice matches rows on the row key, so the two must be the same.
		for _, ix := range st.Indexes {
			if ix.ReplicaIdentity && !slices.Equal(ix.Columns, st.RowKey()) {
				return failure.New(failure.Schema, "SLUICE-SYNC-IDENTITY", "table %s has REPLICA IDENTITY USING INDEX %s (%s), but sluice matches its rows on the key (%s): a delete or a key change would name a row sluice cannot find",
					st.Name, ix.Name, strings.Join(ix.Columns, ", "), strings.Join(st.RowKey(), ", ")).
					With("table", st.Name.String()).WithHint("ALTER TABLE %s REPLICA IDENTITY DEFAULT (its primary key) or FULL", name)
			}
		}
	}
	// Changes are reduced per key value, which needs each value held by one
	// row at a time: a DEFERRABLE key lets a transaction give a value to a
	// row before taking it from another (UPDATE … SET id = id + 1), and the
	// reduction would then delete rows.
	// With the whole old row (REPLICA IDENTITY FULL) the sync and the
	// publisher replay such a transaction whole instead (package deferred).
	if !t.Keyless && st.RowKeyDeferrable() && st.ReplicaIdentity != "full" {
		return failure.New(failure.Schema, "SLUICE-SYNC-DEFERRABLE", "the key (%s) of table %s is DEFERRABLE: a transaction may hand a key value to one row before another gives it up, which cannot be replayed key by key", strings.Join(st.RowKey(), ", "), st.Name).
			With("table", st.Name.String()).
			WithHint("ALTER TABLE %s REPLICA IDENTITY FULL (every change then names the whole row it touched), or make the key immediate: drop the constraint and add it again without DEFERRABLE", name)
	}
	return nil
}

// CheckGenerated refuses a stored generated column the run would stream
// (every source column with all, else the ones the mapping keeps): before
// PostgreSQL 18 the change stream leaves such columns out, so an insert or
// update would not say their value.
func CheckGenerated(t *plan.Table, all bool) error {
	st := t.Source
	for _, c := range st.Columns {
		if c.Generated == "" || !all && !slices.ContainsFunc(t.Columns, func(pc plan.Column) bool { return pc.Source == c.Name }) {
			continue
		}
		name := postgres.Ident(st.Name.Schema, st.Name.Name)
		hint := fmt.Sprintf("make it a plain column on the source (ALTER TABLE %s ALTER COLUMN %s DROP EXPRESSION; the application then writes it), or use sluice copy", name, postgres.Ident(c.Name))
		if !all {
			hint = fmt.Sprintf("leave it out of the sync with tables: {%s: {columns: {%s: {drop: true}}}} in the config file (and compute it on the target, e.g. as a generated column), ", st.Name, c.Name) + hint
		}
		return failure.New(failure.Schema, "SLUICE-SYNC-GENERATED", "table %s: column %s is generated (GENERATED ALWAYS AS %s STORED), and the change stream does not carry its values", st.Name, c.Name, c.Generated).
			With("table", st.Name.String()).With("column", c.Name).WithHint("%s", hint)
	}
	return nil
}

// CheckArrayElements refuses an array column the run would stream whose
// elements the stream's text of the array cannot turn into the JSON the
// copy's to_json writes (composite elements, or a type with its own cast to
// json): copied and streamed rows would differ.
func CheckArrayElements(t *plan.Table, all bool) error {
	st := t.Source
	for _, c := range st.Columns {
		if c.Type.ElemUnsupported == "" || !all && !slices.ContainsFunc(t.Columns, func(pc plan.Column) bool { return pc.Source == c.Name }) {
			continue
		}
		hint := fmt.Sprintf("change it on the source to a type sluice carries, e.g. ALTER TABLE %s ALTER COLUMN %s TYPE jsonb USING to_jsonb(%s), or use sluice copy",
			postgres.Ident(st.Name.Schema, st.Name.Name), postgres.Ident(c.Name), postgres.Ident(c.Name))
		if !all {
			hint = fmt.Sprintf("leave it out with tables: {%s: {columns: {%s: {drop: true}}}}, or ", st.Name, c.Name) + hint
		}
		return failure.New(failure.Schema, "SLUICE-PLAN-ARRAYTYPE", "table %s: column %s (%s) cannot be streamed as the JSON array the copy writes: %s", st.Name, c.Name, c.Type.Display, c.Type.ElemUnsupported).
			With("table", st.Name.String()).With("column", c.Name).WithHint("%s", hint)
	}
	return nil
}

// TableNotices judges the notices of the source's triggers for one table
// of the run, keeping its partitions as the run knows them: the plan's,
// then those of the last notice without a problem (a partition created
// during the run and later detached, dropped or truncated counts too).
type TableNotices struct {
	Plan  *plan.Table
	Parts []uint32
	// Rewatch is poked for a notice that shows a partition whose TRUNCATE
	// trigger is missing or does not fire ALWAYS (a new one, one disabled).
	Rewatch pgstream.Rewatch
}

// NewTableNotices starts with the planned partitions of t.
func NewTableNotices(t *plan.Table, rewatch pgstream.Rewatch) TableNotices {
	return TableNotices{Plan: t, Parts: t.Source.Partitions, Rewatch: rewatch}
}

// Concerns says whether a notice is of the table or of one of its
// partitions, or (a partition's TRUNCATE) names it among its ancestors.
func (w *TableNotices) Concerns(n pgstream.DDLNotice) bool {
	src := w.Plan.Source
	return src.OID == n.OID || slices.Contains(w.Parts, n.OID) || slices.Contains(n.Ancestors, src.OID)
}

// Changes is NoticeChanges for a notice the table Concerns (wholeOld: the
// table needs every change's whole old row). A truncated partition's bound
// is read from the source's catalog (pool), not from the notice, which any
// role may write; partitions whose TRUNCATE trigger was disabled are
// warned of.
func (w *TableNotices) Changes(n pgstream.DDLNotice, pool *pgxpool.Pool, log *slog.Logger, wholeOld bool) ([]string, error) {
	src := w.Plan.Source
	if n.Truncated && n.OID != src.OID && n.NoCondition == "" {
		switch b := pgstream.ReadBound(pool, n.OID, src.OID); {
		case !b.Matches(n.Ancestors, n.Bounds):
		case n.Xid == 0 || pgstream.HeldBefore(pool, n.OID, n.Xid):
			n.NoCondition = "the partition holds rows written before that TRUNCATE, which it would have taken: the notice may not come from one (any role may write one), or sluice could not read the partition to tell"
		default:
			n.Bound, n.Delete = b.Constraint, targetDelete(w.Plan, b)
		}
	}
	if n.OID == src.OID && n.Rewatch {
		w.Rewatch.Poke()
	}
	if len(n.Unwatched) > 0 && n.OID == src.OID {
		name := src.Name.String()
		log.Warn("sluice's TRUNCATE trigger was disabled on partitions of "+name+": "+strings.Join(n.Unwatched, ", "),
			"code", "SLUICE-SYNC-NOTRUNCWATCH", "table", name,
			"hint", "sluice enables it again in a moment (a transaction holding the partition may delay that for up to a minute); if one of them was truncated meanwhile, run sluice verify --repair --tables "+name)
	}
	problems, err := NoticeChanges(src, w.Parts, n, src.RowKey(), wholeOld)
	if err == nil && len(problems) == 0 && n.OID == src.OID && n.Parts != nil {
		w.Parts = n.Parts
	}
	return problems, err
}

// Renamed is the error for a table of the run that the stream now
// describes under another name (rel has its OID): changes under the new
// name would otherwise go unapplied.
func Renamed(src *schema.Table, rel *pgstream.Relation) error {
	return failure.New(failure.Schema, "SLUICE-SYNC-SCHEMACHANGE", "source table %s changed while syncing: it was renamed to %s.%s", src.Name, rel.Schema, rel.Name).
		With("table", src.Name.String()).
		WithHint("sluice stopped before losing changes: rename it back, or start a new migration of the table under its new name")
}

// RelationChanges compares a Relation message of the stream with the table
// as planned: the columns (dropped, renamed, retyped, added) and the replica
// identity. keyColumns are the source columns rows are matched on (none for
// a table without a key); wholeOld says the table needs every change's whole
// old row (REPLICA IDENTITY FULL). Each problem is a phrase for a message.
func RelationChanges(src *schema.Table, rel *pgstream.Relation, keyColumns []string, wholeOld bool) []string {
	byName := make(map[string]int, len(rel.Columns))
	for i, c := range rel.Columns {
		byName[c.Name] = i
	}
	var problems []string
	for _, c := range src.Columns {
		i, ok := byName[c.Name]
		switch {
		case !ok && c.Generated != "": // the stream leaves stored generated columns out
		case !ok:
			problems = append(problems, fmt.Sprintf("column %s was dropped or renamed", c.Name))
		case rel.Columns[i].TypeOID != c.Type.OID && c.Type.Domain == "": // the stream names a domain, the plan its base type
			problems = append(problems, fmt.Sprintf("column %s changed type", c.Name))
		case rel.Columns[i].TypeMod != c.TypeMod && c.Type.Domain == "":
			// timestamp(0) → timestamp(6): the target's DATETIME(0) would
			// cut every new fraction of a second without a word
			problems = append(problems, fmt.Sprintf("column %s changed its length, precision or digits", c.Name))
		}
	}
	// Two columns renamed into each other's places keep every name and
	// type: only their order tells (existing rows hold the values the
	// other way round now).
	var relOrder, planOrder []string
	for _, c := range rel.Columns {
		if src.Column(c.Name) != nil {
			relOrder = append(relOrder, c.Name)
		}
	}
	for _, c := range src.Columns {
		if _, ok := byName[c.Name]; ok {
			planOrder = append(planOrder, c.Name)
		}
	}
	if !slices.Equal(relOrder, planOrder) {
		problems = append(problems, fmt.Sprintf("columns are in another order (%s, planned %s): renamed into each other's places?",
			strings.Join(relOrder, ", "), strings.Join(planOrder, ", ")))
	}
	for _, c := range rel.Columns {
		if !slices.ContainsFunc(src.Columns, func(sc schema.Column) bool { return sc.Name == c.Name }) {
			problems = append(problems, fmt.Sprintf("column %s was added", c.Name))
		}
	}
	switch {
	case rel.ReplicaIdentity == 'f':
	case wholeOld:
		problems = append(problems, "REPLICA IDENTITY is no longer FULL")
	default:
		// A delete or a key change names its row by the replica identity's
		// columns, which must hold the whole row key.
		for _, k := range keyColumns {
			if i, ok := byName[k]; ok && !rel.Columns[i].Key {
				problems = append(problems, fmt.Sprintf("REPLICA IDENTITY no longer holds key column %s", k))
			}
		}
	}
	return problems
}

// NoticeChanges compares a schema change that the source's event trigger
// recorded (pgstream.DDLNotice) with the table as planned, as RelationChanges
// does for the stream's own description, and adds what only the trigger
// sees: a column dropped and added again, rows rewritten by a type change,
// the table dropped, a partition truncated. None for a change that keeps the table's shape (a
// constraint, an index, storage). A rename is returned as Renamed's error.
//
// parts are the table's partitions as the run knows them: the plan's, then
// those of the last notice (a partition created during the run and later
// detached or dropped counts too).
func NoticeChanges(src *schema.Table, parts []uint32, n pgstream.DDLNotice, keyColumns []string, wholeOld bool) ([]string, error) {
	if n.Truncated && n.OID == src.OID {
		return nil, nil // the stream shows it
	}
	if n.OID != src.OID { // one of its partitions
		if n.Truncated {
			rows := fmt.Sprintf("sluice cannot tell them by a condition: once the sync runs again, sluice verify --repair --tables %s finds them", src.Name)
			switch {
			case n.NoCondition != "":
				rows = fmt.Sprintf("%s: once the sync runs again and has caught up, sluice verify --repair --tables %s finds them", n.NoCondition, src.Name)
			case n.Delete != "":
				rows = fmt.Sprintf("delete them on the target with %s; or run sluice verify --repair --tables %s once the sync runs again", n.Delete, src.Name)
			case n.Bound != "" && !strings.Contains(n.Bound, "satisfies_hash_partition"): // a hash partition's is PostgreSQL's own
				rows = fmt.Sprintf("delete on the target the rows where (in PostgreSQL's terms) %s, or run sluice verify --repair --tables %s once the sync runs again", n.Bound, src.Name)
			}
			return []string{fmt.Sprintf("its partition %s was truncated: the rows it held left the source without a change in the stream (%s)", n.Name, rows)}, nil
		}
		if n.Dropped {
			return []string{fmt.Sprintf("its partition %s was dropped: the rows it held left the source without a change in the stream (delete them on the target too)", n.Name)}, nil
		}
		return nil, nil // a rewrite is told under the table's own name too
	}
	switch {
	case n.Rewrite&pgstream.RewritePersistence != 0:
		return []string{"it or one of its partitions was set UNLOGGED or LOGGED: an unlogged table's changes reach no change stream, and rows written meanwhile are missing on the target (sluice verify --repair --tables " + src.Name.String() + " once it is LOGGED and the sync runs again)"}, nil
	case n.Dropped:
		return []string{"it was dropped"}, nil
	case n.Rewrite&pgstream.RewriteColumns != 0:
		return []string{"ALTER TABLE rewrote the values of a column (ALTER COLUMN … TYPE, perhaps with USING) without a change in the stream: once the sync runs again, sluice verify --repair --tables " + src.Name.String() + " brings the rows over"}, nil
	case n.Rewrite != 0 || n.Name == "":
		return nil, nil // the notice after the ALTER TABLE tells whether the shape changed
	}
	rel := n.Relation()
	if rel.Schema != src.Name.Schema || rel.Name != src.Name.Name {
		return nil, Renamed(src, rel)
	}
	problems := RelationChanges(src, rel, keyColumns, wholeOld)
	if src.Partitioned && n.Parts != nil {
		for _, oid := range parts {
			if !slices.Contains(n.Parts, oid) {
				problems = append(problems, fmt.Sprintf("its partition with OID %d was detached: the rows it holds left the table without a change in the stream (delete them on the target too)", oid))
			}
		}
		if len(n.Unlogged) > 0 {
			problems = append(problems, fmt.Sprintf("partitions %s are UNLOGGED: their changes reach no change stream (ALTER TABLE … SET LOGGED, then sluice verify --repair --tables %s once the sync runs again)", strings.Join(n.Unlogged, ", "), src.Name))
		}
		for _, p := range n.Attached {
			problems = append(problems, fmt.Sprintf("partition %s was attached holding rows, which came without a change in the stream (sluice verify --repair --tables %s brings them over once the sync runs again)", p.Name, src.Name))
		}
	}
	for _, c := range n.Columns {
		if sc := src.Column(c.Name); sc != nil && sc.Num != 0 && sc.Num != c.Num && sc.Generated == "" {
			problems = append(problems, fmt.Sprintf("column %s is another column than the one copied (dropped and added again, or another one renamed to it): existing rows hold other values without a change in the stream (once the sync runs again, sluice verify --repair --tables %s brings them over)", c.Name, src.Name))
		}
	}
	return problems, nil
}
