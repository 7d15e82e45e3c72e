package mysql_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/testenv"
)

// The applied position is the exactly-once guarantee: only the change loop
// may move it. Recording a (re)started sync or a phase must never set it back,
// or a restart would apply changes a second time.
func TestSyncStateKeepsAppliedPosition(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	tgt := &mysql.Target{DB: p.Target}
	if err := tgt.EnsureSyncTable(ctx); err != nil {
		t.Fatal(err)
	}
	const slot = "sluice_state_test"
	if err := tgt.CreateSyncState(ctx, mysql.SyncState{Slot: slot, Publication: "pub", Phase: "streaming"}); err != nil {
		t.Fatal(err)
	}
	if err := mysql.StoreAppliedLSN(ctx, p.Target, slot, 0x5000); err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateSyncState(ctx, mysql.SyncState{Slot: slot, Publication: "pub", Phase: "streaming"}); err != nil {
		t.Fatal(err)
	}
	if err := tgt.SetSyncPhase(ctx, slot, "cutover"); err != nil {
		t.Fatal(err)
	}
	st, err := tgt.LoadSyncState(ctx, slot)
	if err != nil || st == nil {
		t.Fatalf("load state: %v %v", st, err)
	}
	if st.AppliedLSN != 0x5000 || st.Phase != "cutover" {
		t.Fatalf("state = applied %#x phase %q; want applied 0x5000 (kept) and phase cutover", st.AppliedLSN, st.Phase)
	}
}

// A phase recorded for a sync whose state finish or abort removed (the row,
// or the whole table) is an error: the run must stop, not stream on unrecorded.
func TestSetSyncPhaseWithoutStateFails(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	tgt := &mysql.Target{DB: p.Target}
	if err := tgt.EnsureSyncTable(ctx); err != nil {
		t.Fatal(err)
	}
	const slot = "sluice_state_gone"
	if err := tgt.CreateSyncState(ctx, mysql.SyncState{Slot: slot, Publication: "pub", Phase: "streaming"}); err != nil {
		t.Fatal(err)
	}
	if err := tgt.SetSyncPhase(ctx, slot, "streaming"); err != nil { // unchanged: no row "affected", still there
		t.Fatalf("same phase again: %v", err)
	}
	p.My(t, "DELETE FROM "+mysql.SyncTable)
	if err := tgt.SetSyncPhase(ctx, slot, "cutover"); !errors.Is(err, mysql.ErrNoSyncState) {
		t.Fatalf("phase of a removed row: %v; want ErrNoSyncState", err)
	}
	if err := tgt.DropMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tgt.SetSyncPhase(ctx, slot, "cutover"); !errors.Is(err, mysql.ErrNoSyncState) {
		t.Fatalf("phase with the table dropped: %v; want ErrNoSyncState", err)
	}
}
