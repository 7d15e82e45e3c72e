package pgstream_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/schema"
	"github.com/sluice-db/sluice/internal/testenv"
)

// While the receiver of the stream is busy (building a table's indexes can
// take minutes) nobody reads the stream; the status updates must go on, or
// the server ends the connection after wal_sender_timeout. Here the timeout
// is 1 s and the receiver looks away for 4 s.
func TestStreamLivesThroughABusyReceiver(t *testing.T) {
	p, _, st := openLikesStream(t, "?wal_sender_timeout=1000")
	out, pumped := pump(t, st)

	p.PG(t, `INSERT INTO likes VALUES (1)`)
	time.Sleep(4 * time.Second) // the receiver is busy
	p.PG(t, `INSERT INTO likes VALUES (2)`)
	deadline := time.After(30 * time.Second)
	inserts := 0
	for inserts < 2 {
		select {
		case b := <-out:
			for _, ev := range b {
				if ev.Kind == pgstream.Change && ev.Op == pgstream.Insert {
					inserts++
				}
			}
			st.Recycle(b)
		case err := <-pumped:
			t.Fatalf("the stream ended while the receiver was busy: %v", err)
		case <-deadline:
			t.Fatalf("%d of 2 inserts came through in 30 s", inserts)
		}
	}
}

// openLikesStream makes table likes (id int PRIMARY KEY) in a new source
// database, a slot and a publication for it (dropped by the test's
// cleanup), and opens the stream; urlSuffix is added to the source URL.
func openLikesStream(t *testing.T, urlSuffix string) (*testenv.Pair, *pgxpool.Pool, *pgstream.Stream) {
	t.Helper()
	p, pool := likesSource(t)
	ctx := context.Background()
	slot := p.Name
	if err := pgstream.EnsureCapture(ctx, pool, slot, slot, "", []schema.TableName{{Schema: "public", Name: "likes"}}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pgstream.Drop(context.Background(), pool, slot, slot) })
	st, err := pgstream.Open(ctx, p.SourceURL+urlSuffix, slot, slot, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p, pool, st
}

// likesSource makes table likes (id int PRIMARY KEY) in a new source
// database and a pool on it, closed when the test ends.
func likesSource(t *testing.T) (*testenv.Pair, *pgxpool.Pool) {
	t.Helper()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY)`)
	pool, err := pgxpool.New(context.Background(), p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return p, pool
}

// pump runs st.Pump into an unbuffered channel (the pump waits while the
// test does not read) until the test ends, and then closes the stream once
// the pump has returned, as a Stream needs. pumped gets Pump's error.
func pump(t *testing.T, st *pgstream.Stream) (out chan []pgstream.Event, pumped chan error) {
	ctx, stop := context.WithCancel(context.Background())
	out = make(chan []pgstream.Event)
	pumped = make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pumped <- st.Pump(ctx, out)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		st.Close()
	})
	return out, pumped
}

// The batches handed to a receiver that does not take them (busy building
// indexes, a slow target) hold at most the read-ahead budget of row data,
// whatever the channel's length: 1024 batches of wide rows piled up
// gigabytes. Here the budget is 1 MiB and 8 MiB of rows are written.
func TestReadAheadBoundedByBytes(t *testing.T) {
	p, _, st := openLikesStream(t, "")
	st.SetReadAheadBytes(1 << 20)
	p.PG(t, `ALTER TABLE likes ADD COLUMN body text`)
	ctx, stop := context.WithCancel(context.Background())
	out := make(chan []pgstream.Event, 1024)
	pumped := make(chan error, 1)
	go func() { pumped <- st.Pump(ctx, out) }()
	t.Cleanup(func() { stop(); <-pumped; st.Close() })
	for i := 0; i < 8; i++ { // 8 transactions of 64 rows of 16 KiB
		p.PG(t, `INSERT INTO likes SELECT g, repeat(md5(g::text), 512) FROM generate_series($1::int * 64, $1::int * 64 + 63) g`, i)
	}
	time.Sleep(2 * time.Second) // the pump hands over what it may
	rows, held := 0, 0
	take := func(b []pgstream.Event) {
		for _, ev := range b {
			held += len(ev.Content)
			for _, v := range ev.New {
				held += len(v.Data)
			}
			if ev.Kind == pgstream.Change {
				rows++
			}
		}
	}
	var waiting [][]pgstream.Event
	for n := len(out); n > 0; n-- {
		b := <-out
		take(b)
		waiting = append(waiting, b)
	}
	if held > 1<<20+256*(16<<10+64) { // the budget, and at most one batch over it
		t.Fatalf("%d bytes handed over to a receiver that took none; want at most the 1 MiB budget (and one batch)", held)
	}
	if rows >= 512 {
		t.Fatalf("all %d rows were handed over at once, past the budget", rows)
	}
	// taken and given back, the rest comes
	for _, b := range waiting {
		st.Recycle(b)
	}
	deadline := time.After(30 * time.Second)
	for rows < 512 {
		select {
		case b := <-out:
			take(b)
			st.Recycle(b)
		case err := <-pumped:
			t.Fatalf("the stream ended after %d of 512 rows: %v", rows, err)
		case <-deadline:
			t.Fatalf("%d of 512 rows came once the receiver took them", rows)
		}
	}
}
