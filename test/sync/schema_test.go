package synctest

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/pgstream"
	"github.com/sluice-db/sluice/internal/testenv"
)

// TestSchemaChangeStopsSync: a column added to a migrated table while it
// streams stops the sync with a message naming the table and the column
// (exit 4), instead of writing rows the target cannot hold correctly; no
// row after the change reaches the target, and every row before it does.
func TestSchemaChangeStopsSync(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

	p.PG(t, `INSERT INTO orders (customer, amount, status) VALUES (7, 1, 'just before the change')`)
	p.PG(t, `ALTER TABLE orders ADD COLUMN coupon text`)
	p.PG(t, `INSERT INTO orders (customer, amount, status, coupon) VALUES (7, 1, 'after the change', 'SAVE10')`)
	select {
	case <-proc.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("the sync kept running after a column was added to a migrated table")
	}
	_, code := proc.Exited()
	out := proc.Output()
	if code != 4 {
		t.Errorf("exit %d after a schema change, want 4 (schema problem)\n%s", code, out)
	}
	for _, want := range []string{"SLUICE-SYNC-SCHEMACHANGE", "orders", "coupon"} {
		if !strings.Contains(out, want) {
			t.Errorf("the stop message does not mention %q:\n%s", want, out)
		}
	}
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM orders WHERE status = 'after the change'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a row written after the schema change reached the target")
	}
	// The stop writes what came before the change (likely in the same
	// batch): the target stands where the stop says.
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM orders WHERE status = 'just before the change'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the row written just before the schema change is not on the target after the stop (%d rows, %v)", n, err)
	}
	s.abort()
}

// TestSchemaChangesThatKeepNamesAndTypes: changes the stream's relation
// message shows only by an OID, an order or a type modifier went unseen,
// and the sync ran on writing wrong data or dropping changes: a renamed
// table (its changes arrived under a name the sync did not know), two
// columns renamed into each other's places (existing rows now hold the
// values the other way round), a timestamp(0) widened to timestamp(6) (the
// target's DATETIME(0) cut every new fraction). Each stops the sync (exit
// 4, SLUICE-SYNC-SCHEMACHANGE) before the change is written.
func TestSchemaChangesThatKeepNamesAndTypes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, ddl, write, want string
	}{
		{"rename", `ALTER TABLE ev RENAME TO ev2`, `INSERT INTO ev2 (id, a, b, at) VALUES (101, 1, 2, now())`, "renamed to public.ev2"},
		{"swap", `ALTER TABLE ev RENAME COLUMN a TO tmp; ALTER TABLE ev RENAME COLUMN b TO a; ALTER TABLE ev RENAME COLUMN tmp TO b`,
			`INSERT INTO ev (id, a, b, at) VALUES (101, 1, 2, now())`, "another order"},
		{"typmod", `ALTER TABLE ev ALTER COLUMN at TYPE timestamp(6)`, `INSERT INTO ev (id, a, b, at) VALUES (101, 1, 2, '2024-01-01 10:00:00.987654')`, "column at changed its length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, s, proc := syncedEv(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL, at timestamp(0));
				INSERT INTO ev SELECT g, g, 10 * g, '2024-01-01 10:00:00' FROM generate_series(1, 100) g`)
			p.PG(t, c.ddl)
			p.PG(t, c.write)
			waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", c.want)
			var n int
			if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 101`).Scan(&n); err != nil || n != 0 {
				t.Errorf("the write after the change reached the target (%d rows, %v)", n, err)
			}
			s.abort()
		})
	}
}

