package fence_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/fence"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/testenv"
)

// The fence stops writes to the tables (reads go on) until it is released,
// and released after a failed cutover the source takes writes as before.
func TestFenceStopsWritesUntilReleased(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id bigserial PRIMARY KEY, post int NOT NULL)`)
	p.PG(t, `INSERT INTO likes (post) SELECT g FROM generate_series(1, 41) g`)
	src, tgt, pl := planned(t, p, "likes", true)

	lock, err := fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lock.Granted.Before(lock.Requested) {
		t.Fatalf("granted %v before requested %v", lock.Granted, lock.Requested)
	}
	var n int
	if err := src.Pool.QueryRow(ctx, `SELECT count(*) FROM likes`).Scan(&n); err != nil || n != 41 {
		t.Fatalf("a read under the fence: %d rows, %v; want 41", n, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = src.Pool.Exec(wctx, `INSERT INTO likes (post) VALUES (42)`)
	cancel()
	if err == nil {
		t.Fatal("an insert went through the fence")
	}

	// Under the fence the target's AUTO_INCREMENT moves past the sequence,
	// by the gap: the ids the new service hands out are ones the source
	// never used, nor will use for the writes that still reach it.
	got, _, err := lock.SyncAutoIncrement(ctx, tgt, 100, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got[pl.Tables[0].Target] != 142 {
		t.Fatalf("AUTO_INCREMENT set to %v; want likes: 142 (42 and a gap of 100)", got)
	}
	var ai int64
	if err := tgt.DB.QueryRowContext(ctx, `SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'likes'`).Scan(&ai); err != nil || ai != 142 {
		t.Fatalf("target AUTO_INCREMENT = %d, %v; want 142", ai, err)
	}

	lock.Release()
	if _, err := src.Pool.Exec(ctx, `INSERT INTO likes (post) VALUES (43)`); err != nil {
		t.Fatalf("insert after the fence was lifted: %v", err)
	}
}

// A transaction writing to a table keeps the fence from being granted: Take
// gives up after the lock timeout with SLUICE-CUTOVER-LOCK, and the source
// is left as it was.
func TestFenceGivesUpAfterLockTimeout(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY)`)
	src, _, pl := planned(t, p, "likes", false)
	writer, err := src.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	if _, err := writer.Exec(ctx, `INSERT INTO likes VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = fence.Take(ctx, src, pl.Tables, 200*time.Millisecond, 30*time.Second)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != "SLUICE-CUTOVER-LOCK" {
		t.Fatalf("Take while a writer holds the table = %v; want SLUICE-CUTOVER-LOCK", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("Take gave up after %s; the lock timeout was 200ms", waited)
	}
	if _, err := writer.Exec(ctx, `INSERT INTO likes VALUES (2)`); err != nil {
		t.Fatalf("the writer after the failed fence: %v", err)
	}
	if err := writer.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// The lock timeout bounds the whole fence request, not each table's wait:
// writers that end one after another, each just within the lock timeout,
// on three tables kept the request (and every writer queued behind the
// tables it had locked) waiting for nearly three lock timeouts.
func TestFenceRequestEndsWithinTheLockTimeout(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	names := []string{"a", "b", "c"}
	for _, n := range names {
		p.PG(t, `CREATE TABLE `+n+` (id int PRIMARY KEY)`)
	}
	src, _ := p.Handles(t)
	pl, err := plan.Build(ctx, src, plan.Options{Tables: names})
	if err != nil || pl.Err() != nil {
		t.Fatalf("plan: %v %v", err, pl.Err())
	}
	const lockTimeout = time.Second
	var writers sync.WaitGroup
	defer writers.Wait()      // each ends its own transaction: a connection serves one goroutine
	for i, n := range names { // writer i ends 0.7 s after writer i-1
		w, err := src.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec(ctx, `INSERT INTO `+n+` VALUES (1)`); err != nil {
			w.Rollback(ctx)
			t.Fatal(err)
		}
		writers.Add(1)
		time.AfterFunc(time.Duration(i+1)*700*time.Millisecond, func() {
			defer writers.Done()
			w.Commit(ctx)
		})
	}
	start := time.Now()
	lock, err := fence.Take(ctx, src, pl.Tables, lockTimeout, 30*time.Second)
	waited := time.Since(start)
	if err == nil {
		lock.Release()
		t.Fatalf("Take was granted after %s with a lock timeout of %s; want SLUICE-CUTOVER-LOCK once the timeout has passed", waited, lockTimeout)
	}
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != "SLUICE-CUTOVER-LOCK" {
		t.Fatalf("Take = %v; want SLUICE-CUTOVER-LOCK", err)
	}
	if waited > lockTimeout+500*time.Millisecond {
		t.Fatalf("Take gave up after %s; want about the lock timeout, %s", waited, lockTimeout)
	}
}

// A column whose default takes values from a sequence it does not own (made
// by hand, or shared between tables) gets its AUTO_INCREMENT past that
// sequence too: the target must never hand out an id the source has used.
func TestAutoIncrementFromASequenceMadeByHand(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE SEQUENCE shared_ids START 1000`)
	p.PG(t, `CREATE TABLE orders (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), note text)`)
	p.PG(t, `CREATE TABLE invoices (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), note text)`)
	p.PG(t, `INSERT INTO orders (note) VALUES ('a'), ('b')`)
	p.PG(t, `INSERT INTO invoices (note) VALUES ('c')`) // takes 1002 from the shared sequence
	src, tgt, pl := planned(t, p, "orders", true)
	lock, err := fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	got, _, err := lock.SyncAutoIncrement(ctx, tgt, 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got["orders"] != 1003 {
		t.Fatalf("AUTO_INCREMENT set to %v; want orders: 1003 (past the shared sequence's 1002)", got)
	}
}

