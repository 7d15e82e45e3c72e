package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// sectionFor returns the lines of verify's report from the sample line
// "<kind> key <key>" up to the next sample.
func sectionFor(out, kind, key string) string {
	lines := strings.Split(out, "\n")
	head := fmt.Sprintf("  %s key %s", kind, key)
	for i, l := range lines {
		if l != head {
			continue
		}
		end := i + 1
		for end < len(lines) && strings.HasPrefix(lines[end], "    ") {
			end++
		}
		return strings.Join(lines[i:end], "\n")
	}
	return ""
}

// TestVerifyAndRepair: after a copy, a changed, a deleted and an extra row on
// the target are each reported with both sides' values (exit 1); --repair
// makes the target equal to the source again.
func TestVerifyAndRepair(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price numeric(8,2), tags jsonb)`)
	p.PG(t, `INSERT INTO items SELECT g, 'item ' || g, g * 1.25, jsonb_build_object('n', g) FROM generate_series(1, 500) g`)

	testenv.MustRun(t, 0, args(p, "copy")...)
	testenv.MustRun(t, 0, args(p, "verify")...)

	p.My(t, `UPDATE items SET name = 'tampered', price = 99.99 WHERE id = 20`)
	p.My(t, `DELETE FROM items WHERE id = 300`)
	p.My(t, `INSERT INTO items VALUES (9999, 'intruder', 1.00, '{}')`)

	// small chunks, so the differences fall into different chunks
	r := testenv.MustRun(t, 1, args(p, "verify", "--chunk-rows", "100")...)
	out := r.Stdout
	mustContain(t, "verify output", out,
		"items → items: 500 rows compared, DIFFERENT: 1 changed, 1 missing on the target, 1 extra on the target",
		"verify: DIFFERENT")

	changed := sectionFor(out, "changed", `"20"`)
	if changed == "" {
		t.Errorf("verify does not report key 20 as changed:\n%s", out)
	} else {
		mustContain(t, "the changed row", changed,
			`source: id="20" name="item 20" price="25"`, // canonical decimal: 25.00 is 25
			`target: id="20" name="tampered" price="99.99"`)
	}
	missing := sectionFor(out, "missing", `"300"`)
	if missing == "" {
		t.Errorf("verify does not report key 300 as missing:\n%s", out)
	} else {
		mustContain(t, "the missing row", missing, `source: id="300" name="item 300" price="375"`)
		if strings.Contains(missing, "target:") {
			t.Errorf("a missing row has no target values, but verify shows some:\n%s", missing)
		}
	}
	extra := sectionFor(out, "extra", `"9999"`)
	if extra == "" {
		t.Errorf("verify does not report key 9999 as extra:\n%s", out)
	} else {
		mustContain(t, "the extra row", extra, `target: id="9999" name="intruder" price="1"`)
		if strings.Contains(extra, "source:") {
			t.Errorf("an extra row has no source values, but verify shows some:\n%s", extra)
		}
	}

	r = testenv.MustRun(t, 0, args(p, "verify", "--repair", "--chunk-rows", "100")...)
	mustContain(t, "verify --repair output", r.Stdout, "items → items: 500 rows compared, equal", "verify: EQUAL")

	// the target is the source again, checked without sluice
	got := queryRows(t, p.Target, `SELECT id, name, price, JSON_EXTRACT(tags, '$.n') FROM items
		WHERE id IN (19, 20, 21, 299, 300, 301, 9999) ORDER BY id`)
	want := [][]string{
		{"19", "item 19", "23.75", "19"}, {"20", "item 20", "25.00", "20"}, {"21", "item 21", "26.25", "21"},
		{"299", "item 299", "373.75", "299"}, {"300", "item 300", "375.00", "300"}, {"301", "item 301", "376.25", "301"},
	}
	if !equalRows(got, want) {
		t.Errorf("after --repair the target holds\n%v\nwant\n%v", got, want)
	}
	var sum string
	if err := p.Source.QueryRow(context.Background(), `SELECT count(*) || '/' || sum(price) FROM items`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if got := queryOne(t, p.Target, `SELECT CONCAT(COUNT(*), '/', SUM(price)) FROM items`); got != sum {
		t.Errorf("target count/sum(price) = %s, source %s", got, sum)
	}

	testenv.MustRun(t, 0, args(p, "verify")...)
}

// TestRepairKeepsARowTheSourceGainedMeanwhile: a row that is on the target
// but was not on the source when verify read it may be one the source gained
// since, which a running sync wrote to the target before verify read that.
// --repair must read the source again and keep it: the sync has passed that
// insert and would never write it again. Here the "sync" holds the target
// row's lock (as its apply transaction would) while the source gets the row.
func TestRepairKeepsARowTheSourceGainedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)`)
	p.PG(t, `INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 300) g`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `INSERT INTO items VALUES (777, 'inserted at the source')`) // what the sync applied
	p.My(t, `INSERT INTO items VALUES (888, 'intruder')`)               // a true extra row

	holder := testenv.MySQL(t, p.Name) // the sync's connection
	defer holder.Close()
	tx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT id FROM items WHERE id = 777 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	repair := testenv.StartProc(t, args(p, "verify", "--repair", "--chunk-rows", "100")...)
	// verify has compared and the repair's DELETE waits for the row's lock
	deadline := time.Now().Add(60 * time.Second)
	for queryOne(t, p.Target, `SELECT COUNT(*) FROM information_schema.PROCESSLIST
		WHERE DB = DATABASE() AND INFO LIKE 'DELETE%'`) == "0" {
		if ok, code := repair.Exited(); ok || time.Now().After(deadline) {
			t.Fatalf("verify --repair never got to its delete (exited %v, status %d):\n%s", ok, code, repair.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.PG(t, `INSERT INTO items VALUES (777, 'inserted at the source')`)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	code, ok := repair.Wait(60 * time.Second)
	if !ok || code != 0 {
		t.Fatalf("verify --repair: exit %d (ended %v), want 0:\n%s", code, ok, repair.Output())
	}
	mustContain(t, "verify --repair output", repair.Output(), "items → items: 301 rows compared, equal", "verify: EQUAL")
	if got := queryOne(t, p.Target, `SELECT CONCAT(COUNT(*), '/', COALESCE(MAX(CASE WHEN id = 777 THEN name END), 'gone'))
		FROM items WHERE id IN (777, 888)`); got != "1/inserted at the source" {
		t.Errorf("after --repair rows 777 and 888 on the target: %s, want 1/inserted at the source (777 kept, 888 deleted)", got)
	}
}

// TestVerifyComparesMeaning: verify must not report values that are equal in
// meaning but spelt differently by the two engines (CHAR padding, float text,
// timestamptz in UTC, JSON key order and whitespace), and must still report
// a real change in each of those columns.
func TestVerifyComparesMeaning(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE m (id integer PRIMARY KEY, c char(8), f4 real, f8 double precision,
		tz timestamptz, j json, jb jsonb, u uuid)`)
	p.PG(t, `INSERT INTO m VALUES
		(1, 'ab', 3.1415927, 0.1, '2024-06-01 12:00:00+02', '{"b":1,  "a":2}', '{"z": [1, 2.50], "a": null}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'),
		(2, 'x', 1e-30, 1e300, '1999-12-31 23:59:59.5-08', '[1, {"y":"ü", "x":"\u00e9"}]', '"s"', NULL)`)

	testenv.MustRun(t, 0, args(p, "copy")...)
	r := testenv.MustRun(t, 0, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "m → m: 2 rows compared, equal")

	// rewrite the target's JSON with other key order and spacing: same meaning
	p.My(t, `UPDATE m SET j = '{ "a" : 2 , "b" : 1 }', jb = '{"a":null,"z":[1,2.5]}' WHERE id = 1`)
	r = testenv.MustRun(t, 0, args(p, "verify")...)
	mustContain(t, "verify output after reformatting JSON", r.Stdout, "m → m: 2 rows compared, equal")

	// and real changes, one column at a time (restored from a copy of the row)
	p.My(t, "CREATE TABLE m_saved AS SELECT * FROM m")
	for _, c := range []struct{ column, change string }{
		{"c", "c = 'aB'"},
		{"f4", "f4 = 3.1415925"},
		{"f8", "f8 = 0.1000000001"},
		{"tz", "tz = '2024-06-01 12:00:00'"}, // the local time, not UTC
		{"j", `j = '{"a":2,"b":2}'`},
		{"jb", `jb = '{"a":null,"z":[1,2.51]}'`},
		{"u", "u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'"},
	} {
		p.My(t, "UPDATE m SET "+c.change+" WHERE id = 1")
		r := testenv.Run(t, nil, args(p, "verify")...)
		if r.Exit != 1 || !strings.Contains(r.Stdout, `changed key "1"`) {
			t.Errorf("after UPDATE m SET %s on the target, verify exits %d, want 1 reporting key 1 as changed:\n%s",
				c.change, r.Exit, output(r))
		}
		p.My(t, "UPDATE m JOIN m_saved s USING (id) SET m."+c.column+" = s."+c.column+" WHERE id = 1")
	}
	p.My(t, "DROP TABLE m_saved")
	testenv.MustRun(t, 0, args(p, "verify")...)
}

// TestVerifyUUIDKey verifies a table keyed by uuid in chunks; MariaDB's UUID
// type orders time-based UUIDs differently from PostgreSQL.
func TestVerifyUUIDKey(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE sessions (id uuid PRIMARY KEY, n integer)`)
	// version-1 (time-based) UUIDs, whose MariaDB order is not their text order
	p.PG(t, `INSERT INTO sessions
		SELECT (lpad(to_hex(g * 2654435761 % 4294967296), 8, '0') || '-' || lpad(to_hex(g), 4, '0') || '-11ef-8000-00163e000001')::uuid, g
		FROM generate_series(1, 40) g`)

	testenv.MustRun(t, 0, args(p, "copy", "--chunk-rows", "7")...)
	r := testenv.Run(t, nil, args(p, "verify", "--chunk-rows", "7")...)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "sessions → sessions: 40 rows compared, equal") {
		t.Fatalf("sluice verify of a uuid-keyed table right after copy: exit %d, want 0 and 40 rows equal\n%s", r.Exit, output(r))
	}
	p.My(t, "DELETE FROM sessions WHERE n = 13")
	r = testenv.MustRun(t, 1, args(p, "verify", "--chunk-rows", "7")...)
	mustContain(t, "verify output", r.Stdout, "1 missing on the target")
}