// TestSchemaChangesTheStreamCannotShow: DDL that rewrites a table's rows
// while leaving the same column names, types and order behind shows
// nothing in the change stream: a column dropped and added again (every
// row lost its values), a type changed and changed back, ALTER COLUMN …
// USING on the same type (also on a partitioned table, whose partitions
// are what is rewritten), a column of an inheritance parent dropped and
// added again, a dropped table (also by DROP SCHEMA … CASCADE). sluice's
// event triggers record each in the WAL, and the sync stops at it (exit 4)
// even when no write follows; a write after it does not reach the target.
// abort removes the triggers.
func TestSchemaChangesTheStreamCannotShow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, setup, table, ddl, want string
	}{
		{"readd", plain, "ev", `ALTER TABLE ev DROP COLUMN b; ALTER TABLE ev ADD COLUMN b int NOT NULL DEFAULT 0`, "column b is another column than the one copied"},
		{"typeback", plain, "ev", `ALTER TABLE ev ALTER COLUMN a TYPE bigint; ALTER TABLE ev ALTER COLUMN a TYPE int`, "rewrote the values"},
		{"using", plain, "ev", `ALTER TABLE ev ALTER COLUMN a TYPE int USING a * 2`, "rewrote the values"},
		{"dropped", plain, "ev", `DROP TABLE ev;`, "it was dropped"},
		{"partitioned", partitioned, "ev", `ALTER TABLE ev ALTER COLUMN a TYPE int USING a * 2`, "rewrote the values"},
		{"inherited", `CREATE TABLE base (a int NOT NULL, b int NOT NULL); CREATE TABLE ev (id int PRIMARY KEY) INHERITS (base);
			INSERT INTO ev SELECT g, 10 * g, g FROM generate_series(1, 100) g`, "ev",
			`ALTER TABLE base DROP COLUMN b; ALTER TABLE base ADD COLUMN b int NOT NULL DEFAULT 0`, "column b is another column than the one copied"},
		{"partition detached", partitioned, "ev", `ALTER TABLE ev DETACH PARTITION ev_1`, "was detached"},
		{"partition dropped", partitioned, "ev", `DROP TABLE ev_1`, "its partition public.ev_1 was dropped"},
		{"partition unlogged", partitioned, "ev", `ALTER TABLE ev_1 SET UNLOGGED`, "UNLOGGED"},
		{"partition truncated", partitioned, "ev", `TRUNCATE ev_1`, "its partition public.ev_1 was truncated: the rows it held left the source without a change in the stream (delete them on the target with DELETE FROM `ev` WHERE `id` IS NOT NULL AND `id` >= 0 AND `id` < 50; or run sluice verify --repair --tables ev"},
		{"subpartition truncated", subpartitioned, "ev", `TRUNCATE ev_2`, "its partition public.ev_2a was truncated: the rows it held left the source without a change in the stream (delete them on the target with DELETE FROM `ev` WHERE `id` IS NOT NULL AND `id` >= 50 AND `id` < 95 AND `id` < 1000;"},
		{"default partition truncated", partitioned + `; CREATE TABLE ev_def PARTITION OF ev DEFAULT; INSERT INTO ev VALUES (5000, 1, 1)`, "ev", `TRUNCATE ev_def`,
			"its partition public.ev_def was truncated: the rows it held left the source without a change in the stream (sluice cannot tell them by a condition"},
		{"truncated, then attached again with another bound", partitioned, "ev",
			`TRUNCATE ev_1; ALTER TABLE ev DETACH PARTITION ev_1; ALTER TABLE ev ATTACH PARTITION ev_1 FOR VALUES FROM (2000) TO (3000)`,
			"its partition public.ev_1 was truncated: the rows it held left the source without a change in the stream (sluice cannot tell them by a condition"},
		{"truncated in a replica session", partitioned, "ev", `SET session_replication_role = replica; TRUNCATE ev_1; RESET session_replication_role`, "its partition public.ev_1 was truncated"},
		{"oddly named partition truncated", partitioned + `; CREATE TABLE "Ev $watch$ 'x" PARTITION OF ev FOR VALUES FROM (2000) TO (3000); INSERT INTO ev VALUES (2500, 1, 1)`, "ev",
			`TRUNCATE "Ev $watch$ 'x"`, "WHERE `id` IS NOT NULL AND `id` >= 2000 AND `id` < 3000;"},
		{"created, filled and truncated in one transaction", partitioned, "ev",
			`BEGIN; CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000); INSERT INTO ev (id, a, b) VALUES (1500, 1, 2); TRUNCATE ev_3; COMMIT`,
			// the INSERT is written again when the sync goes on: a DELETE run now would not hold
			"its partition public.ev_3 was truncated: the rows it held left the source without a change in the stream (the transaction that truncated it wrote rows of the table before"},
		{"subpartition detached", subpartitioned, "ev", `ALTER TABLE ev_2 DETACH PARTITION ev_2a`, "was detached"},
		{"attached in a savepoint", partitioned + `; CREATE TABLE ev_3 (LIKE ev); INSERT INTO ev_3 SELECT g, g, g FROM generate_series(1000, 1010) g`, "ev",
			`BEGIN; SAVEPOINT s; ALTER TABLE ev ATTACH PARTITION ev_3 FOR VALUES FROM (1000) TO (2000); RELEASE SAVEPOINT s; COMMIT`, "partition public.ev_3 was attached holding rows"},
		{"filled and attached in one transaction", partitioned, "ev",
			`BEGIN; CREATE TABLE ev_3 (LIKE ev); INSERT INTO ev_3 SELECT g, g, g FROM generate_series(1000, 1010) g; ALTER TABLE ev ATTACH PARTITION ev_3 FOR VALUES FROM (1000) TO (2000); COMMIT`,
			"partition public.ev_3 was attached holding rows"},
		{"partition attached", partitioned + `; CREATE TABLE ev_3 (LIKE ev); INSERT INTO ev_3 SELECT g, g, g FROM generate_series(1000, 1010) g`, "ev",
			`ALTER TABLE ev ATTACH PARTITION ev_3 FOR VALUES FROM (1000) TO (2000)`, "partition public.ev_3 was attached holding rows"},
		{"schema dropped", `CREATE SCHEMA app; CREATE TABLE app.ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL);
			INSERT INTO app.ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`, "app.ev", `DROP SCHEMA app CASCADE`, "it was dropped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, s, proc := syncedEv(t, c.setup, "--tables", c.table)
			var leaves int // partitions that hold rows, each with a TRUNCATE trigger
			if err := p.Source.QueryRow(context.Background(), `SELECT count(*) FROM pg_class WHERE relispartition AND relkind = 'r'`).Scan(&leaves); err != nil {
				t.Fatal(err)
			}
			if events, tables, functions := testenv.SchemaWatch(t, p.SourceURL, s.slot); events != 3 || tables != leaves || functions != 3 {
				t.Fatalf("the running sync has %d event triggers, %d TRUNCATE triggers and %d functions on the source, want 3, %d and 3", events, tables, functions, leaves)
			}
			p.PG(t, c.ddl)
			written := !strings.Contains(c.ddl, "DROP TABLE ev;") && !strings.Contains(c.ddl, "DROP SCHEMA")
			if written { // while the sync may still run
				p.PG(t, `INSERT INTO `+c.table+` (id, a, b) VALUES (101, 1, 2)`)
			}
			waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", c.want)
			var n int
			if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 101`).Scan(&n); written && (err != nil || n != 0) {
				t.Errorf("a write after the change reached the target (%d rows, %v)", n, err)
			}
			s.abort()
		})
	}
	// A partition created during the sync, filled through the stream and
	// then dropped takes its rows away without a change in the stream: the
	// sync learned of it from the notice of its creation.
	t.Run("new partition dropped", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000)`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (1500, 1, 2)`)
		s.waitCaughtUp(60 * time.Second)
		p.PG(t, `DROP TABLE ev_3`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", "its partition public.ev_3 was dropped")
		s.abort()
	})
	// The stop gives the DELETE that takes the truncated partition's rows
	// off the target, in the target's terms (a timestamptz bound in UTC,
	// the parent's list bound with it): run there, the sync goes on past
	// the stop and ends equal, other partitions' rows untouched.
	t.Run("truncated partition's rows deleted as told", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, `CREATE TABLE ev (id int NOT NULL, region int NOT NULL, at timestamptz NOT NULL, a int NOT NULL, b int NOT NULL,
				PRIMARY KEY (id, region, at)) PARTITION BY LIST (region);
			CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN (1, 2) PARTITION BY RANGE (at);
			CREATE TABLE ev_eu_jan PARTITION OF ev_eu FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00');
			CREATE TABLE ev_eu_feb PARTITION OF ev_eu FOR VALUES FROM ('2024-02-01 00:00:00+00') TO ('2024-03-01 00:00:00+00');
			CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN (3);
			INSERT INTO ev SELECT g, 1 + g % 3, timestamptz '2024-01-01 00:00:00+00' + g * interval '4 hours', g, g FROM generate_series(1, 300) g`, "--tables", "ev")
		// A row written just before the TRUNCATE, likely in the same batch:
		// the stop writes it first, or it would come back after the DELETE.
		p.PG(t, `INSERT INTO ev VALUES (2000, 1, '2024-01-20 00:00:00+00', 1, 1)`)
		var held int
		if err := p.Source.QueryRow(context.Background(), `SELECT count(*) FROM ev_eu_jan`).Scan(&held); err != nil || held == 0 {
			t.Fatalf("ev_eu_jan holds %d rows (%v)", held, err)
		}
		p.PG(t, `SET TimeZone = 'America/New_York'; TRUNCATE ev_eu_jan; RESET TimeZone`) // the bounds it records are read in UTC all the same
		p.PG(t, `INSERT INTO ev VALUES (1000, 1, '2024-01-15 00:00:00+00', 1, 1)`)       // after the stop: streamed once the sync runs again
		want := "DELETE FROM `ev` WHERE `at` IS NOT NULL AND `at` >= '2024-01-01 00:00:00' AND `at` < '2024-02-01 00:00:00' AND `region` IN (1, 2)"
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_eu_jan was truncated", want+";")
		r, err := p.Target.Exec(want)
		if err != nil {
			t.Fatalf("the DELETE the stop gave fails on the target: %v", err)
		}
		if n, _ := r.RowsAffected(); n != int64(held) {
			t.Errorf("the DELETE the stop gave took %d rows off the target; the partition held %d", n, held)
		}
		s.start()
		s.waitCaughtUp(60 * time.Second)
		verifyEqual(t, p.SourceURL, p.TargetURL, "ev")
		s.abort()
	})
	// A partition created during the sync gets its trigger from the event
	// trigger, firing in ordinary sessions only until sluice enables it
	// ALWAYS: the sync does that as soon as it reads the partition's
	// notice, not at its next once-a-minute look, so that a TRUNCATE in a
	// replica session soon after stops it too.
	t.Run("new partition truncated in a replica session", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000); INSERT INTO ev (id, a, b) VALUES (1500, 1, 2)`)
		waitTriggerAlways(t, p, s.slot, "ev_3", 20*time.Second, "ev_3's TRUNCATE trigger enabled ALWAYS (well before the once-a-minute look)")
		p.PG(t, `SET session_replication_role = replica; TRUNCATE ev_3; RESET session_replication_role`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_3 was truncated", "WHERE `id` IS NOT NULL AND `id` >= 1000 AND `id` < 2000;")
		s.abort()
	})
	// So does a TRUNCATE of a partition created during the sync: it got
	// its TRUNCATE trigger with its CREATE TABLE, here by an application
	// role that is no superuser.
	t.Run("new partition truncated", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		role := newRole(t, p, "sluice_app_")
		p.PG(t, `GRANT CREATE ON SCHEMA public TO `+role+`; ALTER TABLE ev OWNER TO `+role)
		p.PG(t, `SET ROLE `+role+`; CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000); RESET ROLE`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (1500, 1, 2)`)
		waitTargetRow(t, p, 1500, "row 1500, in the new partition, on the target")
		p.PG(t, `TRUNCATE ev_3`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_3 was truncated", "WHERE `id` IS NOT NULL AND `id` >= 1000 AND `id` < 2000;")
		s.abort()
	})
	// A partition attached with partitions of its own that the
	// application's role does not own gets them watched all the same.
	t.Run("attached partitions of another owner truncated", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		role := newRole(t, p, "sluice_app_")
		p.PG(t, `CREATE TABLE ev_3 (LIKE ev) PARTITION BY RANGE (id); CREATE TABLE ev_3a PARTITION OF ev_3 FOR VALUES FROM (1000) TO (2000);
			ALTER TABLE ev OWNER TO `+role+`; ALTER TABLE ev_3 OWNER TO `+role)
		p.PG(t, `SET ROLE `+role+`; ALTER TABLE ev ATTACH PARTITION ev_3 FOR VALUES FROM (1000) TO (2000); RESET ROLE`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (1500, 1, 2)`)
		waitTargetRow(t, p, 1500, "row 1500, in the attached partition, on the target")
		p.PG(t, `TRUNCATE ev_3a`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_3a was truncated")
		s.abort()
	})
	// A TRUNCATE of the whole partitioned table is in the stream (its
	// partitions' triggers fire too): the target is emptied and the sync
	// goes on, also after one partition was truncated first in the same
	// transaction, and when one is truncated after it (it is empty by
	// then).
	t.Run("whole table truncated", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `BEGIN; TRUNCATE ev_2; TRUNCATE ev; COMMIT`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (5, 1, 2)`)
		p.PG(t, `BEGIN; TRUNCATE ev; TRUNCATE ev_1; COMMIT`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (777, 1, 2)`)
		waitTargetRow(t, p, 777, "row 777, written after the TRUNCATE, on the target")
		if stopped, _ := proc.Exited(); stopped {
			t.Fatalf("the sync stopped after a TRUNCATE of the whole table:\n%s", testenv.Tail(proc.Output(), 20))
		}
		var n int
		if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ev`).Scan(&n); err != nil || n != 1 {
			t.Errorf("the target holds %d rows after the TRUNCATE and one insert, want 1 (%v)", n, err)
		}
		s.abort()
	})
	// The role that attaches a table reads it under its own row-level
	// security: rows a policy hides from it count as perhaps there.
	t.Run("attached with rows a policy hides", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		role := newRole(t, p, "sluice_app_")
		p.PG(t, `CREATE TABLE ev_3 (LIKE ev); INSERT INTO ev_3 SELECT g, g, g FROM generate_series(1000, 1010) g;
			ALTER TABLE ev_3 ENABLE ROW LEVEL SECURITY; ALTER TABLE ev_3 FORCE ROW LEVEL SECURITY; CREATE POLICY hide ON ev_3 USING (false);
			ALTER TABLE ev OWNER TO `+role+`; ALTER TABLE ev_3 OWNER TO `+role)
		p.PG(t, `SET ROLE `+role+`; ALTER TABLE ev ATTACH PARTITION ev_3 FOR VALUES FROM (1000) TO (2000); RESET ROLE`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "partition public.ev_3 (perhaps: the attaching transaction cannot see every row")
		s.abort()
	})
	// A TRUNCATE in a REPEATABLE READ transaction of a partition that was
	// empty in its snapshot takes the rows committed since all the same.
	t.Run("truncated in a repeatable read transaction", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `DELETE FROM ev_1`)
		ctx := context.Background()
		c, err := pgx.Connect(ctx, p.SourceURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM ev_1`).Scan(&n); err != nil || n != 0 { // the snapshot
			t.Fatalf("ev_1 holds %d rows (%v)", n, err)
		}
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (5, 1, 2)`)
		waitTargetRow(t, p, 5, "row 5 on the target")
		if _, err := tx.Exec(ctx, `TRUNCATE ev_1`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_1 was truncated")
		s.abort()
	})
	// A partition whose rows were all deleted (and streamed) still has a
	// size until VACUUM: its TRUNCATE takes nothing from the target, and
	// under READ COMMITTED the trigger reads it empty and writes no notice.
	// A role that may truncate it but not read it stops the sync all the
	// same: it cannot tell.
	t.Run("emptied partition truncated", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `DELETE FROM ev_1`)
		p.PG(t, `TRUNCATE ev_1`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (500, 1, 2)`)
		waitTargetRow(t, p, 500, "row 500, written after the TRUNCATE, on the target")
		if done, code := proc.Exited(); done {
			t.Fatalf("the sync stopped (exit %d) at the TRUNCATE of a partition read empty:\n%s", code, testenv.Tail(proc.Output(), 10))
		}
		verifyEqual(t, p.SourceURL, p.TargetURL, "ev")

		role := newRole(t, p, "sluice_truncator_")
		p.PG(t, `DELETE FROM ev_2 WHERE id > 60; GRANT TRUNCATE ON ev_2 TO `+role)
		p.PG(t, `SET ROLE `+role+`; TRUNCATE ev_2; RESET ROLE`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_2 was truncated")
		s.abort()
	})
	// A TRUNCATE trigger disabled by the application (a bulk loader's
	// ALTER TABLE … DISABLE TRIGGER ALL) is warned of, and the running sync
	// enables it again.
	t.Run("trigger disabled", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `ALTER TABLE ev_1 DISABLE TRIGGER ALL`)
		waitFor(t, 60*time.Second, "a warning naming ev_1's disabled trigger", func() bool {
			out := proc.Output()
			return strings.Contains(out, "SLUICE-SYNC-NOTRUNCWATCH") && strings.Contains(out, "disabled on partitions of ev: public.ev_1")
		})
		waitTriggerAlways(t, p, s.slot, "ev_1", 100*time.Second, "ev_1's TRUNCATE trigger enabled again")
		p.PG(t, `TRUNCATE ev_1`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_1 was truncated")
		s.abort()
	})
	// A bulk loader's DISABLE TRIGGER ALL … ENABLE TRIGGER ALL leaves
	// sluice's trigger firing in ordinary sessions only: the sync enables it
	// ALWAYS again as soon as it reads the notice of that ALTER TABLE.
	t.Run("trigger enabled again for ordinary sessions", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `ALTER TABLE ev_1 DISABLE TRIGGER ALL; ALTER TABLE ev_1 ENABLE TRIGGER ALL`)
		waitTriggerAlways(t, p, s.slot, "ev_1", 20*time.Second, "ev_1's TRUNCATE trigger enabled ALWAYS again (well before the once-a-minute look)")
		p.PG(t, `SET session_replication_role = replica; TRUNCATE ev_1; RESET session_replication_role`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_1 was truncated")
		s.abort()
	})
	// Any role may write a notice (pg_logical_emit_message), copying into
	// it the bounds the catalog shows. The rows a stop tells to delete come
	// from the catalog, not from the notice, only when its bounds are the
	// catalog's, and only when the partition holds no row older than the
	// notice's transaction: a TRUNCATE there would have taken every one.
	t.Run("forged notice", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		role := newRole(t, p, "sluice_nobody_")
		p.PG(t, `SET ROLE `+role+`; SELECT pg_logical_emit_message(true, 'sluice', format('D:{"oid":%s,"name":"public.ev_1","truncated":true,"bound":"(true) -- all rows","ancestors":[%s],"bounds":%s}',
			'ev_1'::regclass::oid, 'ev'::regclass::oid,
			(SELECT json_agg(pg_get_expr(c.relpartbound, c.oid) ORDER BY a.n) FROM pg_partition_ancestors('ev_1') WITH ORDINALITY a(relid, n) JOIN pg_class c ON c.oid = a.relid))); RESET ROLE`)
		waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_1 was truncated", "the partition holds rows written before that TRUNCATE")
		if out := proc.Output(); strings.Contains(out, "all rows") || strings.Contains(out, "delete them on the target with") {
			t.Errorf("the stop names rows of a partition no one truncated:\n%s", testenv.Tail(out, 5))
		}
		// Nor may it have sluice's user lock a partition it did not just
		// attach or create: the function that adds the trigger refuses.
		_, _, functions := pgstream.SchemaWatchNames(s.slot)
		var done bool
		p.PG(t, `SET ROLE `+role)
		if err := p.Source.QueryRow(context.Background(), `SELECT _sluice.`+functions[2]+`('ev_1'::regclass)`).Scan(&done); err != nil || done {
			t.Errorf("a role without privileges had sluice's function add a trigger to a partition it did not attach (%v, %v)", done, err)
		}
		p.PG(t, `RESET ROLE`)
		s.abort()
	})
	// The event trigger reads a table attached during the sync as the
	// role that attaches it: a foreign table whose server maps every user
	// to a superuser would otherwise run the role's code as one.
	t.Run("foreign partition attached by a role", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, `CREATE TABLE ev (id int NOT NULL, a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (id);
			CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (1000); ALTER TABLE ev_1 REPLICA IDENTITY FULL; ALTER TABLE ev REPLICA IDENTITY FULL;
			INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`, "--tables", "ev")
		role := newRole(t, p, "sluice_app_", "LOGIN")
		p.PG(t, `CREATE EXTENSION IF NOT EXISTS postgres_fdw; GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO `+role+`;
			GRANT CREATE ON SCHEMA public TO `+role+`; ALTER TABLE ev OWNER TO `+role)
		p.PG(t, `SET ROLE `+role+`;
			CREATE FUNCTION become_superuser() RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER ROLE `+role+` SUPERUSER'; RETURN 1; END $$;
			CREATE VIEW bait AS SELECT 1500 AS id, become_superuser() AS a, 1 AS b;
			CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname '`+p.Name+`');
			CREATE USER MAPPING FOR PUBLIC SERVER loopback OPTIONS (user 'postgres');
			CREATE FOREIGN TABLE ev_far (id int NOT NULL, a int NOT NULL, b int NOT NULL) SERVER loopback OPTIONS (table_name 'bait');
			RESET ROLE`)
		ctx := context.Background()
		if _, err := p.Source.Exec(ctx, `SET ROLE `+role+`; ALTER TABLE ev ATTACH PARTITION ev_far FOR VALUES FROM (1000) TO (2000)`); err != nil {
			t.Logf("the attach failed: %v", err)
		}
		p.PG(t, `RESET ROLE`)
		var super bool
		if err := p.Source.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = $1`, role).Scan(&super); err != nil || super {
			t.Errorf("the role that attached a foreign partition became a superuser (%v)", err)
		}
		t.Logf("the sync after the attach: %s", testenv.Tail(proc.Output(), 2))
		s.abort()
	})
	// A partition that writes no WAL is refused before anything starts.
	t.Run("unlogged partition at start", func(t *testing.T) {
		t.Parallel()
		p := newPair(t)
		p.PG(t, partitioned)
		p.PG(t, `ALTER TABLE ev_2 SET UNLOGGED`)
		newSync(t, p.SourceURL, p.TargetURL, "--tables", "ev").refusedAtStart("SLUICE-SYNC-UNLOGGED", "ev_2", "SET LOGGED")
	})
	// A new, empty partition is no change: its rows come through the stream.
	t.Run("partition created", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000)`)
		p.PG(t, `ALTER TABLE ev ADD CONSTRAINT a_positive CHECK (a > 0)`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (1500, 1, 2)`)
		waitTargetRow(t, p, 1500, "row 1500, in the new partition, on the target")
		if stopped, _ := proc.Exited(); stopped {
			t.Fatalf("the sync stopped after a new partition was created:\n%s", testenv.Tail(proc.Output(), 20))
		}
		s.abort()
	})
	// Nor is one created and filled through the table (its rows stream)
	// in the transaction of an ALTER TABLE of the table: only rows it held
	// before it became a partition came without a change in the stream.
	t.Run("filled new partition and the table altered", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, partitioned, "--tables", "ev")
		p.PG(t, `BEGIN; CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (1000) TO (2000); INSERT INTO ev (id, a, b) VALUES (1500, 1, 2);
			UPDATE ev SET b = 3 WHERE id = 1500; ALTER TABLE ev ADD CONSTRAINT a_positive CHECK (a > 0); COMMIT`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (1501, 1, 2)`)
		waitTargetRow(t, p, 1501, "row 1501, written after the transaction, on the target")
		if stopped, _ := proc.Exited(); stopped {
			t.Fatalf("the sync stopped after a partition was created and filled through its table:\n%s", testenv.Tail(proc.Output(), 20))
		}
		var b int
		if err := p.Target.QueryRow(`SELECT b FROM ev WHERE id = 1500`).Scan(&b); err != nil || b != 3 {
			t.Errorf("row 1500 on the target: b = %d (%v), want 3", b, err)
		}
		s.abort()
	})
	// An ALTER TABLE that keeps the shape, and a transaction that ends with
	// the shape it began with (the primary key swapped for an index built
	// beforehand; a column added and dropped), do not stop the sync.
	t.Run("same shape", func(t *testing.T) {
		t.Parallel()
		p, s, proc := syncedEv(t, plain)
		p.PG(t, `ALTER TABLE ev ADD CONSTRAINT a_positive CHECK (a > 0)`)
		p.PG(t, `CREATE UNIQUE INDEX ev_id_new ON ev (id)`)
		p.PG(t, `ALTER TABLE ev DROP CONSTRAINT ev_pkey; ALTER TABLE ev ADD CONSTRAINT ev_pkey PRIMARY KEY USING INDEX ev_id_new`)
		p.PG(t, `ALTER TABLE ev ADD COLUMN tmp int; ALTER TABLE ev DROP COLUMN tmp`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 1, 2)`)
		waitTargetRow(t, p, 101, "row 101 written after the DDL reaches the target")
		if stopped, _ := proc.Exited(); stopped {
			t.Fatalf("the sync stopped after DDL that leaves the table's shape as it was:\n%s", testenv.Tail(proc.Output(), 20))
		}
		s.abort()
	})
}

// TestTruncateWatchWaitsBriefly: sluice's TRUNCATE trigger on a partition
// needs a lock its writers' transactions hold, and writers queue behind
// the request: a partition that a long transaction keeps locked is named in
// a warning (SLUICE-SYNC-NOTRUNCWATCH) and the sync starts without its
// trigger; the running sync adds it within a minute or so of the lock's
// release, and a TRUNCATE of it then stops the sync.
func TestTruncateWatchWaitsBriefly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPair(t)
	p.PG(t, partitioned)
	holder, err := pgx.Connect(ctx, p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, `BEGIN; LOCK TABLE ev_2 IN ROW EXCLUSIVE MODE`); err != nil { // as a writer's transaction holds it
		t.Fatal(err)
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "ev")
	proc := s.start()
	s.waitCaughtUp(90 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "SLUICE-SYNC-NOTRUNCWATCH") || !strings.Contains(out, "public.ev_2") {
		t.Errorf("the sync does not name the partition it could not watch for TRUNCATE:\n%s", testenv.Tail(out, 20))
	}
	if _, tables, _ := testenv.SchemaWatch(t, p.SourceURL, s.slot); tables != 1 {
		t.Errorf("%d partitions have sluice's TRUNCATE trigger while ev_2 is locked, want 1 (ev_1)", tables)
	}
	if _, err := holder.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 100*time.Second, "sluice's TRUNCATE trigger on ev_2 once it is no longer locked", func() bool {
		_, tables, _ := testenv.SchemaWatch(t, p.SourceURL, s.slot)
		return tables == 2
	})
	if out := proc.Output(); !strings.Contains(out, "partitions now watched for TRUNCATE: public.ev_2") {
		t.Errorf("the sync does not say that ev_2 is watched now:\n%s", testenv.Tail(out, 10))
	}
	p.PG(t, `TRUNCATE ev_2`)
	waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "its partition public.ev_2 was truncated")
	s.abort()
}

// TestForeignPartitionWarned: a partition that is a foreign table holds
// rows of another server, whose writes reach no change stream here. The
// sync says so before it copies (naming the partition), and copies its
// rows all the same: verify finds the target equal.
func TestForeignPartitionWarned(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	var fdw bool
	if err := p.Source.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgres_fdw')`).Scan(&fdw); err != nil || !fdw {
		t.Skipf("postgres_fdw is not available on the source server (%v)", err)
	}
	src, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port := src.Hostname(), src.Port()
	if port == "" {
		port = "5432"
	}
	p.PG(t, `CREATE EXTENSION IF NOT EXISTS postgres_fdw;
		CREATE TABLE ev (id int NOT NULL, a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (id); -- no unique key: PostgreSQL's rule for foreign partitions
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (1000);
		ALTER TABLE ev REPLICA IDENTITY FULL; ALTER TABLE ev_1 REPLICA IDENTITY FULL;
		CREATE TABLE archive (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL);
		INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g;
		INSERT INTO archive SELECT g, g, 10 * g FROM generate_series(1000, 1049) g;
		CREATE SERVER archive_server FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '`+host+`', port '`+port+`', dbname '`+p.Name+`');
		CREATE USER MAPPING FOR CURRENT_USER SERVER archive_server OPTIONS (user '`+src.User.Username()+`');
		CREATE FOREIGN TABLE ev_archive PARTITION OF ev FOR VALUES FROM (1000) TO (2000) SERVER archive_server OPTIONS (table_name 'archive')`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "ev")
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "partition public.ev_archive is a foreign table") || !strings.Contains(out, "a sync misses every write to it") {
		t.Errorf("the sync did not warn of the foreign partition:\n%s", testenv.Tail(out, 20))
	}
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id >= 1000`).Scan(&n); err != nil || n != 50 {
		t.Errorf("the target holds %d of the foreign partition's 50 rows (%v)", n, err)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "ev")
	s.abort()
}

// TestSchemaStopThenResume: a sync stopped at a schema change goes on past
// it once run again (the target changed to match), instead of stopping at
// the same change replayed from the slot on every start; the next schema
// change still stops it.
func TestSchemaStopThenResume(t *testing.T) {
	t.Parallel()
	p, s, proc := syncedEv(t, plain)
	p.PG(t, `ALTER TABLE ev ALTER COLUMN a TYPE bigint`)
	p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 5000000000, 1)`)
	waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", "rewrote the values")

	p.My(t, `ALTER TABLE ev MODIFY a BIGINT NOT NULL`)
	proc = s.start()
	waitFor(t, 60*time.Second, "row 101 on the target after the restart", func() bool {
		var a int64
		return p.Target.QueryRow(`SELECT a FROM ev WHERE id = 101`).Scan(&a) == nil && a == 5000000000
	})
	p.PG(t, `INSERT INTO ev (id, a, b) VALUES (102, 1, 1)`)
	s.waitCaughtUp(60 * time.Second) // fails if it stopped
	if stopped, _ := proc.Exited(); stopped {
		t.Fatalf("the sync run again after the target was changed stopped:\n%s", testenv.Tail(proc.Output(), 20))
	}
	p.PG(t, `ALTER TABLE ev ALTER COLUMN b TYPE int USING b + 1`)
	waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", "rewrote the values")
	s.abort()
}

