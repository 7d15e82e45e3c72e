package synctest

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

// The issue asks the sync to ride out a source restart or a target outage
// by itself: these tests fail if the sync exits, if it never noticed the
// outage (no retry logged), or if the data is wrong at the end.

// TestSourceRestartWhileStreaming restarts the source PostgreSQL (a private
// instance) while sluice streams from it under write load.
func TestSourceRestartWhileStreaming(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPrivatePG(t)
	p := newPair(t) // its target; the source is the private instance
	src := pg.URL("shop")
	c := pg.CreateDB(t, "shop")
	pgExec(t, c, `CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric(12,2) NOT NULL,
		status text NOT NULL DEFAULT 'new', placed timestamptz NOT NULL DEFAULT now())`)
	pgExec(t, c, `INSERT INTO orders (customer, amount) SELECT g % 500, g / 100.0 FROM generate_series(1, 10000) g`)
	pgExec(t, c, `ANALYZE orders`)
	c.Close(context.Background())

	s := newSync(t, src, p.TargetURL, "--chunk-rows", "2000")
	s.start()
	s.waitCaughtUp(60 * time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sync log:\n%s", testenv.Tail(s.current().Output(), 60))
		}
	})

	w := testenv.StartWorkload(t, src, testenv.WorkloadOptions{Pause: 5 * time.Millisecond, Tolerant: true}, ordersWorkload(10000))
	time.Sleep(3 * time.Second)
	pg.Restart(t)
	restartedAt := time.Now()
	t.Log("source restarted")
	time.Sleep(6 * time.Second) // writes go on after the restart
	ops, errs, first := w.Stop()
	t.Logf("workload: %d transactions, %d failed while the source restarted (first: %v)", ops, errs, first)
	if ops-errs < 100 {
		t.Fatalf("workload did too little to prove anything")
	}

	s.assertResumedByItself("the source restart", restartedAt)
	verifyEqual(t, src, p.TargetURL, "orders")
	s.abort()
}

