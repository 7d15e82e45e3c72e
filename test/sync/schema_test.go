package synctest

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestSchemaChangeStopsSync: a column added to a migrated table while it
// streams stops the sync with a message naming the table and the column
// (exit 4), instead of writing rows the target cannot hold correctly; and
// no row after the change reaches the target.
func TestSchemaChangeStopsSync(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	createOrders(t, p, 2000)
	s := newSync(t, p.SourceURL, p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)

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
			`INSERT INTO ev (id, a, b, at) VALUES (101, 1, 2, now())`, "column a was dropped or renamed"},
		{"typmod", `ALTER TABLE ev ALTER COLUMN at TYPE timestamp(6)`, `INSERT INTO ev (id, a, b, at) VALUES (101, 1, 2, '2024-01-01 10:00:00.987654')`, "column at changed its length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL, at timestamp(0))`)
			p.PG(t, `INSERT INTO ev SELECT g, g, 10 * g, '2024-01-01 10:00:00' FROM generate_series(1, 100) g`)
			s := newSync(t, p.SourceURL, p.TargetURL)
			proc := s.start()
			s.waitCaughtUp(60 * time.Second)
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
// USING on the same type, a dropped table. sluice's event trigger records
// each in the WAL, and the sync stops at it (exit 4) even when no write
// follows; a write after it does not reach the target. An ALTER TABLE that
// keeps the shape (a CHECK constraint) does not stop it. abort removes the
// triggers.
func TestSchemaChangesTheStreamCannotShow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, ddl, want string
	}{
		{"readd", `ALTER TABLE ev DROP COLUMN b; ALTER TABLE ev ADD COLUMN b int NOT NULL DEFAULT 0`, "column b was dropped"},
		{"typeback", `ALTER TABLE ev ALTER COLUMN a TYPE bigint; ALTER TABLE ev ALTER COLUMN a TYPE int`, "rewrote the values"},
		{"using", `ALTER TABLE ev ALTER COLUMN a TYPE int USING a * 2`, "rewrote the values"},
		{"dropped", `DROP TABLE ev`, "it was dropped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL)`)
			p.PG(t, `INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`)
			s := newSync(t, p.SourceURL, p.TargetURL)
			proc := s.start()
			s.waitCaughtUp(60 * time.Second)
			if triggers, functions := testenv.SchemaWatch(t, p.SourceURL, s.slot); triggers != 3 || functions != 1 {
				t.Fatalf("the running sync has %d event triggers and %d functions on the source, want 3 and 1", triggers, functions)
			}
			p.PG(t, c.ddl)
			waitStopped(t, proc, 4, "SLUICE-SYNC-SCHEMACHANGE", "ev", c.want)
			if c.name != "dropped" {
				p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 1, 2)`)
				var n int
				if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 101`).Scan(&n); err != nil || n != 0 {
					t.Errorf("a write after the change reached the target (%d rows, %v)", n, err)
				}
			}
			s.abort()
		})
	}
	t.Run("same shape", func(t *testing.T) {
		t.Parallel()
		p := newPair(t)
		p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL)`)
		p.PG(t, `INSERT INTO ev SELECT g, g, 10 * g FROM generate_series(1, 100) g`)
		s := newSync(t, p.SourceURL, p.TargetURL)
		proc := s.start()
		s.waitCaughtUp(60 * time.Second)
		p.PG(t, `ALTER TABLE ev ADD CONSTRAINT a_positive CHECK (a > 0)`)
		p.PG(t, `INSERT INTO ev (id, a, b) VALUES (101, 1, 2)`)
		waitFor(t, 60*time.Second, "row 101 written after the constraint reaches the target", func() bool {
			var n int
			return p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 101`).Scan(&n) == nil && n == 1
		})
		if stopped, _ := proc.Exited(); stopped {
			t.Fatalf("the sync stopped after an ALTER TABLE that keeps the table's shape:\n%s", testenv.Tail(proc.Output(), 20))
		}
		s.abort()
	})
}

// TestSyncWithoutSuperuser: a source user with REPLICATION that owns its
// tables but is no superuser may not create event triggers. The sync says
// so once (SLUICE-SYNC-NODDLWATCH: which schema changes then go unseen)
// and streams as before; abort, run by the same user, cleans up.
func TestSyncWithoutSuperuser(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	role := "sluice_repl_" + p.Name[len(p.Name)-8:]
	p.PG(t, `DROP ROLE IF EXISTS `+role)
	p.PG(t, `CREATE ROLE `+role+` LOGIN REPLICATION`)
	p.PG(t, `GRANT CREATE ON DATABASE `+p.Name+` TO `+role)
	t.Cleanup(func() { p.PG(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, a int NOT NULL)`)
	p.PG(t, `ALTER TABLE ev OWNER TO `+role)
	p.PG(t, `INSERT INTO ev SELECT g, g FROM generate_series(1, 100) g`)
	u, err := url.Parse(p.SourceURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	s := newSync(t, u.String(), p.TargetURL)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	if out := proc.Output(); !strings.Contains(out, "SLUICE-SYNC-NODDLWATCH") || !strings.Contains(out, "a column dropped and added again") {
		t.Errorf("the sync does not say which schema changes it cannot see without event triggers:\n%s", testenv.Tail(out, 20))
	}
	if triggers, _ := testenv.SchemaWatch(t, p.SourceURL, s.slot); triggers != 0 {
		t.Errorf("%d event triggers were created by a user who may not", triggers)
	}
	p.PG(t, `INSERT INTO ev VALUES (101, 1)`)
	waitFor(t, 60*time.Second, "row 101 on the target", func() bool {
		var n int
		return p.Target.QueryRow(`SELECT COUNT(*) FROM ev WHERE id = 101`).Scan(&n) == nil && n == 1
	})
	s.abort()
}
