package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// Each test here changes the target by hand in a way verify once missed
// (saying EQUAL) or could not read (failing with an internal error): it
// must report the row as different, exit 1.

// TestVerifyCharKeyRowOutsideRanges: MariaDB's index on a CHAR key sorts
// values padded with spaces ('a    ' after 'a\t'), while a range condition
// compares them unpadded, so a row 'a' added on the target fell between
// two key ranges and was never read: verify said equal.
func TestVerifyCharKeyRowOutsideRanges(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE codes (code char(5) PRIMARY KEY, label text)`)
	p.PG(t, `INSERT INTO codes SELECT to_char(i, 'FM00000'), 'n' || i FROM generate_series(0, 20) i`)
	p.PG(t, `INSERT INTO codes VALUES (E'a\t', 'tab'), ('b', 'b')`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `INSERT INTO codes VALUES ('a', 'stale')`)

	r := testenv.MustRun(t, 1, args(p, "verify", "--chunk-rows", "2")...)
	mustContain(t, "verify output", r.Stdout, "codes → codes: 23 rows compared, DIFFERENT", "1 extra", `extra key "a"`)
}

// TestVerifyJSONDuplicateKey: MariaDB reads the first of a key given twice
// in a JSON document, jsonb the last; a target document with "plan" twice
// compared equal once decoded into a map.
func TestVerifyJSONDuplicateKey(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE docs (id int PRIMARY KEY, body jsonb)`)
	p.PG(t, `INSERT INTO docs VALUES (1, '{"plan": "free", "limit": 10}'), (2, '{"b": 1, "a": [1, {"y": 2, "x": 1}]}')`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	testenv.MustRun(t, 0, args(p, "verify")...) // key order and spacing alone are no difference
	p.My(t, `UPDATE docs SET body = '{"limit": 10, "plan": "enterprise", "plan": "free"}' WHERE id = 1`)

	r := testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "docs → docs: 2 rows compared, DIFFERENT: 1 changed", `changed key "1"`)
}

// TestVerifyUnreadableTargetValue: a 2 written by hand into a BOOLEAN
// (TINYINT(1)) column is no boolean; verify stopped with an internal error
// instead of reporting the row.
func TestVerifyUnreadableTargetValue(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE flags (id int PRIMARY KEY, b boolean)`)
	p.PG(t, `INSERT INTO flags VALUES (1, true), (2, false)`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `UPDATE flags SET b = 2 WHERE id = 1`)

	r := testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "flags → flags: 2 rows compared, DIFFERENT: 1 changed", `changed key "1"`, "cannot be read")
}

// TestVerifyLongCharTrailingSpace: char(300) becomes VARCHAR(300), which
// keeps trailing spaces (the copy trims the source's padding); a space
// added on the target was compared away as CHAR padding.
func TestVerifyLongCharTrailingSpace(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE notes (id int PRIMARY KEY, n char(300), free bpchar)`)
	p.PG(t, `INSERT INTO notes VALUES (1, 'x', 'y'), (2, 'z', 'w  ')`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	testenv.MustRun(t, 0, args(p, "verify")...)
	p.My(t, `UPDATE notes SET n = 'x ' WHERE id = 1`)
	p.My(t, `UPDATE notes SET free = 'w ' WHERE id = 2`)

	r := testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "notes → notes: 2 rows compared, DIFFERENT: 2 changed")
}

// TestVerifyTimestampMappedToDate: a timestamp column the mapping sets to
// DATE (the copy refuses a time of day it would drop, MariaDB notes it)
// failed every verify with "is not a timestamp" instead of comparing: the
// copied rows are equal, a date changed on the target is reported.
func TestVerifyTimestampMappedToDate(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE ev (id int PRIMARY KEY, at timestamp)`)
	p.PG(t, `INSERT INTO ev VALUES (1, '2020-01-01 00:00:00'), (2, '2020-01-02 00:00:00')`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  ev:\n    columns:\n      at: {type: DATE}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)
	r := testenv.MustRun(t, 0, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout, "ev → ev: 2 rows compared, equal")
	p.My(t, `UPDATE ev SET at = '2020-01-03' WHERE id = 2`)
	r = testenv.MustRun(t, 1, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout, "ev → ev: 2 rows compared, DIFFERENT: 1 changed", `changed key "2"`)
}

// TestArrayBoundsRefused: to_json drops an array's bounds, so
// '[2:3]={1,2}' was stored as [1,2], equal to '{1,2}', and verify (which
// reads the source the same way) said EQUAL. Such a value is now a bad
// row, named with its column; an ordinary array still copies.
func TestArrayBoundsRefused(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE arr (id int PRIMARY KEY, a int[])`)
	p.PG(t, `INSERT INTO arr VALUES (1, '{1,2}'), (2, '[2:3]={1,2}'), (3, '{}'), (4, NULL)`)
	r := testenv.MustRun(t, 5, args(p, "copy")...)
	mustContain(t, "copy output", output(r), "column a", "[2:3]", "does not start at index 1")
	p.PG(t, `UPDATE arr SET a = '{1,2}' WHERE id = 2`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	testenv.MustRun(t, 0, args(p, "verify")...)
}

