package mysql_test

import (
	"context"
	"errors"
	"slices"
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
	if err := mysql.StoreAppliedLSN(ctx, p.Target, slot, 0x3000); err != nil { // a writer behind: kept at 0x5000
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

// A state table made by an older build (no record of the sync's tables) is
// read as it is and upgraded on first read, so finish and abort work on a
// migration an older build started; the tables then recorded add up over
// resumed runs rather than replace each other, because abort removes the
// copy progress of every table the sync ever copied.
func TestSyncStateTablesFromAnOlderBuild(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	tgt := &mysql.Target{DB: p.Target}
	p.My(t, `CREATE TABLE `+mysql.SyncTable+` (slot VARCHAR(64) NOT NULL PRIMARY KEY, publication VARCHAR(64) NOT NULL,
		applied_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0, phase VARCHAR(16) NOT NULL,
		updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`)
	p.My(t, `INSERT INTO `+mysql.SyncTable+` (slot, publication, applied_lsn, phase) VALUES ('old_mig', 'old_pub', 4096, 'streaming')`)
	st, err := tgt.LoadSyncState(ctx, "old_mig")
	if err != nil || st == nil {
		t.Fatalf("load the state an older build wrote: %v %v", st, err)
	}
	if st.Publication != "old_pub" || st.AppliedLSN != 4096 || len(st.Tables) != 0 || st.Stream != "" {
		t.Fatalf("old state read as %+v; want publication old_pub, applied 4096, no tables or stream", *st)
	}
	if err := tgt.RecordSyncTables(ctx, "old_mig", []string{"public.likes", "public.posts"}, "", 0); err != nil {
		t.Fatal(err)
	}
	if err := tgt.RecordSyncTables(ctx, "old_mig", []string{"public.posts", "public.users"}, "LIKES", 4); err != nil {
		t.Fatal(err)
	}
	st, err = tgt.LoadSyncState(ctx, "old_mig")
	if err != nil || st == nil {
		t.Fatalf("load the upgraded state: %v %v", st, err)
	}
	if want := []string{"public.likes", "public.posts", "public.users"}; !slices.Equal(st.Tables, want) || st.Stream != "LIKES" || st.AppliedLSN != 4096 {
		t.Errorf("recorded tables %v, stream %q, applied %d; want %v, LIKES and 4096 kept", st.Tables, st.Stream, st.AppliedLSN, want)
	}
	if err := tgt.RecordSyncTables(ctx, "old_mig", []string{"public.likes"}, "", 0); err != nil { // a run without a stream keeps it
		t.Fatal(err)
	}
	if st, err = tgt.LoadSyncState(ctx, "old_mig"); err != nil || st == nil || st.Stream != "LIKES" || len(st.Tables) != 3 || st.Partitions != 4 {
		t.Errorf("after a resumed run that names no stream: %+v, %v; want stream LIKES, 4 partitions and the 3 tables kept", st, err)
	}
	// A publisher resumed with another partition count would route keys to
	// appliers at other positions: refused, nothing recorded.
	var other *mysql.OtherPartitionsError
	if err := tgt.RecordSyncTables(ctx, "old_mig", []string{"public.extra"}, "LIKES", 2); !errors.As(err, &other) || other.Recorded != 4 || other.Asked != 2 {
		t.Errorf("a resumed publisher with 2 partitions where 4 are recorded: %v; want an OtherPartitionsError", err)
	}
	if st, err = tgt.LoadSyncState(ctx, "old_mig"); err != nil || st == nil || st.Partitions != 4 || len(st.Tables) != 3 {
		t.Errorf("after the refused run: %+v, %v; want 4 partitions and the 3 tables kept", st, err)
	}
	if err := tgt.RecordSyncTables(ctx, "gone_mig", []string{"public.likes"}, "", 0); !errors.Is(err, mysql.ErrNoSyncState) {
		t.Errorf("recording the tables of a sync with no state: %v; want ErrNoSyncState", err)
	}
}
