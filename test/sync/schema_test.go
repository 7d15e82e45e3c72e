package synctest

import (
	"strings"
	"testing"
	"time"
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
			`INSERT INTO ev (id, a, b, at) VALUES (101, 1, 2, now())`, "another order"},
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
