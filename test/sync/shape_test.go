package synctest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSyncRefusesTargetTableOfAnotherShape: an empty target table made by
// the application's ORM takes MariaDB's default collation, under which
// 'Résumé' and 'resume' are one key: streamed into it, the insert of one
// overwrote the other row. The sync refuses such a table at start (exit 4,
// SLUICE-TARGET-SHAPE, naming table, column and both collations) before a
// slot exists; once it is dropped, sluice creates its own and both rows
// arrive.
func TestSyncRefusesTargetTableOfAnotherShape(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE words (w text PRIMARY KEY, n int NOT NULL)`)
	p.PG(t, `INSERT INTO words VALUES ('resume', 1)`)
	p.My(t, `CREATE TABLE words (w varchar(255) PRIMARY KEY, n int NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci`)
	s := newSync(t, p.SourceURL, p.TargetURL)
	s.refusedAtStart("SLUICE-TARGET-SHAPE", "words", "column w", "utf8mb4_general_ci", "utf8mb4_nopad_bin")

	p.My(t, `DROP TABLE words`)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO words VALUES ('Résumé', 2)`)
	s.waitCaughtUp(60 * time.Second)
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM words`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("the target holds %d rows of words; the source holds 2 ('resume' and 'Résumé')", n)
	}
	verifyEqual(t, p.SourceURL, p.TargetURL, "words")
}

// TestSyncStopsOnValueTheTargetWouldChange: a column the mapping sets to
// DECIMAL(10,2) rounds 1.005 with only a note (1265). The copy refused it,
// but the stream stored 1.01; now the sync stops (exit 5,
// SLUICE-APPLY-TARGETWARN, naming table, key and column) with nothing of the
// batch applied, and the plan says the type may change values.
func TestSyncStopsOnValueTheTargetWouldChange(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,3), at timestamp)`)
	p.PG(t, `INSERT INTO prices VALUES (1, 1.250, '2024-01-02 03:04:05')`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  prices:\n    columns:\n      amount: {type: \"DECIMAL(10,2)\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSync(t, p.SourceURL, p.TargetURL, "--config", cfg)
	proc := s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO prices VALUES (2, 1.005, '2024-01-02 03:04:05')`)
	waitStopped(t, proc, 5, "SLUICE-APPLY-TARGETWARN", "prices", "id=2", "amount")
	var n int
	if err := p.Target.QueryRow(`SELECT COUNT(*) FROM prices WHERE id = 2`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the target stored the changed value of row 2")
	}
}
