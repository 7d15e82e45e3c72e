// Command likes-v1 is the tiny "V1" likes service of `make demo-events`: it
// keeps likes in PostgreSQL and, after every like and unlike commits, emits
// an event to NATS JetStream with sluice's emitter (pkg/events), so sluice
// can keep a new schema on MariaDB in sync without replication rights.
//
//	likes-v1 seed  --source URL --users 2000 --posts 100     create the V1 schema and some likes
//	likes-v1 serve --source URL --events nats://…/LIKES --duration 20s --workers 4
//	likes-v1 gen   --source URL --events nats://…/LIKES --count 200000 --keys 100000
//	likes-v1 drop-stream --events nats://…/LIKES                delete the stream (demo clean-up)
//
// gen is for benchmarks: it publishes count upsert events over keys rows
// (each key several times, in version order) as fast as JetStream takes them,
// and writes the rows' final state into the (empty) source table, so verify
// can compare afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-db/sluice/pkg/events"
)

const schema = `
CREATE TABLE IF NOT EXISTS likes (
  user_id    bigint      NOT NULL,
  post_id    bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (user_id, post_id)
);
-- Every change takes a version from this sequence in the changing statement:
-- it grows with every like and unlike of a (user, post), across deletes.
CREATE SEQUENCE IF NOT EXISTS likes_version;
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: likes-v1 seed|serve|gen|drop-stream [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	source := fs.String("source", "postgres://postgres@127.0.0.1:5432/likes", "the V1 PostgreSQL database")
	eventsURL := fs.String("events", "nats://127.0.0.1:4222/LIKES", "the JetStream stream events go to")
	users := fs.Int("users", 2000, "users")
	posts := fs.Int("posts", 100, "posts")
	duration := fs.Duration("duration", 20*time.Second, "serve: how long to run")
	workers := fs.Int("workers", 4, "serve: concurrent clients")
	count := fs.Int("count", 200000, "gen: events to publish")
	keys := fs.Int("keys", 100000, "gen: distinct rows the events touch")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(ctx, *source, *users, *posts)
	case "serve":
		err = serve(ctx, *source, *eventsURL, *users, *posts, *workers, *duration)
	case "gen":
		err = gen(ctx, *source, *eventsURL, *count, *keys)
	case "drop-stream":
		err = dropStream(ctx, *eventsURL)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "likes-v1:", err)
		os.Exit(1)
	}
}

func seed(ctx context.Context, source string, users, posts int) error {
	conn, err := pgx.Connect(ctx, source)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schema); err != nil {
		return err
	}
	// Roughly one like in three, spread over the last 90 days.
	_, err = conn.Exec(ctx, `INSERT INTO likes (user_id, post_id, created_at)
		SELECT u, p, timestamptz '2024-06-01 00:00:00+00' - ((u * 7919 + p * 104729) % 7776000) * interval '1 second'
		FROM generate_series(1, $1::int) u, generate_series(1, $2::int) p
		WHERE (u * 31 + p * 17) % 3 = 0
		ON CONFLICT DO NOTHING`, users, posts)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `ANALYZE likes`)
	return err
}

// serve runs the V1 API's writes: random likes and unlikes, each in its own
// transaction, each followed by its event.
func serve(ctx context.Context, source, eventsURL string, users, posts, workers int, duration time.Duration) error {
	pool, err := pgxpool.New(ctx, source)
	if err != nil {
		return err
	}
	defer pool.Close()
	em, err := events.Connect(ctx, eventsURL)
	if err != nil {
		return err
	}
	defer em.Close()
	// Stop taking new requests at the deadline (or on Ctrl-C), but finish the
	// ones in flight: a change committed without its event would be lost to
	// V2 (the dual-write problem; an outbox table closes it for good).
	deadline := time.Now().Add(duration)
	stopped := func() bool { return ctx.Err() != nil || time.Now().After(deadline) }
	var likes, unlikes atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for !stopped() {
				user, post := int64(1+rng.IntN(users)), int64(1+rng.IntN(posts))
				opCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var err error
				if rng.IntN(2) == 0 {
					err = like(opCtx, pool, em, user, post)
					likes.Add(1)
				} else {
					err = unlike(opCtx, pool, em, user, post)
					unlikes.Add(1)
				}
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Printf("likes-v1: %d likes and %d unlikes in %s, one event each (when the row changed)\n", likes.Load(), unlikes.Load(), duration)
	return nil
}

func like(ctx context.Context, pool *pgxpool.Pool, em *events.Emitter, user, post int64) error {
	var at time.Time
	var version int64
	err := pool.QueryRow(ctx, `INSERT INTO likes (user_id, post_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
		RETURNING created_at, nextval('likes_version')`, user, post).Scan(&at, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // liked already: nothing changed, no event
	}
	if err != nil {
		return err
	}
	key := map[string]any{"user_id": user, "post_id": post}
	return em.Upsert(ctx, "public.likes", key,
		map[string]any{"user_id": user, "post_id": post, "created_at": at.UTC().Format(time.RFC3339Nano)}, version)
}

func unlike(ctx context.Context, pool *pgxpool.Pool, em *events.Emitter, user, post int64) error {
	var version int64
	err := pool.QueryRow(ctx, `DELETE FROM likes WHERE user_id = $1 AND post_id = $2 RETURNING nextval('likes_version')`, user, post).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return em.Delete(ctx, "public.likes", map[string]any{"user_id": user, "post_id": post}, version)
}

// gen publishes count events over keys rows and stores their final state.
func gen(ctx context.Context, source, eventsURL string, count, keys int) error {
	if keys < 1 || count < keys {
		return errors.New("gen: need 1 <= keys <= count")
	}
	em, err := events.Connect(ctx, eventsURL)
	if err != nil {
		return err
	}
	defer em.Close()
	base := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	keyOf := func(i int) (int64, int64) { k := i % keys; return int64(k/100 + 1), int64(k%100 + 1) }
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Microsecond) }
	started := time.Now()
	for i := 0; i < count; i++ {
		user, post := keyOf(i)
		_, err := em.EmitAsync(events.Event{Table: "public.likes", Op: events.OpUpsert,
			Key: map[string]any{"user_id": user, "post_id": post},
			Row: map[string]any{"user_id": user, "post_id": post, "created_at": at(i).Format(time.RFC3339Nano)}, Version: int64(i + 1)})
		if err != nil {
			return err
		}
	}
	if err := em.Flush(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "likes-v1 gen: %d events over %d rows published in %.2f s\n", count, keys, time.Since(started).Seconds())
	conn, err := pgx.Connect(ctx, source)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows := make([][]any, 0, keys)
	for k := 0; k < keys; k++ {
		last := k + keys*((count-1-k)/keys)
		user, post := keyOf(last)
		rows = append(rows, []any{user, post, at(last)})
	}
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"likes"}, []string{"user_id", "post_id", "created_at"}, pgx.CopyFromRows(rows))
	return err
}

func dropStream(ctx context.Context, eventsURL string) error {
	ep, err := events.ParseURL(eventsURL)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(ep.Servers)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := js.DeleteStream(ctx, ep.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}
