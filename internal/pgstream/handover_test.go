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
	defer st.Close()
	ctx := context.Background()
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	out := make(chan []pgstream.Event) // unbuffered: the pump waits on the receiver
	pumped := make(chan error, 1)
	go func() { pumped <- st.Pump(pctx, out) }()

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
			pgstream.Recycle(b)
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
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY)`)
	pool, err := pgxpool.New(ctx, p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	slot := p.Name
	if err := pgstream.EnsureCapture(ctx, pool, slot, slot, []schema.TableName{{Schema: "public", Name: "likes"}}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pgstream.Drop(context.Background(), pool, slot, slot) })
	st, err := pgstream.Open(ctx, p.SourceURL+urlSuffix, slot, slot, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p, pool, st
}
