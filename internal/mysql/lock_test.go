package mysql_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/testenv"
)

// A run's named lock is what keeps a second run from writing beside it. It
// must hold while the run sits idle for longer than the server's
// wait_timeout, refuse a second taker with the claim's own error, and, when
// it is lost anyway (its session killed, the target restarted), end the
// run's context with an error that names the lock.
func TestHeldLocks(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	tgt := connectTarget(t, p)
	name := "sluice_test_lock:" + p.Name
	busy := errors.New("another run holds it")
	claims := []mysql.Claim{{Name: name, Busy: busy}}

	locks, err := mysql.TakeLocks(ctx, tgt.DB, claims)
	if err != nil {
		t.Fatal(err)
	}
	defer locks.Close()
	var timeout, id int64
	if err := locks.Conn().QueryRowContext(ctx, "SELECT @@session.wait_timeout, CONNECTION_ID()").Scan(&timeout, &id); err != nil {
		t.Fatal(err)
	}
	if timeout < 365*24*3600 {
		t.Errorf("the lock's session has wait_timeout %d s: an idle run would lose its lock after that", timeout)
	}
	if _, err := mysql.TakeLocks(ctx, tgt.DB, claims); !errors.Is(err, busy) {
		t.Fatalf("a second TakeLocks of a held lock: %v, want the claim's busy error", err)
	}

	guarded, lost := locks.Guard(ctx)
	time.Sleep(3 * time.Second) // a check or more while held
	if err := lost(); err != nil || guarded.Err() != nil {
		t.Fatalf("with the lock held: lost() = %v, context %v", err, guarded.Err())
	}
	if _, err := tgt.DB.ExecContext(ctx, "KILL ?", id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-guarded.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the guarded context did not end within 10 s of the lock's session being killed")
	}
	err = lost()
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != "SLUICE-TARGET-LOCK-LOST" || !strings.Contains(err.Error(), name) {
		t.Fatalf("lost() = %v; want SLUICE-TARGET-LOCK-LOST naming %s", err, name)
	}
	if failure.ExitCode(err) != failure.ExitConnection {
		t.Errorf("exit code %d, want %d (connection)", failure.ExitCode(err), failure.ExitConnection)
	}
	// Released with the session: the next run takes it.
	again, err := mysql.TakeLocks(ctx, tgt.DB, claims)
	if err != nil {
		t.Fatalf("taking the lock after it was lost: %v", err)
	}
	if err := again.Conn().QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	// A second claim that is busy: the first, taken already, is not kept.
	other := mysql.Claim{Name: "sluice_test_lock2:" + p.Name, Busy: errors.New("second claim busy")}
	if _, err := mysql.TakeLocks(ctx, tgt.DB, []mysql.Claim{other, claims[0]}); err == nil {
		t.Fatal("TakeLocks with a busy second claim succeeded")
	}
	assertFree(t, tgt, other.Name)
	// Close ends the session, not just hands it back to the pool with its locks.
	again.Close()
	assertFree(t, tgt, name)
	var sessions int
	if err := tgt.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Errorf("the locks' session %d lives on after Close", id)
	}
}

func assertFree(t *testing.T, tgt *mysql.Target, name string) {
	t.Helper()
	var free int
	if err := tgt.DB.QueryRow("SELECT IS_FREE_LOCK(?)", name).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if free != 1 {
		t.Errorf("lock %s is still held", name)
	}
}

// connectTarget opens p's target the way a run does (a pool, the session
// settings), closed by the test's cleanup.
func connectTarget(t *testing.T, p *testenv.Pair) *mysql.Target {
	t.Helper()
	_, cfg, err := config.Resolve(p.SourceURL, p.TargetURL, nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := mysql.Connect(context.Background(), cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tgt.Close() })
	return tgt
}

// A database plan created only to try its tables is dropped afterwards, but
// not while another session (a sync or copy that connected to it meanwhile)
// uses it: that one may be about to create its tables there.
func TestDropCreatedLeavesADatabaseInUse(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	name := p.Name + "_plan"
	t.Cleanup(func() { p.My(t, "DROP DATABASE IF EXISTS `"+name+"`") })
	_, cfg, err := config.Resolve(p.SourceURL, strings.TrimSuffix(p.TargetURL, p.Name)+name, nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := mysql.Connect(ctx, cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if !tgt.Created {
		t.Fatalf("Connect to the new database %s: Created false", name)
	}
	other, err := p.Target.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close() // before the cleanup, which needs the test's one connection
	if _, err := other.ExecContext(ctx, "USE `"+name+"`"); err != nil {
		t.Fatal(err)
	}
	dropped, err := tgt.DropCreated(ctx)
	if dropped || err == nil || !strings.Contains(err.Error(), "other sessions use the database "+name) {
		t.Errorf("DropCreated while another session uses %s: dropped %v, error %v; want it left, saying why", name, dropped, err)
	}
	exists := func() bool { // on the other session: the test's pool may hold one
		var n int
		if err := other.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if !exists() {
		t.Fatalf("the database %s another session uses was dropped", name)
	}
	if _, err := other.ExecContext(ctx, "USE `"+p.Name+"`"); err != nil { // the other session leaves it
		t.Fatal(err)
	}
	if dropped, err := tgt.DropCreated(ctx); !dropped || err != nil {
		t.Errorf("DropCreated once the other session left: dropped %v, error %v; want it dropped", dropped, err)
	}
	if exists() {
		t.Errorf("database %s is still there", name)
	}
}