// The sequence a column's default calls is the one its ids come from: a
// serial whose default was pointed at a new sequence still owns its old one
// (its AUTO_INCREMENT was set from the stale value, so the target's inserts
// took ids the source hands out), and a default naming its sequence as text
// records no dependency (the column was skipped without a word). A default
// that computes the name is reported, not skipped silently.
func TestAutoIncrementFromTheSequenceTheDefaultCalls(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE moved (id serial PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO moved (v) SELECT 'x' FROM generate_series(1, 10)`)
	p.PG(t, `CREATE SEQUENCE moved_new START 70000`)
	p.PG(t, `ALTER TABLE moved ALTER COLUMN id SET DEFAULT nextval('moved_new')`)
	p.PG(t, `INSERT INTO moved (v) VALUES ('y')`) // 70000
	p.PG(t, `CREATE SEQUENCE "Old Ids" START 40000`)
	p.PG(t, `CREATE TABLE texty (id int PRIMARY KEY DEFAULT nextval('"Old Ids"'::text), v text)`)
	p.PG(t, `INSERT INTO texty (v) VALUES ('a'), ('b')`) // 40000, 40001
	p.PG(t, `CREATE FUNCTION texty_seq() RETURNS text LANGUAGE sql AS $$ SELECT '"Old Ids"' $$`)
	p.PG(t, `CREATE TABLE computed (id int PRIMARY KEY DEFAULT nextval(texty_seq()), v text)`)
	src, tgt := p.Handles(t)
	pl, err := plan.Build(ctx, src, plan.Options{Tables: []string{"moved", "texty", "computed"}})
	if err != nil || pl.Err() != nil {
		t.Fatalf("plan: %v %v", err, pl.Err())
	}
	for _, tp := range pl.Tables {
		p.My(t, tp.CreateTable)
	}
	lock, err := fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	got, unknown, err := lock.SyncAutoIncrement(ctx, tgt, 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got["moved"] != 70001 || got["texty"] != 40002 {
		t.Errorf("AUTO_INCREMENT set to %v; want moved: 70001 (past the sequence its default calls, not the one it owns), texty: 40002", got)
	}
	if len(unknown) != 1 || unknown[0] != "computed.id" {
		t.Errorf("columns whose sequence was not found: %v; want [computed.id]", unknown)
	}
}

// A sequence counting down (an identity with INCREMENT BY -1) made every
// cutover fail on ALTER TABLE … AUTO_INCREMENT = -10, however often it was
// retried: it is left alone (the target counts up, away from its values);
// one counting up by 10 moves the target past its next value.
func TestAutoIncrementOfOtherIncrements(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE down (id int GENERATED ALWAYS AS IDENTITY (INCREMENT BY -1 START WITH -1 MINVALUE -1000000 MAXVALUE -1) PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO down (v) SELECT 'x' FROM generate_series(1, 11)`)
	p.PG(t, `CREATE TABLE tens (id int GENERATED ALWAYS AS IDENTITY (INCREMENT BY 10) PRIMARY KEY, v text)`)
	p.PG(t, `INSERT INTO tens (v) SELECT 'x' FROM generate_series(1, 3)`) // 1, 11, 21
	for _, c := range []struct {
		table string
		want  int64 // 0: left alone
	}{{"down", 0}, {"tens", 31}} {
		src, tgt, pl := planned(t, p, c.table, true)
		lock, err := fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := lock.SyncAutoIncrement(ctx, tgt, 0, slog.Default())
		lock.Release()
		if err != nil {
			t.Fatalf("%s: %v", c.table, err)
		}
		if got[c.table] != c.want {
			t.Errorf("%s: AUTO_INCREMENT set to %v; want %d", c.table, got, c.want)
		}
	}
}

