package synctest

import (
	"context"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestSyncSurvivesKill9 kills sluice sync with SIGKILL at random moments
// of the copy and of the streaming while the source takes writes, restarts
// it each time, and checks that the target ends equal to the source, every
// row exactly once.
func TestSyncSurvivesKill9(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE accounts (id bigserial PRIMARY KEY, owner int NOT NULL, balance bigint NOT NULL,
		note text, updated timestamptz NOT NULL DEFAULT now())`)
	p.PG(t, `INSERT INTO accounts (owner, balance, note) SELECT g % 977, g * 10, 'acct ' || g FROM generate_series(1, 60000) g`)
	p.PG(t, `ANALYZE accounts`)

	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "1000", "--max-rows-per-sec", "6000", "--batch-rows", "200")
	w := testenv.StartWorkload(t, p.SourceURL, testenv.WorkloadOptions{Duration: 2 * time.Minute, Pause: 3 * time.Millisecond}, accountsWorkload(60000))

	killedIn := map[string]int{}
	for round := 0; round < 5; round++ {
		proc := s.start()
		// rounds 0–1 kill during the copy, 2–4 while streaming
		if round < 2 {
			s.waitCopying(60*time.Second, "accounts", 0)
		} else {
			s.wait(120*time.Second, "the copy to finish", func(st testenv.SyncStatus) bool { return st.Phase == "streaming" })
		}
		time.Sleep(time.Duration(200+rand.IntN(1800)) * time.Millisecond)
		st, err := s.status()
		if err != nil {
			t.Fatalf("round %d: status before the kill: %v\n%s", round, err, testenv.Tail(proc.Output(), 20))
		}
		if done, code := proc.Exited(); done {
			t.Fatalf("round %d: sluice sync exited by itself with status %d:\n%s", round, code, testenv.Tail(proc.Output(), 30))
		}
		proc.Cmd.Process.Signal(syscall.SIGKILL)
		proc.Wait(10 * time.Second)
		killedIn[st.Phase]++
		t.Logf("round %d: killed while %s, %d rows copied, %d changes applied", round, st.Phase, st.RowsCopied("accounts"), st.ChangesApplied)
		if out := proc.Output(); strings.Contains(out, "Duplicate entry") || strings.Contains(out, "level=ERROR") {
			t.Fatalf("round %d: errors before the kill:\n%s", round, testenv.Tail(out, 30))
		}
		if !w.Running() {
			_, _, err := w.Stop()
			t.Fatalf("the workload stopped early (error or its 2 min bound): %v", err)
		}
	}
	if killedIn["copying"] == 0 || killedIn["streaming"] == 0 {
		t.Fatalf("killed %v times by phase; the test needs kills during the copy and while streaming", killedIn)
	}

	s.start()
	time.Sleep(2 * time.Second) // some more writes with the last run up
	ops, errs, first := w.Stop()
	if first != nil {
		t.Fatalf("workload: %v", first)
	}
	t.Logf("workload: %d transactions, %d errors", ops, errs)
	st := s.waitCaughtUp(120 * time.Second)
	t.Logf("caught up: %d changes applied by the last run", st.ChangesApplied)

	verifyEqual(t, p.SourceURL, p.TargetURL, "accounts")
	var rows, distinct int64
	if err := p.Target.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT id) FROM accounts`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	want := pgInt(t, p.Source, `SELECT count(*) FROM accounts`)
	if rows != want || distinct != want {
		t.Fatalf("target has %d rows (%d distinct ids), source %d", rows, distinct, want)
	}
	s.abort()
}

// accountsWorkload inserts, updates and deletes accounts, alone and a few
// in one transaction, some rolled back.
func accountsWorkload(initial int64) func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
	return func(ctx context.Context, c *pgx.Conn, rng *rand.Rand) error {
		id := 1 + rng.Int64N(initial+initial/10)
		switch rng.IntN(5) {
		case 0:
			_, err := c.Exec(ctx, `INSERT INTO accounts (owner, balance, note) VALUES ($1, 0, 'new')`, rng.IntN(977))
			return err
		case 1:
			_, err := c.Exec(ctx, `UPDATE accounts SET balance = balance + $2, updated = now() WHERE id = $1`, id, rng.Int64N(100)-50)
			return err
		case 2:
			_, err := c.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
			return err
		default:
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			other := 1 + rng.Int64N(initial)
			if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance - 10, note = 'transfer out' WHERE id = $1`, id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + 10, note = 'transfer in' WHERE id = $1`, other); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO accounts (owner, balance, note) VALUES ($1, 10, 'tx')`, rng.IntN(977)); err != nil {
				return err
			}
			if rng.IntN(4) == 0 {
				return tx.Rollback(ctx)
			}
			return tx.Commit(ctx)
		}
	}
}
