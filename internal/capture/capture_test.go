package capture_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/sluice-db/sluice/internal/capture"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/testenv"
)

// sluice abort can run while a sync starts: it drops the run's state on the
// target before the sync has created its slot, and so cannot drop a slot it
// never saw. The starting run must then drop the slot itself, or it would
// retain WAL on the source until someone noticed.
func TestAbortDuringStartLeavesNoSlot(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY, name text)`)
	p.PG(t, `INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g`)
	src, tgt := p.Handles(t) // closed after the slot's clean-up below (clean-ups run last first)
	pl, err := plan.Build(ctx, src, plan.Options{Tables: []string{"items"}, Flavor: tgt.Flavor})
	if err != nil || pl.Err() != nil {
		t.Fatalf("plan: %v %v", err, pl.Err())
	}
	slot := p.Name
	t.Cleanup(func() { pgstream.Drop(context.Background(), src.Pool, slot, slot) })

	start := capture.Start{Source: src, Target: tgt, Slot: slot, Publication: slot, Tables: pl.Tables,
		Phase: "streaming", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err = start.Prepare(ctx, func(ctx context.Context, i int) error {
		// what sluice abort does on the target, between the run's first
		// record and its slot
		return tgt.DropMetadata(ctx)
	})
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != "SLUICE-SYNC-NOSTATE" {
		t.Fatalf("Prepare after an abort = %v; want SLUICE-SYNC-NOSTATE", err)
	}
	if exists, err := pgstream.SlotExists(ctx, src.Pool, slot); err != nil || exists {
		t.Fatalf("slot %s exists = %v (%v) after the aborted start; want it dropped", slot, exists, err)
	}
	var pubs int
	if err := src.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, slot).Scan(&pubs); err != nil || pubs != 0 {
		t.Fatalf("publications named %s: %d (%v); want none", slot, pubs, err)
	}

	// The next run starts afresh and keeps its slot.
	if err := start.Prepare(ctx, func(context.Context, int) error { return nil }); err != nil {
		t.Fatalf("the next run: %v", err)
	}
	if exists, err := pgstream.SlotExists(ctx, src.Pool, slot); err != nil || !exists {
		t.Fatalf("slot %s exists = %v (%v) after a good start; want it", slot, exists, err)
	}
	st, err := tgt.LoadSyncState(ctx, slot)
	if err != nil || st == nil || st.Phase != "streaming" {
		t.Fatalf("state after a good start = %+v (%v); want phase streaming", st, err)
	}
}