// TestSyncWithoutSuperuser: a source user with REPLICATION that owns its
// tables but is no superuser may not create event triggers. The sync says
// so once (SLUICE-SYNC-NODDLWATCH: which schema changes then go unseen)
// and streams as before; abort, run by the same user, cleans up.
func TestSyncWithoutSuperuser(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	role := newRole(t, p, "sluice_repl_", "LOGIN", "REPLICATION")
	p.PG(t, `GRANT CREATE ON DATABASE `+p.Name+` TO `+role)
	p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL)`)
	p.PG(t, `INSERT INTO ev SELECT g, g FROM generate_series(1, 100) g`)
	p.PG(t, `GRANT SELECT ON ev TO `+role)
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	s := newSync(t, u.String(), p.TargetURL)
	// not the table's owner: PostgreSQL refuses the publication, which is
	// a privilege to grant (exit 4, saying which), not an internal error
	waitStopped(t, s.start(), 4, "SLUICE-SOURCE-PRIVILEGE", "own the migrated tables")
	p.PG(t, `ALTER TABLE ev OWNER TO `+role)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "SLUICE-SYNC-NODDLWATCH") || !strings.Contains(out, "a column dropped and added again") {
		t.Errorf("the sync does not say which schema changes it cannot see without event triggers:\n%s", testenv.Tail(out, 20))
	}
	if events, tables, functions := testenv.SchemaWatch(t, p.SourceURL, s.slot); events+tables+functions != 0 {
		t.Errorf("%d event triggers, %d TRUNCATE triggers and %d functions were created by a user who may not", events, tables, functions)
	}
	p.PG(t, `INSERT INTO ev VALUES (101, 1)`)
	waitTargetRow(t, p, 101, "row 101 on the target")
	s.abort()
}

// TestColumnReaddedWhileStopped: a column dropped and added again in one
// statement while the sync is stopped leaves a notice that matches the table
// as the next run reads it; the column numbers recorded when the table was
// copied tell. The run stops (exit 4) naming the column, and the one after
// it goes on.
func TestColumnReaddedWhileStopped(t *testing.T) {
	t.Parallel()
	p, s, proc := syncedEv(t, plain)
	proc.Kill() // stopped as a crash would
	p.PG(t, `ALTER TABLE ev DROP COLUMN b, ADD COLUMN b int NOT NULL DEFAULT 0`)
	waitStopped(t, s.start(), 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", "column b is another column than the one copied")
	proc = s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 1, 2)`)
	s.waitCaughtUp(60 * time.Second)
	if stopped, _ := proc.Exited(); stopped {
		t.Fatalf("the run after the reported change stopped again:\n%s", testenv.Tail(proc.Output(), 10))
	}
	s.abort()
}