// A sluice that stops answering while the fence is up (its host died or
// froze) must not hold the writers for hours, until TCP keepalive gives up:
// the server ends the fence's idle transaction shortly after the fence's
// timeout, and Release, called late on the dead session, returns at once
// and leaves the pool usable.
func TestFenceEndsWhenSluiceStopsAnswering(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id bigserial PRIMARY KEY, post int NOT NULL)`)
	src, _, pl := planned(t, p, "likes", false)
	lock, err := fence.Take(ctx, src, pl.Tables, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// sluice freezes here: nothing lifts the fence.
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.Source.Exec(wctx, `INSERT INTO likes (post) VALUES (1)`); err != nil {
		lock.Release() // else closing the pool waits for its connection
		t.Fatalf("a write still waits for the fence of a sluice that stopped answering %s ago: %v", time.Since(start).Round(time.Second), err)
	}
	if waited, most := time.Since(start), time.Second+fence.IdleMargin+5*time.Second; waited > most {
		t.Errorf("the write waited %s for the abandoned fence; want at most %s", waited, most)
	}
	start = time.Now()
	lock.Release()
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("Release on the session the server ended took %s", d)
	}
	var one int
	if err := src.Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Errorf("the pool after releasing a dead fence: %v", err)
	}
}

// Blockers names a transaction that holds a table longer than the given
// age (a session idle in transaction), which a fence would queue behind;
// a young one, or none, is no blocker.
func TestBlockersNamesAnIdleTransaction(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY)`)
	src, _, pl := planned(t, p, "likes", false)
	if b, err := fence.Blockers(ctx, src, pl.Tables, 0); err != nil || len(b) != 0 {
		t.Fatalf("Blockers with no transaction = %v, %v; want none", b, err)
	}
	writer, err := src.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	var pid int
	if err := writer.QueryRow(ctx, `INSERT INTO likes VALUES (1) RETURNING pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if b, err := fence.Blockers(ctx, src, pl.Tables, time.Hour); err != nil || len(b) != 0 {
		t.Fatalf("Blockers older than an hour = %v, %v; want none", b, err)
	}
	time.Sleep(300 * time.Millisecond)
	b, err := fence.Blockers(ctx, src, pl.Tables, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].PID != pid || b[0].State != "idle in transaction" || b[0].Mode != "RowExclusiveLock" {
		t.Fatalf("Blockers = %+v; want process %d, idle in transaction, RowExclusiveLock", b, pid)
	}
}

// A transaction writing straight into a partition locks the partition
// only, and the fence (which locks every partition) would queue behind it
// all the same: Blockers names it.
func TestBlockersNamesAWriterOfAPartition(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY) PARTITION BY RANGE (id); CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (100)`)
	src, _, pl := planned(t, p, "ev", false)
	writer, err := src.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	var pid int
	if err := writer.QueryRow(ctx, `INSERT INTO ev_1 VALUES (1) RETURNING pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	b, err := fence.Blockers(ctx, src, pl.Tables, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].PID != pid || b[0].Table != "ev_1" {
		t.Fatalf("Blockers = %+v; want process %d on ev_1", b, pid)
	}
}

// The gap added to a target AUTO_INCREMENT stops at what the column (and
// the sequence) can hold: a SMALLINT set past 32767 fails every insert on
// the target, though the source has ids left.
func TestAutoIncrementGapStopsAtTheColumnsEnd(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE small (id smallserial PRIMARY KEY, v text); SELECT setval('small_id_seq', 32000)`)
	src, tgt, pl := planned(t, p, "small", true)
	lock, err := fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	got, _, err := lock.SyncAutoIncrement(ctx, tgt, 1000, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got["small"] != 32767 {
		t.Fatalf("AUTO_INCREMENT set to %v; want small: 32767 (the gap of 1000 stopped at SMALLINT's end)", got)
	}
	if _, err := tgt.DB.Exec(`INSERT INTO small (v) VALUES ('on the target')`); err != nil {
		t.Errorf("an insert on the target after the cutover: %v", err)
	}
}

// A source user that may not lock the tables gets SLUICE-CUTOVER-PRIVILEGE
// at once, saying what to grant, not a lock timeout blamed on long
// transactions.
func TestFenceWithoutThePrivilege(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.PG(t, `CREATE TABLE likes (id int PRIMARY KEY)`)
	role := testenv.DBName(t) + "_reader"
	p.PG(t, `DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` LOGIN; GRANT SELECT ON likes TO `+role)
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	_, _, pl := planned(t, p, "likes", false)
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	src, err := postgres.Connect(ctx, u.String(), role, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = fence.Take(ctx, src, pl.Tables, time.Second, 30*time.Second)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != "SLUICE-CUTOVER-PRIVILEGE" || !strings.Contains(fe.Error(), "likes") {
		t.Fatalf("Take as a user without UPDATE on likes = %v; want SLUICE-CUTOVER-PRIVILEGE naming likes", err)
	}
}

// planned opens sluice's connections to the pair and plans table; create
// makes its target table.
func planned(t *testing.T, p *testenv.Pair, table string, create bool) (*postgres.Source, *mysql.Target, *plan.Plan) {
	t.Helper()
	src, tgt := p.Handles(t)
	pl, err := plan.Build(context.Background(), src, plan.Options{Tables: []string{table}, Flavor: tgt.Flavor})
	if err != nil || pl.Err() != nil {
		t.Fatalf("plan: %v %v", err, pl.Err())
	}
	if create {
		p.My(t, pl.Tables[0].CreateTable)
	}
	return src, tgt, pl
}
