package synctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestSyncGeneratedColumnAndDomainArray: PostgreSQL 15's change stream
// leaves stored generated columns out, so a sync that keeps one is refused
// at start (exit 4, SLUICE-SYNC-GENERATED, naming table and column and the
// mapping that drops it) with no slot; with the column dropped it streams,
// and no Relation message is taken for a dropped column. An array of a
// domain over integer streams as the copy writes it ([5], not ["5"]).
func TestSyncGeneratedColumnAndDomainArray(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.PG(t, `CREATE DOMAIN posint AS integer CHECK (VALUE > 0)`)
	p.PG(t, `CREATE TABLE items (id int PRIMARY KEY, a int, g int GENERATED ALWAYS AS (a * 2) STORED, ps posint[])`)
	p.PG(t, `INSERT INTO items (id, a, ps) VALUES (1, 1, '{1,2}')`)
	s := newSync(t, p.SourceURL, p.TargetURL, "--tables", "items")
	s.refusedAtStart("SLUICE-SYNC-GENERATED", "items", "column g", "drop: true")

	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  items:\n    columns:\n      g: {drop: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.flags = append(s.flags, "--config", cfg)
	s.start()
	s.waitCaughtUp(60 * time.Second)
	p.PG(t, `INSERT INTO items (id, a, ps) VALUES (2, 5, '{3,4}')`)
	p.PG(t, `UPDATE items SET a = 7, ps = '{5}' WHERE id = 1`)
	s.waitCaughtUp(60 * time.Second)

	rows, err := p.Target.Query(`SELECT id, a, ps FROM items ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, a, ps string
		if err := rows.Scan(&id, &a, &ps); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+" "+a+" "+ps)
	}
	rows.Close()
	if want := []string{"1 7 [5]", "2 5 [3,4]"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("target items holds %q, want %q", got, want)
	}
	r := testenv.Run(t, nil, "verify", "--source", p.SourceURL, "--target", p.TargetURL, "--tables", "items", "--config", cfg)
	if r.Exit != 0 || !strings.Contains(r.Stdout, "verify: EQUAL") {
		t.Errorf("sluice verify: exit %d, want 0 and EQUAL\n%s%s", r.Exit, r.Stdout, testenv.Tail(r.Stderr, 20))
	}
	s.abort()
}