// TestVerifyAfterSkippedRow: after copy --on-bad-row=skip, verify must still
// compare the table and report the rejected row as a difference (exit 1),
// not stop as if the command line were wrong.
func TestVerifyAfterSkippedRow(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE prices (id integer PRIMARY KEY, amount numeric(10,2))`)
	p.PG(t, `INSERT INTO prices VALUES (1, 1.50), (2, 'NaN'), (3, 2.25)`)
	rejects := t.TempDir() + "/rejects.jsonl"
	testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row=skip", "--reject-file", rejects)...)

	r := testenv.Run(t, nil, args(p, "verify")...)
	if r.Exit != 1 {
		t.Fatalf("verify after a skipped bad row: exit %d, want 1 (differences)\n%s", r.Exit, output(r))
	}
	mustContain(t, "verify output", r.Stdout, `key "2"`, "prices → prices: 3 rows compared, DIFFERENT")
}

// TestVerifyTargetDrift: a target column dropped by hand makes verify fail
// naming the column, with an error status, not with "invalid command line"
// (exit 2, which scripts read as their own mistake).
func TestVerifyTargetDrift(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE accounts (id integer PRIMARY KEY, owner text, balance numeric(12,2))`)
	p.PG(t, `INSERT INTO accounts VALUES (1, 'ann', 10), (2, 'bob', 20)`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, "ALTER TABLE accounts DROP COLUMN balance")

	r := testenv.Run(t, nil, args(p, "verify")...)
	if r.Exit == 0 || r.Exit == 1 || r.Exit == 2 {
		t.Errorf("verify with a column missing on the target: exit %d, want an error status other than 2 (usage)\n%s", r.Exit, output(r))
	}
	mustContain(t, "verify output", output(r), "balance")
	if strings.Contains(output(r), "invalid command line") {
		t.Errorf("verify blames the command line for a target schema problem:\n%s", output(r))
	}
}

