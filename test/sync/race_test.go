package synctest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCommitRacingLowWatermark: PostgreSQL writes a transaction's commit
// record before it makes the transaction visible. A commit that lands in
// the WAL just before a chunk's low watermark, but is not yet visible to the
// chunk's read, reaches the target through the stream and would then be
// overwritten by the chunk's older copy of the row. The test holds such a
// transaction in that state on purpose (a synchronous standby that never
// answers keeps a committed transaction invisible) and checks that sluice
// reads the chunk again instead of writing it, and that the row ends right.
func TestCommitRacingLowWatermark(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE likes (id integer PRIMARY KEY, n integer NOT NULL)`)
	p.PG(t, `INSERT INTO likes SELECT g, g FROM generate_series(1, 2000) g`)
	ctx := context.Background()

	admin := connect(t, sharedPG+"/postgres")
	// Every session but the racing one commits without waiting for a
	// standby (scripts/services.sh sets this too; with no standby it is
	// what "on" does).
	if v := showSetting(t, admin, "synchronous_commit"); v != "local" {
		pgExec(t, admin, `ALTER SYSTEM SET synchronous_commit = local`)
		pgExec(t, admin, `SELECT pg_reload_conf()`)
		time.Sleep(time.Second)
	}

	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "100", "--max-rows-per-sec", "400")
	proc := s.start()
	s.waitCopying(60*time.Second, "likes", 800)

	// A standby that never comes: a commit that waits for it is in the WAL
	// (so the stream delivers it) but invisible to every other snapshot.
	pgExec(t, admin, `ALTER SYSTEM SET synchronous_standby_names = 'sluice_test_never'`)
	pgExec(t, admin, `SELECT pg_reload_conf()`)
	released := false
	release := func() {
		if !released {
			released = true
			pgExec(t, admin, `ALTER SYSTEM RESET synchronous_standby_names`)
			pgExec(t, admin, `SELECT pg_reload_conf()`)
		}
	}
	defer release()
	time.Sleep(500 * time.Millisecond) // the checkpointer publishes the setting

	racer := connect(t, p.SourceURL)
	pgExec(t, racer, `SET synchronous_commit = on`)
	racerPID := pgInt(t, racer, `SELECT pg_backend_pid()`)
	done := make(chan error, 1)
	go func() {
		_, err := racer.Exec(ctx, `UPDATE likes SET n = -1 WHERE id = 1900`)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pgInt(t, admin, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'`, racerPID) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the racing UPDATE committed without waiting for the standby (err %v): the race cannot be staged", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the racing UPDATE is not waiting for the standby after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The stream delivers the invisible commit; the chunk holding row 1900
	// is read without it, and must be read again.
	// (Or, were the chunk trusted, until the copy ends.)
	waitFor(t, 60*time.Second, "sluice to read the raced chunk again (SLUICE-SYNC-REREAD) or to finish the copy", func() bool {
		st, err := s.status()
		return strings.Contains(proc.Output(), "SLUICE-SYNC-REREAD") || (err == nil && st.Phase == "streaming")
	})
	// Let the transaction become visible: cancelling the wait leaves it
	// committed.
	pgExec(t, admin, `SELECT pg_cancel_backend($1)`, racerPID)
	if err := <-done; err != nil {
		t.Fatalf("the racing UPDATE, its standby wait cancelled: %v", err)
	}
	release()

	s.waitCaughtUp(90 * time.Second)
	var n int
	if err := p.Target.QueryRow(`SELECT n FROM likes WHERE id = 1900`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != -1 {
		t.Errorf("target row 1900: n = %d, want -1 (the racing update was overwritten by the chunk's older copy)", n)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "likes")
	if !strings.Contains(proc.Output(), "SLUICE-SYNC-REREAD") {
		t.Error("sluice did not log SLUICE-SYNC-REREAD for the chunk whose read missed the racing commit")
	}
	if st, err := s.status(); err != nil || st.ChunksReread < 1 {
		t.Errorf("status: chunks_reread %d (err %v), want at least 1", st.ChunksReread, err)
	}
}

func showSetting(t *testing.T, c *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("PostgreSQL: setting %s: %v", name, err)
	}
	return v
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