// TestVerifyRowsWhoseKeyTheTargetCannotHold: float keys NaN and ±Infinity
// have no MySQL form; the copy rejects their rows. verify keyed all of
// them NULL, so they collided and were shown as one; each is a missing row
// of its own, named by its key.
func TestVerifyRowsWhoseKeyTheTargetCannotHold(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE f (k float8 PRIMARY KEY, v int)`)
	p.PG(t, `INSERT INTO f VALUES (1, 1), ('NaN', 2), ('Infinity', 3), ('-Infinity', 4)`)
	testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row", "skip", "--reject-file", filepath.Join(t.TempDir(), "rejects.jsonl"))...)
	r := testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "3 missing on the target", "missing key NaN", "missing key Infinity", "missing key -Infinity")
}

// TestVerifyKeyGivenATypeByTheMapping: an int key the mapping keeps as
// VARCHAR sorts '10' before '9' on the target, so key ranges selected other
// rows on each side: verify counted rows missing in one range and extra in
// another, and --repair deleted correct rows. Such a table is compared in
// one piece.
func TestVerifyKeyGivenATypeByTheMapping(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE ik (id int PRIMARY KEY, v int)`)
	p.PG(t, `INSERT INTO ik SELECT g, g FROM generate_series(1, 100) g`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  ik:\n    columns:\n      id: {type: \"VARCHAR(20)\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...)
	testenv.MustRun(t, 0, args(p, "verify", "--config", cfg, "--chunk-rows", "10")...)
	p.My(t, `UPDATE ik SET v = 0 WHERE id = '42'`)
	r := testenv.MustRun(t, 0, args(p, "verify", "--config", cfg, "--chunk-rows", "10", "--repair")...)
	mustContain(t, "verify --repair output", r.Stdout, "ik → ik: 100 rows compared, equal (after repairing 1 rows)")
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM ik WHERE v = CAST(id AS SIGNED)`).Scan(&n); err != nil || n != 100 {
		t.Errorf("rows on the target equal to the source's after the repair: %d (%v), want 100", n, err)
	}
}

// TestVerifyKeyBoundTheTargetCannotHold: a key range bound of 'infinity'
// (a timestamp the target cannot hold, copied with --on-bad-row skip) made
// verify stop with an internal error whenever a chunk boundary fell on it;
// such a table is compared in one piece and the rows are reported.
func TestVerifyKeyBoundTheTargetCannotHold(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE hist (id int, valid_to timestamp, v text, PRIMARY KEY (id, valid_to))`)
	p.PG(t, `INSERT INTO hist SELECT g, CASE WHEN g % 2 = 0 THEN 'infinity'::timestamp ELSE '2024-01-01' END, 'v' FROM generate_series(1, 40) g`)
	testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row", "skip", "--reject-file", filepath.Join(t.TempDir(), "rejects.jsonl"))...)
	r := testenv.MustRun(t, 1, args(p, "verify", "--chunk-rows", "5")...)
	mustContain(t, "verify output", r.Stdout, "20 missing on the target")
}

// TestVerifyUnreadableTargetKey: a 2 written by hand into a BOOLEAN key
// column made verify stop with an internal error; the row is extra (no
// source row has that key), and --repair deletes it and copies the source's.
func TestVerifyUnreadableTargetKey(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE bk (id int, flag boolean, v text, PRIMARY KEY (id, flag))`)
	p.PG(t, `INSERT INTO bk VALUES (1, true, 'a'), (2, false, 'b')`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `UPDATE bk SET flag = 2 WHERE id = 2`)
	r := testenv.MustRun(t, 1, args(p, "verify")...)
	mustContain(t, "verify output", r.Stdout, "1 missing on the target", "1 extra")
	testenv.MustRun(t, 0, args(p, "verify", "--repair")...)
}

// TestVerifyRepairAroundABadRow: a source row the target cannot hold (a
// NaN numeric, skipped by the copy) made --repair stop with
// SLUICE-COPY-BADROW, repairing nothing, in that table or the next. It
// stays missing, reported, and the other rows are repaired.
func TestVerifyRepairAroundABadRow(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,2)); INSERT INTO prices VALUES (1, 1.50), (2, 'NaN'), (3, 2.25)`)
	p.PG(t, `CREATE TABLE zz (id int PRIMARY KEY, v text); INSERT INTO zz VALUES (1, 'a')`)
	testenv.MustRun(t, 0, args(p, "copy", "--on-bad-row", "skip", "--reject-file", filepath.Join(t.TempDir(), "rejects.jsonl"))...)
	p.My(t, `UPDATE prices SET amount = 9 WHERE id = 3`)
	p.My(t, `UPDATE zz SET v = 'b'`)
	r := testenv.MustRun(t, 1, args(p, "verify", "--repair")...)
	mustContain(t, "verify --repair output", r.Stdout, "prices → prices: 3 rows compared, DIFFERENT: 0 changed, 1 missing on the target", `missing key "2"`,
		"zz → zz: 1 rows compared, equal (after repairing 1 rows)")
	var amount string
	if err := p.Target.QueryRow(`SELECT amount FROM prices WHERE id = 3`).Scan(&amount); err != nil || amount != "2.25" {
		t.Errorf("prices row 3 on the target after the repair: %q (%v), want 2.25", amount, err)
	}
}

// TestVerifyRepairKeyless: rows of a table without a key are not told
// apart, so --repair cannot fix them row by row; it said it had repaired
// the extra rows while changing nothing.
func TestVerifyRepairKeyless(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE kl (a int, b text); ALTER TABLE kl REPLICA IDENTITY FULL; INSERT INTO kl VALUES (1, 'x'), (1, 'x'), (2, 'y')`)
	// as a sync leaves it (copy refuses a table without a key), one copy of
	// (1, x) short and a row the source lacks
	p.My(t, `CREATE TABLE kl (a int, b longtext); INSERT INTO kl VALUES (1, 'x'), (2, 'y'), (3, 'z')`)
	r := testenv.MustRun(t, 1, args(p, "verify", "--repair")...)
	mustContain(t, "verify --repair output", r.Stdout+r.Stderr, "1 missing on the target", "1 extra", "SLUICE-VERIFY-NOREPAIR")
	if strings.Contains(r.Stdout, "after repairing") {
		t.Errorf("verify --repair claims a repair of a keyless table:\n%s", r.Stdout)
	}
}
