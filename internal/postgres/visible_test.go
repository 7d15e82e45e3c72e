package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// WaitVisible waits while a transaction is not visible to new snapshots
// (here: still open; for the sync, a commit the stream delivered while the
// source waits for a synchronous standby) and returns once it is.
func TestWaitVisible(t *testing.T) {
	p := testenv.NewPair(t)
	src, _ := p.Handles(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE v (id int)`)
	tx, err := src.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, `INSERT INTO v VALUES (1) RETURNING (txid_current() % 4294967296)`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := src.WaitVisible(ctx, []uint32{uint32(xid)}, 300*time.Millisecond); err == nil {
		t.Fatalf("WaitVisible returned while transaction %d was open", xid)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("WaitVisible gave up after %s, before its timeout", waited)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.WaitVisible(ctx, []uint32{uint32(xid)}, time.Second); err != nil {
		t.Fatalf("WaitVisible after the commit: %v", err)
	}
}
