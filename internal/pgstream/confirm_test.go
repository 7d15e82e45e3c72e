package pgstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/sluice-db/sluice/internal/pgstream"
)

// A confirmed position reaches the slot at once, not with the next periodic
// status update (every 5 s at the default wal_sender_timeout): the server
// frees WAL only on it. Three times: right after the stream opened, right
// after an earlier confirmation went out, and while the reader waits to hand
// the next transaction to a receiver that is busy (as the sync is while it
// builds a table's indexes).
func TestConfirmReachesTheSlotPromptly(t *testing.T) {
	p, pool, st := openLikesStream(t, "")
	ctx := context.Background()
	slot := p.Name
	out, pumped := pump(t, st)

	for i := 1; i <= 3; i++ {
		p.PG(t, `INSERT INTO likes VALUES ($1)`, i)
		commit := nextCommit(t, st, out, pumped)
		if i == 3 { // another transaction, which the pump holds until the receiver takes it
			p.PG(t, `INSERT INTO likes VALUES (4)`)
			time.Sleep(300 * time.Millisecond)
		}
		confirmedAt := time.Now()
		st.Confirm(commit)
		for {
			var text string
			if err := pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&text); err != nil {
				t.Fatal(err)
			}
			onSlot, err := pglogrepl.ParseLSN(text)
			if err != nil {
				t.Fatal(err)
			}
			if onSlot >= commit {
				break
			}
			if waited := time.Since(confirmedAt); waited > 2*time.Second {
				t.Fatalf("confirmation %d: the slot shows %s %v after sluice confirmed %s", i, onSlot, waited.Round(time.Millisecond), commit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// nextCommit returns the end LSN of the next transaction on the stream.
func nextCommit(t *testing.T, st *pgstream.Stream, out <-chan []pgstream.Event, pumped <-chan error) pglogrepl.LSN {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case b := <-out:
			for _, ev := range b {
				if ev.Kind == pgstream.Commit {
					lsn := ev.LSN
					st.Recycle(b)
					return lsn
				}
			}
			st.Recycle(b)
		case err := <-pumped:
			t.Fatalf("the stream ended: %v", err)
		case <-deadline:
			t.Fatal("no transaction came through in 30 s")
		}
	}
}