// TestVerifyMissingTargetTable: a table the target lacks is a schema problem
// (exit 4, SLUICE-VERIFY-TABLE naming it), not a difference; the tables that
// exist are still compared and reported.
func TestVerifyMissingTargetTable(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE kept (id integer PRIMARY KEY, name text NOT NULL)`)
	p.PG(t, `INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, 50) g`)
	p.PG(t, `CREATE TABLE lost (id integer PRIMARY KEY)`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `DROP TABLE lost`)

	r := testenv.MustRun(t, 4, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout+r.Stderr,
		"kept → kept: 50 rows compared, equal", "lost", "SLUICE-VERIFY-TABLE", "does not exist")
}

// TestVerifyKeyThatSortsDifferently: an inet key sorts by address in
// PostgreSQL and as text on the target (VARCHAR), so key ranges select other
// rows on each side. verify must still say EQUAL, and --repair must not
// delete rows that are there (it deleted them when chunks disagreed).
func TestVerifyKeyThatSortsDifferently(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE hosts (addr inet PRIMARY KEY, name text NOT NULL)`)
	p.PG(t, `INSERT INTO hosts VALUES ('9.0.0.1', 'a'), ('10.0.0.2', 'b'), ('10.0.0.10', 'c'), ('192.168.0.1', 'd'), ('2.2.2.2', 'e')`)
	testenv.MustRun(t, 0, args(p, "copy")...)

	r := testenv.MustRun(t, 0, args(p, "verify", "--chunk-rows", "1", "--repair")...)
	mustContain(t, "verify output", r.Stdout, "hosts → hosts: 5 rows compared, equal")
	if n := len(queryRows(t, p.Target, "SELECT addr FROM hosts")); n != 5 {
		t.Errorf("after verify --repair the target has %d of the 5 hosts", n)
	}
}