// TestReportedChangeStopsOnce: a change reported in the stream stops the
// sync once, whatever it told: each partition's rewrite of a partitioned
// table told again under the table's name, a column dropped and added
// again (also recorded as the copied column numbers the next start checks).
// The run after the stop goes on.
func TestReportedChangeStopsOnce(t *testing.T) {
	t.Parallel()
	p, s, first := syncedEv(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (id);
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (40); CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (40) TO (80);
		CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (80) TO (1000);
		INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`, "--tables", "ev")
	p.PG(t, `ALTER TABLE ev ALTER COLUMN a TYPE int USING a * 2; ALTER TABLE ev DROP COLUMN b; ALTER TABLE ev ADD COLUMN b int NOT NULL DEFAULT 0`)
	waitStopped(t, first, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", "rewrote the values", "column b is another column")
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 1, 2)`)
	waitTargetRow(t, p, 101, "row 101 on the target after the restart")
	if stopped, _ := proc.Exited(); stopped {
		t.Fatalf("the run after the reported change stopped again:\n%s", testenv.Tail(proc.Output(), 10))
	}
	s.abort()
}

// Source tables of the schema-change tests: ev (id, a, b; 100 rows),
// plain or partitioned.
const (
	plain = `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL);
		INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`
	partitioned = `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (id);
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (50); CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (50) TO (1000);
		INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`
	subpartitioned = `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL) PARTITION BY RANGE (id);
		CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (50);
		CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (50) TO (1000) PARTITION BY RANGE (id);
		CREATE TABLE ev_2a PARTITION OF ev_2 FOR VALUES FROM (50) TO (95); CREATE TABLE ev_2b PARTITION OF ev_2 FOR VALUES FROM (95) TO (1000);
		INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`
)

