package syncer

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/progress"
	"github.com/sluice-db/sluice/internal/schema"
)

// table is a migrated table at run time.
type table struct {
	plan    *plan.Table
	apply   *apply.Table
	relIdx  []int // plan column → position in the stream's relation, -1 for computed
	relCols []pgstream.RelationColumn
	pending []mysql.StoredChunk
	left    int // chunks not yet applied
	copied  bool
	// readStarted: the low watermark of the table's chunk came through the
	// stream in this run. A keyless table (one chunk) ignores its changes
	// before that: the chunk's read includes them.
	readStarted bool
	progress    *progress.Table
	changes     atomicCounter
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
	if err := pgstream.Preflight(ctx, s.src.Pool, s.opt.Slot); err != nil {
		return err
	}
	for _, t := range s.tables {
		if err := checkStreamable(t.plan); err != nil {
			return err
		}
	}
	if err := s.tgt.EnsureProgressTables(ctx); err != nil {
		return err
	}
	if err := s.tgt.EnsureSyncTable(ctx); err != nil {
		return err
	}
	state, err := s.tgt.LoadSyncState(ctx, s.opt.Slot)
	if err != nil {
		return err
	}
	if state == nil {
		for _, t := range s.tables {
			phase, err := s.tgt.Phase(ctx, t.plan.Target)
			if err != nil {
				return err
			}
			if phase != "" {
				return failure.New(failure.Schema, "SLUICE-SYNC-COPIED",
					"target table %s was filled by sluice copy, without a change stream: changes made since then are not in it", t.plan.Target).
					With("table", t.plan.Target).
					WithHint("drop the target table (and sluice's _sluice_* tables) and let sync copy it, or keep it and run sluice verify --repair after the sync has caught up")
			}
			// Refused before anything is recorded, so a bad start leaves nothing behind.
			if err := copier.CheckTargetEmpty(ctx, s.tgt, t.plan); err != nil {
				return err
			}
		}
		// Recorded before anything else, so a run that fails below is
		// resumed by the next one rather than refused as someone else's.
		state = &mysql.SyncState{Slot: s.opt.Slot, Publication: s.opt.Publication, Phase: mysql.PhasePreparing}
		if err := s.tgt.CreateSyncState(ctx, *state); err != nil {
			return err
		}
	} else if state.Phase != mysql.PhasePreparing {
		if exists, err := pgstream.SlotExists(ctx, s.src.Pool, s.opt.Slot); err != nil {
			return err
		} else if !exists {
			return failure.New(failure.Schema, "SLUICE-SYNC-SLOTLOST",
				"the target records a sync on replication slot %s, but the source no longer has that slot: changes since then are lost", s.opt.Slot).
				WithHint("run sluice abort, drop the target tables, and start the sync again")
		}
	}
	// Target tables and chunk plans come before the slot: what fails here
	// (a table the target refuses) then leaves no slot retaining WAL. The
	// chunks cover the whole key space and are read only once the slot
	// exists, so rows written in between are not missed.
	for _, t := range s.tables {
		if err := s.prepareTable(ctx, t); err != nil {
			return err
		}
	}
	names := make([]schema.TableName, len(s.tables))
	for i, t := range s.tables {
		names[i] = t.plan.Source.Name
	}
	if err := pgstream.EnsureCapture(ctx, s.src.Pool, s.opt.Publication, s.opt.Slot, names, s.log); err != nil {
		return err
	}
	if state.Phase == mysql.PhasePreparing {
		return s.tgt.SetSyncPhase(ctx, s.opt.Slot, "streaming")
	}
	return nil
}

func (s *Syncer) prepareTable(ctx context.Context, t *table) error {
	state, err := copier.StartTable(ctx, s.src, s.tgt, t.plan, s.opt.ChunkRows, s.log)
	if err != nil {
		return err
	}
	s.setChunkPlan(t, state)
	t.progress = s.opt.Tracker.Add(t.plan.Source.Name.String(), max(t.plan.Source.EstimatedRows, state.RowsDone), state.RowsDone)
	if t.copied {
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
	t.copied = state.Done
	t.readStarted = false
}

// checkStreamable refuses what the change stream cannot carry exactly.
func checkStreamable(t *plan.Table) error {
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
	}
	for _, c := range t.Columns {
		if c.Source == "" {
			return failure.New(failure.Schema, "SLUICE-SYNC-COMPUTED", "table %s: computed column %s cannot be kept in sync from the change stream yet", st.Name, c.Target).
				With("table", st.Name.String()).With("column", c.Target).
				WithHint("use sluice copy for tables with computed columns, or compute the column on the target (a generated column)")
		}
	}
	return nil
}

// bindRelation checks a relation the stream announced against the plan and
// maps its columns. A schema change on the source stops the sync rather
// than write wrong data.
func (t *table) bindRelation(rel *pgstream.Relation) error {
	src := t.plan.Source
	byName := map[string]int{}
	for i, c := range rel.Columns {
		byName[c.Name] = i
	}
	var problems []string
	for _, c := range src.Columns {
		i, ok := byName[c.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("column %s was dropped or renamed", c.Name))
		case rel.Columns[i].TypeOID != c.Type.OID && c.Type.Domain == "": // the stream names a domain, the plan its base type
			problems = append(problems, fmt.Sprintf("column %s changed type", c.Name))
		}
		delete(byName, c.Name)
	}
	for name := range byName {
		problems = append(problems, fmt.Sprintf("column %s was added", name))
	}
	if len(problems) > 0 {
		return failure.New(failure.Schema, "SLUICE-SYNC-SCHEMACHANGE", "source table %s changed while syncing: %s", src.Name, strings.Join(problems, "; ")).
			With("table", src.Name.String()).
			WithHint("sluice stopped before writing wrong data: apply the same change to the target table (and the mapping), then run sync again")
	}
	t.relIdx = make([]int, len(t.plan.Columns))
	pos := map[string]int{}
	for i, c := range rel.Columns {
		pos[c.Name] = i
	}
	for i, c := range t.plan.Columns {
		t.relIdx[i] = pos[c.Source]
	}
	t.relCols = rel.Columns
	return nil
}
