package synctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestAbortMidCopy: sluice abort while the copy runs stops the sync and
// leaves no slot, no publication and no sluice metadata.
func TestAbortMidCopy(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 40000)
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "1000", "--max-rows-per-sec", "4000")
	s.start()
	s.waitCopying(60*time.Second, "orders", 1000)
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Fatalf("while syncing: slot %v, publication %v; want both (else the check after abort proves nothing)", slot, pub)
	}
	s.abort() // waits for the sync to exit, checks slot and publication are gone
	st, err := s.status()
	if err == nil {
		t.Errorf("the sync's API still answers after abort: phase %s", st.Phase)
	}
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE '\_sluice\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d sluice metadata tables left on the target after abort", n)
	}
}

// TestAbortFromElsewhere: sluice abort that cannot reach the running sync
// (another host, no API token) still removes the slot and the metadata; the
// sync, its stream cut, must then stop for good (exit 4, SLUICE-SYNC-NOSTATE)
// rather than retry forever, and leave no slot behind.
func TestAbortFromElsewhere(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	r := testenv.MustRun(t, 0, s.args("abort", "--slot", s.slot, "--api", "http://127.0.0.1:1")...)
	if !strings.Contains(r.Stdout, "dropped replication slot and publication "+s.slot) {
		t.Errorf("sluice abort output does not say it dropped %s:\n%s%s", s.slot, r.Stdout, r.Stderr)
	}
	code, ok := proc.Wait(90 * time.Second)
	if !ok {
		proc.Kill()
		t.Fatalf("the sync still runs 90 s after its state was removed:\n%s", testenv.Tail(proc.Output(), 20))
	}
	if out := proc.Output(); code != 4 || !strings.Contains(out, "SLUICE-SYNC-NOSTATE") {
		t.Errorf("the sync exited %d; want 4 with SLUICE-SYNC-NOSTATE\n%s", code, testenv.Tail(out, 20))
	}
	s.assertNoSlot()
}

// TestFinishAfterCutover: finish refuses to run before a cutover; after
// one it stops the running sync (exit 0) and leaves no slot or publication.
func TestFinishAfterCutover(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 3000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)

	r := testenv.Run(t, nil, s.args("finish", "--slot", s.slot, "--api", s.api, "--api-token", s.token)...)
	if r.Exit == 0 {
		t.Fatalf("sluice finish before any cutover exited 0:\n%s", r.Stdout)
	}
	if err := s.alive(); err != nil {
		t.Fatalf("a refused finish stopped the sync: %v", err)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Fatalf("a refused finish removed the slot (%v) or publication (%v)", !slot, !pub)
	}

	p.PG(t, `INSERT INTO orders (customer, amount) VALUES (1, 2)`)
	if r := s.cutover(); r.Exit != 0 {
		t.Fatalf("sluice cutover: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	s.finish() // the sync exits 0, slot and publication are gone
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
	// run again (a script retried it): nothing left to do, and it says so
	again := testenv.MustRun(t, 0, s.args("finish", "--slot", s.slot)...)
	if !strings.Contains(again.Stdout, "nothing to finish") {
		t.Errorf("a second sluice finish:\n%s", again.Stdout)
	}
}

// caughtUpOrders starts a sync of a table of rows orders and waits until
// it has caught up.
func caughtUpOrders(t *testing.T, rows int) (*testenv.Pair, *syncRun, *testenv.Proc) {
	t.Helper()
	p := newPair(t)
	createOrders(t, p, rows)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	return p, s, proc
}

// cutOverAndStopped syncs a table of rows orders, cuts over and stops the
// sync with SIGTERM, as an operator might before finishing or restarting.
func cutOverAndStopped(t *testing.T, rows int) (*testenv.Pair, *syncRun) {
	t.Helper()
	p, s, proc := caughtUpOrders(t, rows)
	if r := s.cutover(); r.Exit != 0 {
		t.Fatalf("sluice cutover: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	proc.Cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := proc.Wait(30 * time.Second); !ok {
		t.Fatal("sluice sync still runs 30 s after SIGTERM")
	}
	return p, s
}

// TestFinishLosesNoChange: finish drops the slot, and with it every change
// the sync has not applied. So it waits for a running sync to apply what
// the source committed before finish began (20,000 updated rows, then
// finish at once), and refuses while a stopped sync left a change behind
// (the slot stays, exit 2); a sync started again then applies it.
func TestFinishLosesNoChange(t *testing.T) {
	t.Parallel()
	p, s := cutOverAndStopped(t, 20000)
	// a write the stopped sync never saw
	p.PG(t, `UPDATE orders SET status = 'late' WHERE id = 7`)
	r := testenv.Run(t, nil, s.args("finish", "--slot", s.slot, "--api", s.api, "--api-token", s.token)...)
	if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-FINISH-BEHIND") || !strings.Contains(out, "holds 1 row changes") {
		t.Fatalf("sluice finish with a change not applied: exit %d, want 2 with SLUICE-FINISH-BEHIND naming 1 change:\n%s", r.Exit, out)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Fatalf("the refused finish dropped the slot (%v) or publication (%v)", !slot, !pub)
	}

	// running again: a burst of writes, and finish at once
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `UPDATE orders SET amount = amount + 1`)
	s.finish()
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
}