// TestTargetUnreachableWhileStreaming cuts the connection to MariaDB for
// about 5 s (a proxy in between closes its listener and every connection)
// while the sync applies a write load.
func TestTargetUnreachableWhileStreaming(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, amount numeric(12,2) NOT NULL,
		status text NOT NULL DEFAULT 'new', placed timestamptz NOT NULL DEFAULT now())`)
	p.PG(t, `INSERT INTO orders (customer, amount) SELECT g % 500, g / 100.0 FROM generate_series(1, 10000) g`)
	p.PG(t, `ANALYZE orders`)
	u, err := url.Parse(p.TargetURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)

	s := newSync(t, p.SourceURL, testenv.ViaProxy(p.TargetURL, proxy.Addr()), "--chunk-rows", "2000")
	s.start()
	s.waitCaughtUp(60 * time.Second)

	w := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Pause: 5 * time.Millisecond}, ordersWorkload(10000))
	time.Sleep(2 * time.Second)
	proxy.Cut()
	t.Log("target cut off")
	time.Sleep(5 * time.Second)
	// while the target is away, the status API must still answer if the
	// sync still runs
	proxy.Restore(t)
	restoredAt := time.Now()
	t.Log("target reachable again")
	time.Sleep(3 * time.Second)
	stopWorkload(t, w)

	s.assertResumedByItself("the target outage", restoredAt)
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	s.abort()
}

// ordersWorkload places, changes and deletes orders.
func ordersWorkload(initial int64) func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
	return func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
		id := 1 + rng.Int64N(initial)
		var err error
		switch rng.IntN(4) {
		case 0, 1:
			_, err = c.Exec(ctx, `INSERT INTO orders (customer, amount) VALUES ($1, $2)`, rng.IntN(500), rng.IntN(100000))
		case 2:
			_, err = c.Exec(ctx, `UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = $1`, id)
		case 3:
			_, err = c.Exec(ctx, `DELETE FROM orders WHERE id = $1`, id)
		}
		return err
	}
}

// TestTargetUnreachableDuringCopy cuts the target off briefly, several
// times, while chunks are being copied and merged with the stream under
// write load. Each cut makes the sync resume from its last committed
// position while chunks it had read are read again.
func TestTargetUnreachableDuringCopy(t *testing.T) {
	t.Parallel()
	p, proxy := ordersBehindProxy(t, 60000)
	// chunks at least --batch-rows (as with the defaults, 20000 and 5000):
	// each high watermark's rows fill a batch of their own
	s := newSync(t, p.SourceURL, testenv.ViaProxy(p.TargetURL, proxy.Addr()), "--chunk-rows", "5000", "--batch-rows", "5000", "--max-rows-per-sec", "5000")
	s.start()
	w := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Pause: 5 * time.Millisecond}, ordersWorkload(60000))
	s.waitCopying(60*time.Second, "orders", 3000)
	s.supervise()
	cuts := 0
	for cuts < 4 {
		// (a crashed sync is being restarted by the supervisor meanwhile)
		before := s.wait(30*time.Second, "the status API", func(testenv.SyncStatus) bool { return true })
		if before.Phase != "copying" {
			break
		}
		proc := s.current()
		seen := retries(proc.Output())
		// the workload pauses around the cut, so what the sync writes when
		// it notices is a copied chunk (its high watermark) more often than
		// a single change
		w.Hold()
		time.Sleep(300 * time.Millisecond) // the last change is applied
		proxy.Cut()
		cuts++
		// A slow chunk read meets the resume: once the sync has noticed the
		// outage, a session holds a lock on the table (an ALTER TABLE, say)
		// while the sync reconnects, so re-reading the interrupted chunk
		// waits while the stream replays from the last committed position.
		deadline := time.Now().Add(30 * time.Second)
		for retries(proc.Output()) == seen {
			if done, _ := proc.Exited(); done || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		locker := connect(t, p.SourceURL)
		tx, err := locker.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(context.Background(), `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		proxy.Restore(t)
		w.Release()
		time.Sleep(4 * time.Second)
		tx.Rollback(context.Background())
		locker.Close(context.Background())
		// resumed (by itself or restarted): the applied position moves on
		s.wait(60*time.Second, "the sync to apply changes again", func(st testenv.SyncStatus) bool { return st.Applied() > before.Applied() })
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
	}
	t.Logf("target cut off %d times during the copy", cuts)
	if cuts < 2 {
		t.Fatalf("the copy ended after %d cuts; the test needs more", cuts)
	}
	s.wait(120*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
	stopWorkload(t, w)
	s.waitCaughtUp(90 * time.Second)
	s.stopSupervisor()
	// The supervisor only keeps the test going to show what went wrong:
	// the sync must not have needed it.
	if n, exits := s.restarts(); n > 0 {
		t.Errorf("the sync exited %d time(s) when the target was cut off instead of resuming by itself:\n  %s", n, strings.Join(exits, "\n  "))
	} else {
		t.Logf("resumed by itself: retried %d time(s)", retries(s.current().Output()))
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	s.abort()
}

// TestLostCommitAnswers loses MariaDB's answer to COMMITs of the sync under
// write load: the transaction commits, but sluice cannot know it did. Twice
// for a batch that holds a copied chunk, twice for batches of streamed
// changes. Copying such a chunk again would write rows read before changes
// that were applied since, and replaying such a batch would apply its
// changes twice: sluice must learn what committed from the position and
// chunk list stored in the same transactions, resume by itself, and end equal.
func TestLostCommitAnswers(t *testing.T) {
	t.Parallel()
	p, proxy := ordersBehindProxy(t, 40000)
	const chunkLoad = "LOAD DATA LOCAL INFILE" // how a copied chunk reaches the target
	proxy.LoseCommitAnswer(chunkLoad)
	proxy.LoseCommitAnswer(chunkLoad)
	s := newSync(t, p.SourceURL, testenv.ViaProxy(p.TargetURL, proxy.Addr()), "--chunk-rows", "5000", "--max-rows-per-sec", "5000")
	s.start()
	w := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Pause: 5 * time.Millisecond}, ordersWorkload(40000))
	s.wait(60*time.Second, "the answers to two chunks' commits lost", func(testenv.SyncStatus) bool { return proxy.CommitAnswersLost() >= 2 })
	if st, err := s.status(); err != nil || st.Phase != "copying" {
		t.Fatalf("the chunks' commit answers were lost, yet the phase is %q (error %v)", st.Phase, err)
	}
	s.wait(120*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })

	proxy.LoseCommitAnswer("")
	proxy.LoseCommitAnswer("")
	s.wait(60*time.Second, "the answers to two stream batches' commits lost", func(testenv.SyncStatus) bool { return proxy.CommitAnswersLost() >= 4 })
	lastLoss := time.Now()
	time.Sleep(2 * time.Second)
	stopWorkload(t, w)
	s.assertResumedByItself("four lost commit answers", lastLoss)
	if r := retries(s.current().Output()); r < 4 {
		t.Errorf("the sync retried %d time(s) for 4 lost commit answers: did it take a commit it could not confirm for done?\n%s",
			r, testenv.Tail(s.current().Output(), 30))
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	s.abort()
}

// ordersBehindProxy is a pair whose source has an orders table of rows rows,
// and a proxy to its target that the test can cut or make lose answers.
func ordersBehindProxy(t *testing.T, rows int) (*testenv.Pair, *testenv.Proxy) {
	t.Helper()
	p := newPair(t)
	createOrders(t, p, rows)
	u, err := url.Parse(p.TargetURL)
	if err != nil {
		t.Fatal(err)
	}
	return p, testenv.NewProxy(t, u.Host)
}

// assertResumedByItself waits until the sync, still the same process, has
// caught up after an outage (what, ended at since) and logged a retry.
func (s *syncRun) assertResumedByItself(what string, since time.Time) {
	s.t.Helper()
	st := s.waitCaughtUp(90 * time.Second) // fails if the sync exited
	r := retries(s.current().Output())
	if r == 0 {
		s.t.Errorf("the sync logged no retry: did %s reach it at all?\n%s", what, testenv.Tail(s.current().Output(), 30))
	}
	s.t.Logf("resumed by itself: the sync kept running through %s, retrying %d time(s); caught up %.1f s after it ended (%d changes applied)",
		what, r, time.Since(since).Seconds(), st.ChangesApplied)
}

// retries counts the warnings in which a running sync says it lost a
// connection and will resume by itself.
func retries(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "WARN") && (strings.Contains(l, "resumes by itself") || strings.Contains(l, "sync interrupted")) {
			n++
		}
	}
	return n
}
