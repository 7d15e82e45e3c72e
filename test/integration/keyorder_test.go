package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/testenv"
)

// TestKeyOrderEdges: verify compares a table in key ranges only when both
// sides order the key alike, or it reports rows of one range as missing
// and the same rows as extra in another, and --repair deleted correctly
// copied rows for good. A "char" key (bytes past 127 print as \ooo) did
// not; nor does a text key in a database whose encoding is not UTF8
// (COLLATE "C" orders its bytes). A bool key bound read as "true" had no
// target form, so the whole table was compared in one piece; and an
// invalid unique index (a failed CREATE INDEX CONCURRENTLY) was taken as
// the row key though it enforces nothing.
func TestKeyOrderEdges(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE kch (k "char" PRIMARY KEY, v int)`)
	p.PG(t, `INSERT INTO kch SELECT chr(g)::"char", g FROM generate_series(65, 70) g`)
	p.PG(t, `INSERT INTO kch SELECT ('\' || to_char(g, 'FM000'))::"char", g FROM (VALUES (201), (202), (203), (377)) x(g)`)
	p.PG(t, `INSERT INTO kch VALUES ('\\'::"char", 92), ('['::"char", 91), ('a', 97), ('z', 122)`)
	p.PG(t, `CREATE TABLE kb (b bool, i int, PRIMARY KEY (b, i))`)
	p.PG(t, `INSERT INTO kb SELECT g % 2 = 0, g FROM generate_series(1, 30) g`)
	testenv.MustRun(t, 0, args(p, "copy", "--tables", "kch,kb", "--chunk-rows", "3")...)
	r := testenv.MustRun(t, 0, args(p, "verify", "--tables", "kch,kb", "--chunk-rows", "3", "--repair")...)
	if strings.Contains(output(r), "in one piece") && strings.Contains(output(r), `"true"`) {
		t.Errorf("verify compared kb in one piece: its bool key bound had no target form\n%s", output(r))
	}
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM kch`); n != "14" {
		t.Errorf("after verify --repair the target's kch holds %s rows; want the 14 copied", n)
	}

	p.PG(t, `CREATE TABLE inv (k int NOT NULL, v text)`)
	p.PG(t, `INSERT INTO inv VALUES (1, 'a'), (1, 'b'), (2, 'c')`)
	if _, err := p.Source.Exec(context.Background(), `CREATE UNIQUE INDEX CONCURRENTLY inv_k ON inv (k)`); err == nil {
		t.Fatal("CREATE UNIQUE INDEX over duplicates succeeded; the test needs it to fail and leave an invalid index")
	}
	r = testenv.MustRun(t, 4, args(p, "plan", "--tables", "inv")...)
	mustContain(t, "plan of a table whose only unique index is invalid", output(r), "SLUICE-SCHEMA-NOKEY", "inv")
}

// TestTextKeyInAWin1252Database: in a WIN1252 database COLLATE "C" orders
// text by WIN1252 bytes ('€' is 0x80, before 'é' 0xE9), not by the code
// points MariaDB's binary collation orders by ('é' U+00E9 before '€'
// U+20AC). Compared in key ranges, verify called the copy different and
// --repair deleted rows of it.
func TestTextKeyInAWin1252Database(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	name := p.Name + "_w1252"
	p.PG(t, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	p.PG(t, `CREATE DATABASE `+name+` ENCODING 'WIN1252' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`)
	t.Cleanup(func() { p.PG(t, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	srcURL := strings.TrimSuffix(p.SourceURL, p.Name) + name
	ctx := context.Background()
	src, err := pgx.Connect(ctx, srcURL+"?client_encoding=UTF8")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	for _, q := range []string{`CREATE TABLE w (k text PRIMARY KEY, v int)`,
		`INSERT INTO w VALUES ('a', 1), ('b', 2), ('é', 3), ('€', 4), ('ÿ', 5), ('Ž', 6), ('z', 7), ('œ', 8), ('ü', 9), ('”', 10)`} {
		if _, err := src.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	testenv.MustRun(t, 0, "copy", "--source", srcURL, "--target", p.TargetURL, "--tables", "w", "--chunk-rows", "2")
	testenv.MustRun(t, 0, "verify", "--source", srcURL, "--target", p.TargetURL, "--tables", "w", "--chunk-rows", "2", "--repair")
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM w WHERE k IN ('é', '€', 'Ž', '”')`); n != "4" {
		t.Errorf("after verify --repair the target holds %s of the 4 non-ASCII keys; want all 4 as copied", n)
	}
}
