package integration

import (
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestEnumKeyInItsOwnSchema: a chunk's bounds are cast to the key's type;
// an enum of a schema not on the search_path was named without its schema,
// so every chunk failed ("type mood does not exist") and the copy could
// never finish, however often it was run again.
func TestEnumKeyInItsOwnSchema(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE SCHEMA app`)
	p.PG(t, `CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy')`)
	p.PG(t, `CREATE TABLE app.te (m app.mood, n int, v int, PRIMARY KEY (m, n))`)
	p.PG(t, `INSERT INTO app.te SELECT (ARRAY['sad','ok','happy'])[1 + g % 3]::app.mood, g, g FROM generate_series(1, 3000) g`)
	testenv.MustRun(t, 0, args(p, "copy", "--schema", "app", "--chunk-rows", "400")...)
	r := testenv.MustRun(t, 0, args(p, "verify", "--schema", "app", "--chunk-rows", "400")...)
	mustContain(t, "verify output", r.Stdout, "3000 rows compared, equal")
}

// TestTargetTableThatBehavesOtherwise: an empty target table with sluice's
// very columns was taken whatever its engine and triggers. In MyISAM a
// chunk's rows outlive the rollback of its transaction, so a copy killed
// mid-chunk loaded them twice on resume and then failed on every run; a
// BEFORE INSERT trigger rewrote values while the copy reported ok. Both
// are refused (exit 4, SLUICE-TARGET-SHAPE) with the statement that fixes
// them, and the copy goes through once they are fixed.
func TestTargetTableThatBehavesOtherwise(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE trg (id int PRIMARY KEY, v int NOT NULL)`)
	p.PG(t, `INSERT INTO trg SELECT g, g FROM generate_series(1, 100) g`)
	testenv.MustRun(t, 0, args(p, "plan", "--apply")...)
	p.My(t, `ALTER TABLE trg ENGINE=MyISAM`)
	r := testenv.MustRun(t, 4, args(p, "copy")...)
	mustContain(t, "copy output", output(r), "SLUICE-TARGET-SHAPE", "MyISAM", "ENGINE=InnoDB")

	p.My(t, `ALTER TABLE trg ENGINE=InnoDB`)
	p.My(t, `CREATE TRIGGER zero_v BEFORE INSERT ON trg FOR EACH ROW SET NEW.v = 0`)
	r = testenv.MustRun(t, 4, args(p, "copy")...)
	mustContain(t, "copy output", output(r), "SLUICE-TARGET-SHAPE", "trigger zero_v", "DROP TRIGGER")

	p.My(t, `DROP TRIGGER zero_v`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	if got := queryOne(t, p.Target, "SELECT SUM(v) FROM trg"); got != "5050" {
		t.Errorf("target sum(v) = %s, want 5050", got)
	}
}
