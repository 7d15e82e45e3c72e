package synctest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/testenv"
)

// TestAbortNeedsTheRightSlot: a sync runs on its own --slot; sluice abort
// without --slot (so on the default slot, which nothing knows) must refuse,
// naming the recorded slot and the flag, and touch nothing: the running
// sync keeps its slot, publication and state. Aborting the right slot while
// the target records another sync removes only this sync's rows: the
// other's state and the shared bookkeeping tables stay.
func TestAbortNeedsTheRightSlot(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)

	r := testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", p.TargetURL, "--api", "http://127.0.0.1:1")
	if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SLOT-UNKNOWN") || !strings.Contains(out, s.slot) || !strings.Contains(out, "--slot") {
		t.Fatalf("sluice abort without --slot while the sync on %s runs: exit %d; want 2 with SLUICE-SLOT-UNKNOWN naming %s and --slot\n%s", s.slot, r.Exit, s.slot, out)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Errorf("after the refused abort the source has slot %v, publication %v; want both kept", slot, pub)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = ?`, s.slot); n != 1 {
		t.Errorf("after the refused abort the sync's state rows: %d; want 1", n)
	}
	if err := s.alive(); err != nil {
		t.Fatalf("the sync died after the refused abort: %v", err)
	}

	// A second sync recorded on the same target (other tables).
	p.My(t, `INSERT INTO _sluice_sync_state (slot, publication, phase) VALUES ('other_mig', 'other_mig', 'streaming')`)
	p.My(t, `INSERT INTO _sluice_tables (table_name, source_table, phase) VALUES ('invoices', 'invoices', 'done')`)
	s.abort()
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = 'other_mig'`); n != 1 {
		t.Errorf("aborting %s removed the other sync's state", s.slot)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = ?`, s.slot); n != 0 {
		t.Errorf("the aborted sync's state is left: %d rows", n)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_tables WHERE table_name = 'invoices'`); n != 1 {
		t.Errorf("aborting %s removed the other sync's copy progress", s.slot)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_tables WHERE table_name = 'orders'`) + myInt(t, p, `SELECT COUNT(*) FROM _sluice_copy_chunks WHERE table_name = 'orders'`); n != 0 {
		t.Errorf("the aborted sync's copy progress is left: %d rows", n)
	}
	p.My(t, `DELETE FROM _sluice_sync_state WHERE slot = 'other_mig'`) // so the test's own cleanup abort finds nothing else
}

// TestAbortWithTargetUnreachable: the target is down, but the slot retains
// WAL on the source: abort must drop slot and publication anyway, then say
// (exit 3, SLUICE-ABORT-TARGET) that the target's metadata is left, and a
// later abort once the target is back removes this sync's part of it.
func TestAbortWithTargetUnreachable(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

	down := "mysql://root@127.0.0.1:1/" + p.Name
	r := testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", down, "--slot", s.slot, "--api", s.api, "--api-token", s.token)
	out := r.Stdout + r.Stderr
	if r.Exit != 3 || !strings.Contains(out, "SLUICE-ABORT-TARGET") || !strings.Contains(out, "pg_drop_replication_slot") || !strings.Contains(r.Stdout, "NOT removed") {
		t.Errorf("sluice abort with the target down: exit %d; want 3, SLUICE-ABORT-TARGET, a hint naming pg_drop_replication_slot, and stdout saying the target's metadata is NOT removed\n%s", r.Exit, out)
	}
	s.assertNoSlot()
	if _, ok := proc.Wait(20 * time.Second); !ok {
		t.Errorf("the sync still runs after abort asked it to stop")
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = ?`, s.slot); n != 1 {
		t.Errorf("the target's state rows: %d; want 1 (not reachable, so not removed)", n)
	}
	// Another sync recorded meanwhile keeps the bookkeeping tables: the
	// second abort must still find this sync's tables, though the first
	// dropped the publication they were read from before.
	p.My(t, `INSERT INTO _sluice_sync_state (slot, publication, phase) VALUES ('other_mig', 'other_mig', 'streaming')`)
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_tables WHERE table_name = 'orders'`); n != 1 {
		t.Fatalf("before the second abort the sync's copy progress of orders has %d rows; want 1", n)
	}
	testenv.MustRun(t, 0, s.args("abort", "--slot", s.slot, "--api", "http://127.0.0.1:1")...)
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = ?`, s.slot); n != 0 {
		t.Errorf("the second abort left the sync's state: %d rows", n)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_tables WHERE table_name = 'orders'`) + myInt(t, p, `SELECT COUNT(*) FROM _sluice_copy_chunks WHERE table_name = 'orders'`); n != 0 {
		t.Errorf("the second abort left the sync's copy progress: %d rows", n)
	}
	if n := myInt(t, p, `SELECT COUNT(*) FROM _sluice_sync_state WHERE slot = 'other_mig'`); n != 1 {
		t.Errorf("the second abort removed the other sync's state")
	}
	p.My(t, `DELETE FROM _sluice_sync_state WHERE slot = 'other_mig'`) // so the test's own cleanup abort finds nothing else
}

// TestPanicIsAnInternalError: a bug that panics in a goroutine of the sync
// (here the heartbeat, through a test hook) ends sluice like any internal
// failure: exit 10, so systemd starts it again (2, Go's status for a panic,
// is a usage error it must not restart after), with a "sluice failed" line
// carrying the code and the stack.
func TestPanicIsAnInternalError(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 100)
	s := newSync(t, p.SourceURL, p.TargetURL)
	r := testenv.Run(t, []string{"SLUICE_TEST_PANIC=heartbeat"},
		s.args("sync", "--listen", s.listen, "--slot", s.slot, "--api-token", s.token, "--log-format", "json")...)
	if r.Exit != 10 || !strings.Contains(r.Stderr, `"msg":"sluice failed"`) || !strings.Contains(r.Stderr, "SLUICE-PANIC") ||
		!strings.Contains(r.Stderr, `"stack":`) || !strings.Contains(r.Stderr, "heartbeat") {
		t.Errorf("sync that panics: exit %d; want 10 and a sluice failed line with SLUICE-PANIC and the stack\n%s", r.Exit, testenv.Tail(r.Stderr, 30))
	}
}

// anotherTarget is the URL of another target database on p's server, named
// p's with suffix, dropped when the test ends.
func anotherTarget(t *testing.T, p *testenv.Pair, suffix string) string {
	t.Helper()
	other := p.Name + suffix
	t.Cleanup(func() { p.My(t, "DROP DATABASE IF EXISTS `"+other+"`") })
	return strings.TrimSuffix(p.TargetURL, p.Name) + other
}

// recordRun records on target a sync on slot in phase, of a run whose id no
// publication carries: one that failed while preparing (before it made its
// slot), or one whose slot was dropped since.
func recordRun(t *testing.T, target, slot, phase string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.ParseTarget("--target", target)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := mysql.Connect(ctx, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if err := tgt.EnsureSyncTable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tgt.CreateSyncState(ctx, mysql.SyncState{Slot: slot, Publication: slot, Phase: phase,
		Tables: []string{"public.orders"}, RunID: "a-run-of-another-migration"}); err != nil {
		t.Fatal(err)
	}
}

// myInt runs a query returning one integer on the target.
func myInt(t *testing.T, p *testenv.Pair, q string, args ...any) int {
	t.Helper()
	var n int
	if err := p.Target.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("MariaDB: %s: %v", q, err)
	}
	return n
}

// TestSlotOfAnotherDatabase: replication slots belong to the server, not a
// database, and two migrations from one server may be given one slot name
// (the default comes from the target database's name). A sync from the
// other database is refused, naming the slot and --slot; an abort there
// cleans up that database only: the running migration keeps its slot
// (PostgreSQL would drop another database's slot when asked).
func TestSlotOfAnotherDatabase(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 500)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)

	t.Run("from another database", func(t *testing.T) { // a database of its own name
		other := newPair(t)
		createOrders(t, other, 10)
		r := testenv.Run(t, nil, "sync", "--source", other.SourceURL, "--target", other.TargetURL, "--slot", s.slot, "--listen", testenv.FreeAddr(t))
		if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SYNC-SLOTTAKEN") || !strings.Contains(out, s.slot) || !strings.Contains(out, "--slot") {
			t.Fatalf("a sync from another database on slot %s: exit %d; want 2 with SLUICE-SYNC-SLOTTAKEN naming the slot and --slot\n%s", s.slot, r.Exit, out)
		}
		r = testenv.Run(t, nil, "abort", "--source", other.SourceURL, "--target", other.TargetURL, "--slot", s.slot, "--api", "http://127.0.0.1:1")
		if r.Exit != 0 {
			t.Errorf("sluice abort in the other database: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
	})
	t.Run("from this database into another target", func(t *testing.T) {
		// as two target servers whose databases share a name would derive it
		target := anotherTarget(t, p, "_other")
		r := testenv.Run(t, nil, "sync", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--tables", "orders", "--listen", testenv.FreeAddr(t))
		if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SYNC-SLOTTAKEN") || !strings.Contains(out, "--slot") {
			t.Fatalf("a sync into another target on the running migration's slot %s: exit %d; want 2 with SLUICE-SYNC-SLOTTAKEN naming --slot\n%s", s.slot, r.Exit, out)
		}
		// and an abort there leaves the running migration's slot alone
		r = testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--api", "http://127.0.0.1:1")
		if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SLOT-INUSE") {
			t.Errorf("an abort from the other target of the running migration's slot: exit %d; want 2 with SLUICE-SLOT-INUSE\n%s", r.Exit, out)
		}
	})
	t.Run("a run on another target that failed while preparing", func(t *testing.T) {
		// Its first run recorded "preparing" on its target and failed before
		// making a slot; the running migration has made one of the same
		// name since. The slot is not this run's to resume, nor to drop.
		target := anotherTarget(t, p, "_failed")
		recordRun(t, target, s.slot, mysql.PhasePreparing)
		r := testenv.Run(t, nil, "sync", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--tables", "orders", "--listen", testenv.FreeAddr(t))
		if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SYNC-SLOTTAKEN") || !strings.Contains(out, "did not make it") {
			t.Fatalf("the resumed run on the running migration's slot %s: exit %d; want 2 with SLUICE-SYNC-SLOTTAKEN saying this run did not make it\n%s", s.slot, r.Exit, out)
		}
		r = testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--api", "http://127.0.0.1:1")
		if out := r.Stdout + r.Stderr; r.Exit != 0 || !strings.Contains(out, "SLUICE-SLOT-OTHERS") || !strings.Contains(out, "left replication slot") {
			t.Errorf("an abort of the failed run: exit %d; want 0, leaving the slot with SLUICE-SLOT-OTHERS\n%s", r.Exit, out)
		}
	})
	t.Run("a run on another target whose slot was dropped", func(t *testing.T) {
		// It streamed once; its slot is gone and the running migration made
		// one of the same name. Resuming on it would skip what the lost slot
		// held and read the other migration's stream.
		target := anotherTarget(t, p, "_lost")
		recordRun(t, target, s.slot, "streaming")
		r := testenv.Run(t, nil, "sync", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--tables", "orders", "--listen", testenv.FreeAddr(t))
		if out := r.Stdout + r.Stderr; r.Exit != 4 || !strings.Contains(out, "SLUICE-SYNC-SLOTLOST") || !strings.Contains(out, "another run's") {
			t.Fatalf("a run whose slot was dropped, on the running migration's slot %s: exit %d; want 4 with SLUICE-SYNC-SLOTLOST saying the slot is another run's\n%s", s.slot, r.Exit, out)
		}
		r = testenv.Run(t, nil, "abort", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--api", "http://127.0.0.1:1")
		if out := r.Stdout + r.Stderr; r.Exit != 0 || !strings.Contains(out, "SLUICE-SLOT-OTHERS") {
			t.Errorf("an abort of the run whose slot was dropped: exit %d; want 0, leaving the slot with SLUICE-SLOT-OTHERS\n%s", r.Exit, out)
		}
	})
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Fatalf("after an abort in another database the running migration has slot %v, publication %v; want both kept", slot, pub)
	}
	p.PG(t, `INSERT INTO orders (id, customer, amount) VALUES (100001, 7, 1)`)
	waitFor(t, 30*time.Second, "the row written after the other database's abort on the target", func() bool {
		return myInt(t, p, `SELECT COUNT(*) FROM orders WHERE id = 100001`) == 1
	})
	if err := s.alive(); err != nil {
		t.Fatalf("the running sync died after an abort in another database: %v", err)
	}
}

// TestAbortOfAnUnrecordedSlot: a migration's sync is stopped, so its slot
// is idle. An abort from a target that records no run on that slot (a
// second migration whose target database has the same name, or this one's
// after its target state was removed) cannot tell the two apart: it names
// the run that made the slot and leaves it, and drops it only when the
// person confirms that run with --run.
func TestAbortOfAnUnrecordedSlot(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 50)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	var run string
	if err := p.Target.QueryRow(`SELECT run_id FROM _sluice_sync_state WHERE slot = ?`, s.slot).Scan(&run); err != nil || run == "" {
		t.Fatalf("the run id the target records for slot %s: %q, %v", s.slot, run, err)
	}
	s.current().Kill()
	waitFor(t, 30*time.Second, "the killed sync's slot to be idle", func() bool {
		var active bool
		return p.Source.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&active) == nil && !active
	})

	target := anotherTarget(t, p, "_unrecorded")
	abort := func(extra ...string) testenv.Result {
		return testenv.Run(t, nil, append([]string{"abort", "--source", p.SourceURL, "--target", target, "--slot", s.slot, "--api", "http://127.0.0.1:1"}, extra...)...)
	}
	r := abort()
	if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SLOT-UNRECORDED") || !strings.Contains(out, "--run "+run) {
		t.Fatalf("an abort from a target that records no run on the idle slot %s: exit %d; want 2 with SLUICE-SLOT-UNRECORDED and a hint naming --run %s\n%s", s.slot, r.Exit, run, out)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, s.slot); !slot || !pub {
		t.Fatalf("after the refused abort the stopped migration has slot %v, publication %v; want both kept", slot, pub)
	}
	if r := abort("--run", "not-"+run); r.Exit != 2 || !strings.Contains(r.Stdout+r.Stderr, "SLUICE-SLOT-UNRECORDED") {
		t.Fatalf("an abort naming another run: exit %d; want 2 with SLUICE-SLOT-UNRECORDED\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	r = abort("--run", run)
	if out := r.Stdout + r.Stderr; r.Exit != 0 || !strings.Contains(out, "dropped replication slot and publication "+s.slot) {
		t.Fatalf("an abort confirming run %s: exit %d; want 0, dropping the slot\n%s", run, r.Exit, out)
	}
	s.assertNoSlot()
}

// TestSyncOnAnotherSlotNamesTheRecordedOne: a sync is started again with
// a --slot other than its first run's (or none, where the first had one).
// Its tables belong to the sync recorded on the first slot: the refusal
// must name that slot and what to do, not say the tables were filled
// "without this change stream" (they may even be empty).
func TestSyncOnAnotherSlotNamesTheRecordedOne(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 50)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	proc.Kill()
	<-proc.Done()
	other := s.slot + "_b"
	dropSlots(t, adminURL(p.SourceURL), `slot_name = $1`, other)
	r := testenv.Run(t, nil, "sync", "--source", p.SourceURL, "--target", p.TargetURL, "--slot", other, "--listen", testenv.FreeAddr(t))
	if out := r.Stdout + r.Stderr; r.Exit != 2 || !strings.Contains(out, "SLUICE-SYNC-OTHERSLOT") || !strings.Contains(out, "--slot "+s.slot) {
		t.Fatalf("a sync on slot %s of tables the sync on %s holds: exit %d; want 2 with SLUICE-SYNC-OTHERSLOT naming --slot %s\n%s", other, s.slot, r.Exit, s.slot, out)
	}
	if slot, pub := testenv.SlotAndPublication(t, p.SourceURL, other); slot || pub {
		t.Errorf("the refused sync left slot %v, publication %v named %s", slot, pub, other)
	}
}
