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
// by itself. These tests accept a sync that exits with an error and is
// restarted by a supervisor (as systemd would), and log which it was; they
// fail if the data is wrong at the end or the sync neither recovers nor
// exits.

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
	s.supervise()

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

	st := s.waitCaughtUp(90 * time.Second)
	n, exits := s.restarts()
	if n == 0 {
		retries := strings.Count(s.current().Output(), "resumes by itself")
		if retries == 0 {
			t.Errorf("the sync neither exited nor logged a retry: did the source restart reach it at all?\n%s", testenv.Tail(s.current().Output(), 30))
		}
		t.Logf("RESUMED BY ITSELF: the sync kept running through the source restart, retrying %d time(s) (%d changes applied)", retries, st.ChangesApplied)
	} else {
		t.Logf("NEEDED A RESTART: the sync exited %d time(s) after the source restart and was restarted by the test's supervisor; caught up %.1f s after the restart:\n  %s",
			n, time.Since(restartedAt).Seconds(), strings.Join(exits, "\n  "))
	}
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
	s.supervise()

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
	ops, _, first := w.Stop()
	if first != nil {
		t.Fatalf("workload: %v", first)
	}
	t.Logf("workload: %d transactions", ops)

	st := s.waitCaughtUp(90 * time.Second)
	n, exits := s.restarts()
	if n == 0 {
		retries := strings.Count(s.current().Output(), "resumes by itself")
		if retries == 0 {
			t.Errorf("the sync neither exited nor logged a retry: did the target outage reach it at all?\n%s", testenv.Tail(s.current().Output(), 30))
		}
		t.Logf("RESUMED BY ITSELF: the sync kept running through the target outage, retrying %d time(s) (%d changes applied)", retries, st.ChangesApplied)
	} else {
		t.Logf("NEEDED A RESTART: the sync exited %d time(s) during the target outage and was restarted by the test's supervisor; caught up %.1f s after the target came back:\n  %s",
			n, time.Since(restoredAt).Seconds(), strings.Join(exits, "\n  "))
	}
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

// TestTargetUnreachableDuringCopy cuts the target off while chunks are
// being copied and merged with the stream under write load.
func TestTargetUnreachableDuringCopy(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 40000)
	u, err := url.Parse(p.TargetURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	s := newSync(t, p.SourceURL, testenv.ViaProxy(p.TargetURL, proxy.Addr()), "--chunk-rows", "1000", "--max-rows-per-sec", "4000")
	s.start()
	w := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Pause: 5 * time.Millisecond}, ordersWorkload(40000))
	s.waitCopying(60*time.Second, "orders", 5000)
	s.supervise()
	proxy.Cut()
	t.Log("target cut off during the copy")
	time.Sleep(4 * time.Second)
	proxy.Restore(t)
	t.Log("target reachable again")
	s.wait(120*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
	ops, _, first := w.Stop()
	if first != nil {
		t.Fatalf("workload: %v", first)
	}
	t.Logf("workload: %d transactions", ops)
	s.waitCaughtUp(90 * time.Second)
	s.stopSupervisor()
	n, exits := s.restarts()
	for _, e := range exits {
		if strings.Contains(e, "panic") || strings.Contains(e, "exit 2 ") {
			t.Errorf("the sync crashed during the outage: %s", e)
		}
	}
	if n == 0 {
		t.Logf("RESUMED BY ITSELF: retried %d time(s)", strings.Count(s.current().Output(), "resumes by itself"))
	} else {
		t.Logf("NEEDED A RESTART: the sync exited %d time(s):\n  %s", n, strings.Join(exits, "\n  "))
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	s.abort()
}