// newRole creates a role (with attributes, e.g. LOGIN) named after the
// test's database, dropped with what it owns when the test ends.
func newRole(t *testing.T, p *testenv.Pair, prefix string, attributes ...string) string {
	t.Helper()
	role := prefix + p.Name[len(p.Name)-8:]
	p.PG(t, `DROP ROLE IF EXISTS `+role)
	p.PG(t, `CREATE ROLE `+role+` `+strings.Join(attributes, " "))
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+` CASCADE; DROP ROLE `+role) })
	return role
}

// syncedEv runs setup on a new source and starts a sync (with flags) that
// has caught up.
func syncedEv(t *testing.T, setup string, flags ...string) (*testenv.Pair, *syncRun, *testenv.Proc) {
	t.Helper()
	p := newPair(t)
	p.PG(t, setup)
	s := newSync(t, p.SourceURL, p.TargetURL, flags...)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	return p, s, proc
}

// waitTargetRow waits until the target's ev holds the row with id.
func waitTargetRow(t *testing.T, p *testenv.Pair, id int, what string) {
	t.Helper()
	waitFor(t, 60*time.Second, what, func() bool {
		var n int
		return p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = ?`, id).Scan(&n) == nil && n == 1
	})
}

// waitTriggerAlways waits until sluice's TRUNCATE trigger on partition fires
// in every session (tgenabled 'A').
func waitTriggerAlways(t *testing.T, p *testenv.Pair, slot, partition string, timeout time.Duration, what string) {
	t.Helper()
	_, trigger, _ := pgstream.SchemaWatchNames(slot)
	waitFor(t, timeout, what, func() bool {
		var enabled string
		return p.Source.QueryRow(context.Background(), `SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2`, partition, trigger).Scan(&enabled) == nil && enabled == "A"
	})
}

// TestInheritedTableRefused: a read of a table other tables inherit from
// (INHERITS) returns their rows too, while their changes come through the
// stream as theirs: a sync of the parent copied the children's rows and
// then lost every change to them. sync refuses the parent (exit 4, naming
// the children), in the log-based and the events topology, before a slot
// exists; plan warns; a child synced on its own is exact.
func TestInheritedTableRefused(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE par (id int PRIMARY KEY, v int)`)
	p.PG(t, `CREATE TABLE chi (PRIMARY KEY (id)) INHERITS (par)`)
	p.PG(t, `INSERT INTO par SELECT g, g FROM generate_series(1, 10) g`)
	p.PG(t, `INSERT INTO chi SELECT g, g FROM generate_series(101, 110) g`)

	plan := testenv.MustRun(t, 0, "plan", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "par").Stdout
	if !strings.Contains(plan, "inherited by public.chi") {
		t.Errorf("plan of par does not warn that chi inherits from it:\n%s", plan)
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "par")
	s.refusedAtStart("SLUICE-SYNC-INHERITS", "par", "chi")
	r := testenv.Run(t, nil, "sync", "--changes=events", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "par", "--listen", testenv.FreeAddr(t))
	if out := r.Stdout + r.Stderr; r.Exit != 4 || !strings.Contains(out, "SLUICE-SYNC-INHERITS") {
		t.Errorf("an events sync of par: exit %d, want 4 with SLUICE-SYNC-INHERITS\n%s", r.Exit, testenv.Tail(out, 10))
	}

	child := newSync(t, p.SourceURL, p.TargetURL, "--tables", "chi")
	child.start()
	child.waitCaughtUp(60 * time.Second)
	p.PG(t, `UPDATE chi SET v = -1 WHERE id = 101`)
	p.PG(t, `DELETE FROM chi WHERE id = 102`)
	p.PG(t, `INSERT INTO chi VALUES (111, 111)`)
	child.waitCaughtUp(60 * time.Second)
	verifyEqual(t, p.SourceURL, p.TargetURL, "chi")
	child.abort()
}

// TestTableReplacedIsNotResumed: a table dropped and made again, or another
// renamed into its place, stopped the sync, and the next run went on with
// the new table as if it were the one copied: the target kept the old
// table's rows. The next run refuses it, once and every time.
func TestTableReplacedIsNotResumed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, swap string }{
		{"dropped and made again", `BEGIN; DROP TABLE ev; CREATE TABLE ev (id int PRIMARY KEY, a int, b int NOT NULL DEFAULT 0); INSERT INTO ev VALUES (70, 1, 1); COMMIT`},
		{"another renamed into its place", `CREATE TABLE ev_new (id int PRIMARY KEY, a int, b int NOT NULL DEFAULT 0); INSERT INTO ev_new VALUES (70, 1, 1); ALTER TABLE ev RENAME TO ev_old; ALTER TABLE ev_new RENAME TO ev`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, s, proc := syncedEv(t, plain)
			p.PG(t, c.swap)
			select {
			case <-proc.Done():
			case <-time.After(60 * time.Second):
				proc.Kill()
			}
			for range 2 {
				waitStopped(t, s.start(), 4, "SLUICE-SYNC-TABLEREPLACED", "ev")
			}
		})
	}
}

// TestTargetKeyDroppedByHand: the target table's primary key was dropped
// by hand between runs. The next run streamed on: an upsert matched no row
// and added a second one with the same id. It stops, naming the table and
// how to give the key back.
func TestTargetKeyDroppedByHand(t *testing.T) {
	t.Parallel()
	p, s, proc := syncedEv(t, plain)
	proc.Kill()
	<-proc.Done()
	p.My(t, "ALTER TABLE ev DROP PRIMARY KEY, ADD INDEX (id)")
	waitStopped(t, s.start(), 4, "SLUICE-TARGET-SHAPE", "ev", "ADD PRIMARY KEY")
}
