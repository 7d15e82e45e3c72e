package events

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/testenv"
	pubevents "github.com/sluice-db/sluice/pkg/events"
)

// likesApp is the V1 application of the tests: it likes and unlikes on the
// source and emits one event per change, after its commit, with a version
// taken from a sequence in the changing statement.
type likesApp struct {
	pool    *pgxpool.Pool
	emitter *pubevents.Emitter
	users   int
	posts   int
	changes atomic.Int64
}

// newLikesApp returns the application; with s nil it emits no events (the
// partitioned topology reads the source's log instead).
func newLikesApp(t *testing.T, p *testenv.Pair, s *stream, users, posts int) *likesApp {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	app := &likesApp{pool: pool, users: users, posts: posts}
	if s != nil {
		app.emitter = s.Emit
	}
	return app
}

func (a *likesApp) step(ctx context.Context, rng *rand.Rand) error {
	user, post := int64(1+rng.IntN(a.users)), int64(1+rng.IntN(a.posts))
	key := map[string]any{"user_id": user, "post_id": post}
	if rng.IntN(3) == 0 {
		var version int64
		err := a.pool.QueryRow(ctx, `DELETE FROM likes WHERE user_id = $1 AND post_id = $2 RETURNING nextval('likes_version')`, user, post).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		a.changes.Add(1)
		if a.emitter == nil {
			return nil
		}
		return a.emitter.Delete(ctx, "public.likes", key, version)
	}
	var at time.Time
	var note *string
	var version int64
	err := a.pool.QueryRow(ctx, `INSERT INTO likes (user_id, post_id, created_at, note) VALUES ($1, $2, clock_timestamp(), $3)
		ON CONFLICT (user_id, post_id) DO UPDATE SET created_at = EXCLUDED.created_at, note = EXCLUDED.note
		RETURNING created_at, note, nextval('likes_version')`, user, post, []string{"like", "♥ again", "👍"}[rng.IntN(3)]).Scan(&at, &note, &version)
	if err != nil {
		return err
	}
	a.changes.Add(1)
	if a.emitter == nil {
		return nil
	}
	return a.emitter.Upsert(ctx, "public.likes", key, map[string]any{"user_id": user, "post_id": post,
		"created_at": at.UTC().Format(time.RFC3339Nano), "note": note}, version)
}

// run writes with workers goroutines until stop is closed.
func (a *likesApp) run(t *testing.T, workers int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 42))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := a.step(context.Background(), rng); err != nil {
					t.Errorf("likes app: %v", err)
					return
				}
			}
		}(uint64(w))
	}
	return &wg
}

// likesLoad is a source seeded with likes, a JetStream stream, the likes
// config, and the likes application writing until end.
type likesLoad struct {
	p    *testenv.Pair
	s    *stream
	cfg  string
	app  *likesApp
	stop chan struct{}
	once sync.Once
	wg   *sync.WaitGroup
}

// startLikesLoad seeds users×posts likes and starts workers writers, which
// also emit their changes to the stream when emit is set.
func startLikesLoad(t *testing.T, users, posts, workers int, emit bool) *likesLoad {
	t.Helper()
	l := &likesLoad{p: testenv.NewPair(t), s: newStream(t), cfg: writeConfig(t, likesConfig), stop: make(chan struct{})}
	seedLikes(t, l.p, users, posts)
	var events *stream
	if emit {
		events = l.s
	}
	l.app = newLikesApp(t, l.p, events, users, posts)
	l.wg = l.app.run(t, workers, l.stop)
	t.Cleanup(l.end) // a test that failed before its end
	return l
}

// end stops the writers and waits for them.
func (l *likesLoad) end() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func seedLikes(t *testing.T, p *testenv.Pair, users, posts int) {
	t.Helper()
	p.PG(t, likesDDL)
	p.PG(t, `CREATE SEQUENCE likes_version`)
	p.PG(t, `INSERT INTO likes SELECT u, q, timestamptz '2024-01-01 00:00:00+00' + (u * 1000 + q) * interval '1 second 7 microseconds', 'seed'
		FROM generate_series(1, $1) u, generate_series(1, $2) q`, users, posts)
	p.PG(t, `ANALYZE likes`)
}

// The backfill copy and the events overlap on the same keys while the
// application writes; the sync is killed with SIGKILL in the middle of the
// copy and resumes. The target ends equal to the source.
func TestCopyAndEventsOverlapWithKill(t *testing.T) {
	load := startLikesLoad(t, 1000, 100, 4, true)
	p, s, cfg, app := load.p, load.s, load.cfg, load.app

	args := append([]string{"sync", "--changes=events", "--events", s.URL, "--config", cfg, "--chunk-rows", "4000", "--parallel", "2",
		"--batch-rows", "500"}, p.Args()...)
	first := start(t, args...)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var n int64
		if p.Target.QueryRow("SELECT COUNT(*) FROM _sluice_copy_chunks WHERE done").Scan(&n) == nil && n >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := first.status(t)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, first.out)
	}
	first.kill()
	copiedBeforeKill := count(t, p.Target, "SELECT COALESCE(SUM(rows_copied), 0) FROM _sluice_copy_chunks WHERE done")
	t.Logf("killed during phase %s; %d rows copied, %d events applied, %d app changes so far", st.Events.Phase, copiedBeforeKill, st.Events.Applied, app.changes.Load())
	if st.Events.CopyDone {
		t.Log("the copy finished before the kill; the overlap was shorter than intended")
	}

	second := start(t, args...)
	second.waitFor(t, "the copy", 90*time.Second, func(st eventsStatus) bool { return st.Events.CopyDone })
	time.Sleep(time.Second) // events keep flowing after the copy
	load.end()
	final := second.waitFor(t, "caught up", 60*time.Second, caughtUp)
	t.Logf("app made %d changes; sync applied %d events, ignored %d, dead-lettered %d", app.changes.Load(), final.Events.Applied, final.Events.Ignored, final.Events.DeadLettered)
	if final.Events.DeadLettered != 0 {
		t.Errorf("dead letters:\n%s", second.out)
	}
	second.stop(t)
	mustVerify(t, append(p.Args(), "--config", cfg)...)
	if app.changes.Load() < 1000 {
		t.Errorf("the application made only %d changes; the test proves little", app.changes.Load())
	}
}