// TestFinishAfterAKillBeforeTheSlotConfirm: a sync killed after its
// target commit and before it confirmed the slot leaves changes in the
// slot that the target holds. finish counts only the transactions the
// target has not applied (as a resumed sync skips them), so it goes
// through instead of refusing (the hook keeps the slot unconfirmed), also
// when those changes are more than it peeks at: it first moves the slot to
// where the target stands, as the sync would have.
func TestFinishAfterAKillBeforeTheSlotConfirm(t *testing.T) {
	t.Parallel()
	p, s := cutOverAndStopped(t, 500)
	s.env = []string{"SLUICE_TEST_HOLD_SLOT=1"}
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `UPDATE orders SET amount = amount + 1 WHERE id <= 300`)
	// more messages than finish peeks at (10,000): applied, yet in the slot
	p.PG(t, `INSERT INTO orders (customer, amount) SELECT g % 500, 1 FROM generate_series(1, 12000) g`)
	s.waitCaughtUp(60 * time.Second)
	proc.Kill()
	<-proc.Done()
	r := testenv.Run(t, nil, s.args("finish", "--slot", s.slot, "--wait", "10s")...)
	if r.Exit != 0 {
		t.Fatalf("sluice finish after a kill that left applied changes unconfirmed in the slot: exit %d, want 0\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); slot || pub {
		t.Errorf("finish went through but left the slot (%v) or the publication (%v)", slot, pub)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
}

// TestRestartAfterCutover: a sync restarted after its cutover knows it
// from the target: status says cut over, --cutover=auto does not fence the
// source again, and sluice cutover says it was done and fences nothing.
func TestRestartAfterCutover(t *testing.T) {
	t.Parallel()
	_, s := cutOverAndStopped(t, 500)
	s.flags = append(s.flags, "--cutover", "auto")
	proc := s.start()
	s.wait(60*time.Second, "the restarted sync to say it is cut over", func(st testenv.SyncStatus) bool { return st.Phase == "cut over" })
	time.Sleep(2 * time.Second) // an automatic cutover would start at once
	if strings.Contains(proc.Output(), "fenced") || strings.Contains(proc.Output(), "cutting over") {
		t.Errorf("the restarted sync cut over again:\n%s", testenv.Tail(proc.Output(), 20))
	}
	r := s.cutover()
	if r.Exit != 0 || !strings.Contains(r.Stdout, "earlier run") {
		t.Errorf("sluice cutover after a restart: exit %d, want 0 saying an earlier run did it:\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	s.finish()
}

// TestAbortOfAnotherMigrationLeavesThisSync: abort asks the sync answering
// at --api to stop only when it is the sync of the slot being dropped: an
// abort of another migration (its own slot and target) stopped this one.
func TestAbortOfAnotherMigrationLeavesThisSync(t *testing.T) {
	t.Parallel()
	_, s, _ := caughtUpOrders(t, 500)
	t.Run("other", func(t *testing.T) {
		other := newPair(t)
		testenv.MustRun(t, 0, "abort", "--source", other.SourceURL, "--target", other.TargetURL,
			"--slot", "sluice_other_migration", "--api", s.api, "--api-token", s.token)
	})
	time.Sleep(2 * time.Second) // a stop takes effect at once; give it time to show
	if err := s.alive(); err != nil {
		t.Fatalf("an abort of another migration stopped this sync: %v", err)
	}
}

// TestSyncRefusesFilledTarget: a target table holding rows sluice did not
// copy is refused (exit 4, the table named) before a replication slot exists,
// so the bad start leaves nothing on the source to retain WAL; once the
// table is dropped, the same command syncs.
func TestSyncRefusesFilledTarget(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 500)
	p.My(t, `CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL)`)
	p.My(t, `INSERT INTO orders VALUES (1, 1)`)
	s := newSync(t, p.SourceURL, p.TargetURL)
	exit, ok := s.start().Wait(60 * time.Second)
	if !ok {
		t.Fatal("sluice sync kept running against a target table that holds rows")
	}
	if out := s.current().Output(); exit != 4 || !strings.Contains(out, "SLUICE-TARGET-NOTEMPTY") || !strings.Contains(out, "orders") {
		t.Fatalf("sync against a filled target: exit %d (want 4, the table named):\n%s", exit, out)
	}
	s.assertNoSlot()

	p.My(t, `DROP TABLE orders`)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	if r := s.cutover(); r.Exit != 0 {
		t.Fatalf("sluice cutover: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	s.finish()
}

// TestSyncStopsWhenSlotIsLost: a slot dropped under a running sync (an
// operator, or max_slot_wal_keep_size invalidating it) has taken changes
// with it. Retrying cannot bring them back, so the sync stops with exit 4
// and SLUICE-SYNC-SLOTLOST instead of retrying forever.
func TestSyncStopsWhenSlotIsLost(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 500)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

	admin := connect(t, adminURL(p.SourceURL))
	deadline := time.Now().Add(20 * time.Second)
	for {
		pgExec(t, admin, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, s.slot)
		if _, err := admin.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, s.slot); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("could not drop the sync's slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.PG(t, `INSERT INTO orders (customer, amount) VALUES (7, 7)`) // a change only the lost slot could have carried

	exit, ok := proc.Wait(90 * time.Second)
	if !ok {
		t.Fatalf("sluice sync kept running (retrying) after its slot was dropped:\n%s", testenv.Tail(proc.Output(), 20))
	}
	if exit != 4 || !strings.Contains(proc.Output(), "SLUICE-SYNC-SLOTLOST") {
		t.Fatalf("exit %d after the slot was dropped; want 4 with SLUICE-SYNC-SLOTLOST:\n%s", exit, testenv.Tail(proc.Output(), 20))
	}
}

// TestSyncRefusesTableTheTargetCannotCreate: 40 CHAR(60) columns keep
// 9,600 bytes of utf8mb4 in the row, over InnoDB's 8,126 in a page, a
// limit only the server's own rules tell exactly. The plan tries each new
// table on the target as a temporary table: sluice plan lists the table
// with the server's reason (exit 4), and sync refuses to start (exit 4,
// SLUICE-TARGET-DDL, naming the table) with nothing created: no target
// table, no slot. (A start that fails later, in a table's setup, is
// TestSyncRefusesTargetTableOfAnotherShape.)
func TestSyncRefusesTableTheTargetCannotCreate(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	cols := make([]string, 40)
	for i := range cols {
		cols[i] = fmt.Sprintf("c%d char(60)", i)
	}
	p.PG(t, `CREATE TABLE wide (id bigint PRIMARY KEY, `+strings.Join(cols, ", ")+`)`)
	p.PG(t, `INSERT INTO wide (id, c0) VALUES (1, 'x')`)
	r := testenv.Run(t, nil, "plan", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "wide")
	if out := r.Stdout + r.Stderr; r.Exit != 4 || !strings.Contains(r.Stdout, "-- ERROR") || !strings.Contains(out, "wide") || !strings.Contains(out, "8126") {
		t.Errorf("sluice plan of a table over InnoDB's row size: exit %d; want 4 and an ERROR line naming wide and the 8126-byte limit\n%s", r.Exit, testenv.Tail(out, 20))
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "wide")
	s.refusedAtStart("SLUICE-TARGET-DDL", "wide", "8126")
	if n := myInt(t, p, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'wide'`); n != 0 {
		t.Errorf("the refused sync created the target table wide")
	}
}

// TestSyncStopsWhenTargetRefusesRows: a target table that cannot hold the
// source's rows (here someone added a unique index on the target) makes the
// sync stop with exit 5 and SLUICE-SYNC-REFUSED, with nothing of the refused
// batch applied, instead of retrying forever. Once the target is fixed the
// same command resumes and ends equal.
func TestSyncStopsWhenTargetRefusesRows(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 100) // customers 1..99 and 0, once each
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	p.My(t, `CREATE UNIQUE INDEX one_order_per_customer ON orders (customer)`)

	p.PG(t, `INSERT INTO orders (customer, amount) VALUES (1000, 1)`)      // fine on its own
	p.PG(t, `INSERT INTO orders (customer, amount) VALUES (7, 2), (8, 3)`) // customers that have an order already
	exit, ok := proc.Wait(60 * time.Second)
	if !ok {
		t.Fatalf("sluice sync kept running (retrying) although the target refuses the rows:\n%s", testenv.Tail(proc.Output(), 20))
	}
	if exit != 5 || !strings.Contains(proc.Output(), "SLUICE-SYNC-REFUSED") || !strings.Contains(proc.Output(), "a unique index of the target holds a value") {
		t.Fatalf("exit %d; want 5 with SLUICE-SYNC-REFUSED saying a unique index refused the row:\n%s", exit, testenv.Tail(proc.Output(), 20))
	}
	var kept int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM orders WHERE id IN (7, 8) AND amount < 1`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if kept != 2 {
		t.Errorf("the target's orders 7 and 8 were overwritten by the refused rows (%d of 2 kept)", kept)
	}
	var refused int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM orders WHERE customer IN (7, 8) AND amount > 1`).Scan(&refused); err != nil {
		t.Fatal(err)
	}
	if refused != 0 {
		t.Errorf("%d rows of the refused transaction reached the target", refused)
	}

	p.My(t, `DROP INDEX one_order_per_customer ON orders`)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "orders")
}

// TestSyncStopsWhenUniqueIndexAddedDuringCopy: a unique index the source
// does not enforce, added on the target while chunks are being copied, stops
// the sync (exit 4, SLUICE-TARGET-UNIQUE) at the next chunk instead of
// letting the chunk's bulk load (REPLACE) delete the rows the index matches.
// Dropping the index lets the run resume and finish equal.
func TestSyncStopsWhenUniqueIndexAddedDuringCopy(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	// code is not unique: the last chunk's rows share the codes of the first
	// chunk's, which the source allows
	p.PG(t, `CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL)`)
	p.PG(t, `INSERT INTO items SELECT g, 'c' || CASE WHEN g > 19000 THEN g - 19000 ELSE g END FROM generate_series(1, 20000) g`)
	p.PG(t, `ANALYZE items`)
	// chunks of 2000 rows go in bulk (REPLACE); throttled so the index comes mid-copy
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "2000", "--max-rows-per-sec", "4000")
	proc := s.start()
	s.waitCopying(60*time.Second, "items", 2000)
	p.My(t, `CREATE UNIQUE INDEX one_per_code ON items (code)`) // the rows copied so far have distinct codes
	waitStopped(t, proc, 4, "SLUICE-TARGET-UNIQUE", "one_per_code")
	// Resumed without the index, the run ends equal: no chunk deleted rows of another.
	p.My(t, `DROP INDEX one_per_code ON items`)
	s.start()
	s.waitCaughtUp(120 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "items")
}

// TestDeferrableKey: a DEFERRABLE primary key lets one statement shift
// every key by one, handing each value to a row before another gives it up;
// applied key by key that would delete rows. Without REPLICA IDENTITY FULL
// the sync refuses such a table at start (exit 4, SLUICE-SYNC-DEFERRABLE,
// naming it and the fix) with no slot. With it, each transaction is replayed
// whole: shifts in both directions, a swap and a freed key reused, while
// copying and while streaming, end equal; the swap trades unique values
// between two rows, which no order of single-row writes can do on MariaDB.
func TestDeferrableKey(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE queue (id int PRIMARY KEY DEFERRABLE, item varchar(40) NOT NULL UNIQUE)`)
	p.PG(t, `INSERT INTO queue SELECT g, 'item ' || g FROM generate_series(1, 20000) g`)
	p.PG(t, `UPDATE queue SET id = id + 1`) // what the constraint allows
	s := newSync(t, p.SourceURL, p.TargetURL, "--chunk-rows", "1000", "--max-rows-per-sec", "20000")
	s.refusedAtStart("SLUICE-SYNC-DEFERRABLE", "queue", "REPLICA IDENTITY FULL")

	p.PG(t, `ALTER TABLE queue REPLICA IDENTITY FULL`)
	s.start()
	s.waitCopying(60*time.Second, "queue", 1000)
	p.PG(t, `UPDATE queue SET id = id + 1`) // while copying
	s.waitCaughtUp(120 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "queue")
	p.PG(t, `UPDATE queue SET id = id + 1`) // while streaming
	s.waitCaughtUp(60 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "queue") // (a later shift down would rewrite every row)
	p.PG(t, `UPDATE queue SET id = id - 1`)
	p.PG(t, `BEGIN; SET CONSTRAINTS ALL DEFERRED;
		UPDATE queue SET id = 0 WHERE id = 10; UPDATE queue SET id = 10 WHERE id = 11; UPDATE queue SET id = 11 WHERE id = 0;
		DELETE FROM queue WHERE id = 20; INSERT INTO queue VALUES (20, 'reused');
		UPDATE queue SET item = item || ' (edited)' WHERE id BETWEEN 100 AND 105; COMMIT`)
	s.waitCaughtUp(60 * time.Second)
	if err := s.alive(); err != nil {
		t.Fatal(err)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "queue")
}

// TestSyncRefusesTargetUniqueIndexSourceLacks: an empty target table made
// by hand with a unique index the source does not enforce is refused (exit
// 4, SLUICE-TARGET-UNIQUE, naming table and index) before a slot exists:
// the copy's bulk loads would otherwise delete the rows it matches.
func TestSyncRefusesTargetUniqueIndexSourceLacks(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 300)
	p.My(t, `CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount decimal(12,2) NOT NULL,
		status longtext NOT NULL, placed datetime(6) NOT NULL, UNIQUE KEY one_per_customer (customer))`)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.refusedAtStart("SLUICE-TARGET-UNIQUE", "one_per_customer")
}

// TestSyncRefusesRowFilter: the stream carries every row's changes, and an
// update can move a row into or out of a where: filter, so a filtered table
// is refused at start (exit 4, SLUICE-SYNC-FILTER, naming it) with no slot,
// rather than copied filtered and then filled with the rows left behind.
func TestSyncRefusesRowFilter(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 300)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  orders:\n    where: \"status <> 'cancelled'\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--config", cfg)
	s.refusedAtStart("SLUICE-SYNC-FILTER", "orders")
}

// TestAbortTakesLeftSchema: a cleanup cut off after it dropped sluice's
// functions, before the _sluice schema, leaves the schema empty; the next
// abort takes it.
func TestAbortTakesLeftSchema(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 10)
	p.PG(t, `CREATE SCHEMA _sluice`)
	slot := slotName(t)
	r := testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", p.TargetURL, "--slot", slot, "--api", "http://127.0.0.1:1")
	if r.Exit != 0 {
		t.Fatalf("sluice abort: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	var left bool
	if err := p.Source.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '_sluice')`).Scan(&left); err != nil || left {
		t.Errorf("after sluice abort the source still has the _sluice schema (%v)", err)
	}
}
