package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// pascal maps the PostgreSQL script's snake_case names to the MySQL script's
// PascalCase ones: album_id → AlbumId, invoice_line → InvoiceLine. Every
// table and column of Chinook 1.4.5 follows this rule (the test fails on a
// name the reference does not have).
func pascal(snake string) string {
	parts := strings.Split(snake, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// trailingZeroFraction matches a DATETIME fraction of zeros only.
var trailingZeroFraction = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.0+$`)

// normalise removes the differences that are legitimate between sluice's
// target and the official MySQL script, and nothing else; reference says v
// comes from the MySQL script's database:
//
//   - DATETIME fraction: PostgreSQL's timestamp keeps microseconds, so sluice
//     creates DATETIME(6) and the server prints "2009-01-01 00:00:00.000000";
//     the reference script declares DATETIME (no fraction) and prints
//     "2009-01-01 00:00:00". An all-zero fraction is dropped; a non-zero one
//     is kept, so a lost or invented fraction still shows as a difference.
//   - Trailing spaces of reference strings: both scripts write the city
//     N'Edinburgh ' (8 cells), but in PostgreSQL N'…' is a character(n)
//     literal, whose trailing spaces are dropped when it is stored in a
//     varchar column; the source itself holds 'Edinburgh', which verify
//     checks against the target exactly. Only the reference side is trimmed,
//     so spaces sluice added would still show.
//
// Not normalised, because the declared types agree: integers (INT on both
// sides), DECIMAL(10,2) (NUMERIC(10,2) on both sides, same scale, so the
// same text), and the text itself (the reference's NVARCHAR is utf8mb3,
// sluice's VARCHAR utf8mb4; read over a utf8mb4 connection it is the same).
func normalise(dataType, v string, reference bool) string {
	switch {
	case dataType == "datetime":
		if m := trailingZeroFraction.FindStringSubmatch(v); m != nil {
			return m[1]
		}
	case dataType == "varchar" && reference:
		return strings.TrimRight(v, " ")
	}
	return v
}

// loadChinookPG loads the PostgreSQL script into the pair's source database,
// without its DROP DATABASE / CREATE DATABASE / \c lines.
func loadChinookPG(t *testing.T, p *testenv.Pair, script string) {
	t.Helper()
	var kept []string
	for _, line := range strings.Split(script, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "DROP DATABASE") || strings.HasPrefix(l, "CREATE DATABASE") || strings.HasPrefix(l, `\c `) {
			continue
		}
		kept = append(kept, line)
	}
	file := filepath.Join(t.TempDir(), "chinook_pg.sql")
	if err := os.WriteFile(file, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", p.SourceURL, "-f", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql -f Chinook_PostgreSql.sql: %v\n%s", err, out)
	}
}

// loadChinookRef loads the official MySQL script into database db.
func loadChinookRef(t *testing.T, db, script string) {
	t.Helper()
	var b strings.Builder
	// The MySQL script writes names such as 'Cavalleria Rusticana \ Act \
	// Intermezzo Sinfonico' with a bare backslash, as the PostgreSQL script
	// does; MariaDB's default sql_mode would read "\ " as an escape and drop
	// the backslash. NO_BACKSLASH_ESCAPES loads the text the author wrote.
	b.WriteString("SET NAMES utf8mb4;\nSET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n")
	for _, line := range strings.Split(script, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "DROP DATABASE"), strings.HasPrefix(l, "CREATE DATABASE"):
			continue // the test creates and drops the database
		case strings.HasPrefix(l, "USE "):
			line = "USE `" + db + "`;"
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	cmd := exec.Command("mariadb", "-uroot", "-h127.0.0.1", db)
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb < Chinook_MySql.sql: %v\n%s", err, out)
	}
}

// TestChinook migrates the Chinook sample database and compares every cell
// with the official MySQL version of the same data.
func TestChinook(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	dir := filepath.Join(testenv.FixturesDir(t), "chinook")
	pgScript, err := os.ReadFile(filepath.Join(dir, "Chinook_PostgreSql.sql"))
	if err != nil {
		t.Fatal(err)
	}
	myScript, err := os.ReadFile(filepath.Join(dir, "Chinook_MySql.sql"))
	if err != nil {
		t.Fatal(err)
	}

	refName := p.Name + "_ref"
	admin := testenv.MySQL(t, "")
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS `" + refName + "`")
		admin.Close()
	})
	if _, err := admin.Exec("DROP DATABASE IF EXISTS `" + refName + "`"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE `" + refName + "` CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	refDone := make(chan struct{})
	go func() { // the two loads use different servers: run them side by side
		defer close(refDone)
		loadChinookRef(t, refName, string(myScript))
	}()
	loadChinookPG(t, p, string(pgScript))
	<-refDone
	if t.Failed() {
		t.FailNow()
	}
	ref := testenv.MySQL(t, refName)
	defer ref.Close()

	// small chunks, several at once: integer ranges for the single-column
	// keys, key-scan boundaries for playlist_track's composite key
	testenv.MustRun(t, 0, args(p, "copy", "--chunk-rows", "1000", "--parallel", "3")...)

	// the tables of the source, which the copy must have created
	pgTables, err := p.Source.Query(context.Background(),
		`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for pgTables.Next() {
		var name string
		if err := pgTables.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	pgTables.Close()
	if len(tables) != 11 {
		t.Fatalf("the PostgreSQL script created %d tables, want Chinook's 11: %v", len(tables), tables)
	}

	var diffs []string
	cells := 0
	for _, table := range tables {
		refTable := pascal(table)
		cols := queryRows(t, p.Target, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`, table)
		refCols := queryOne(t, ref, `SELECT COUNT(*) FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name = ?`, refTable)
		if fmt.Sprint(len(cols)) != refCols {
			t.Errorf("%s has %d columns on the target, the reference %s has %s", table, len(cols), refTable, refCols)
			continue
		}
		key := queryRows(t, p.Target, `SELECT column_name FROM information_schema.key_column_usage
			WHERE table_schema = DATABASE() AND table_name = ? AND constraint_name = 'PRIMARY' ORDER BY ordinal_position`, table)
		if len(key) == 0 {
			t.Errorf("%s has no primary key on the target", table)
			continue
		}
		var sel, refSel, order, refOrder []string
		for _, c := range cols {
			sel = append(sel, "`"+c[0]+"`")
			refSel = append(refSel, "`"+pascal(c[0])+"`")
		}
		for _, k := range key {
			order = append(order, "`"+k[0]+"`")
			refOrder = append(refOrder, "`"+pascal(k[0])+"`")
		}
		got := queryRows(t, p.Target, "SELECT "+strings.Join(sel, ", ")+" FROM `"+table+"` ORDER BY "+strings.Join(order, ", "))
		want := queryRows(t, ref, "SELECT "+strings.Join(refSel, ", ")+" FROM `"+refTable+"` ORDER BY "+strings.Join(refOrder, ", "))
		var srcCount int
		if err := p.Source.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&srcCount); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) != srcCount || srcCount == 0 {
			t.Errorf("%s: %d rows on the source, %d on the target, %d in the reference %s", table, srcCount, len(got), len(want), refTable)
			continue
		}
		for r := range got {
			for c := range cols {
				cells++
				g, w := normalise(cols[c][1], got[r][c], false), normalise(cols[c][1], want[r][c], true)
				if g != w {
					diffs = append(diffs, fmt.Sprintf("%s row %s=%s column %s: target %q, reference %q",
						table, key[0][0], got[r][0], cols[c][0], got[r][c], want[r][c]))
				}
			}
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%d of %d cells differ from the reference; the first ones:\n  %s", len(diffs), cells,
			strings.Join(diffs[:min(len(diffs), 10)], "\n  "))
	}
	t.Logf("compared %d cells of %d tables", cells, len(tables))

	// Foreign keys: as many as the script declares, joining the same columns.
	declared := strings.Count(string(pgScript), "FOREIGN KEY")
	if n := queryOne(t, p.Target, `SELECT COUNT(*) FROM information_schema.referential_constraints
		WHERE constraint_schema = DATABASE()`); n != fmt.Sprint(declared) {
		t.Errorf("target has %s foreign keys, the PostgreSQL script declares %d", n, declared)
	}
	fkQuery := `SELECT table_name, column_name, referenced_table_name, referenced_column_name
		FROM information_schema.key_column_usage
		WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL`
	var gotFKs, wantFKs []string
	for _, fk := range queryRows(t, p.Target, fkQuery) {
		gotFKs = append(gotFKs, fmt.Sprintf("%s.%s → %s.%s", pascal(fk[0]), pascal(fk[1]), pascal(fk[2]), pascal(fk[3])))
	}
	for _, fk := range queryRows(t, ref, fkQuery) {
		wantFKs = append(wantFKs, fmt.Sprintf("%s.%s → %s.%s", fk[0], fk[1], fk[2], fk[3]))
	}
	sort.Strings(gotFKs)
	sort.Strings(wantFKs)
	if strings.Join(gotFKs, "\n") != strings.Join(wantFKs, "\n") {
		t.Errorf("target foreign keys (PascalCased):\n  %s\nreference foreign keys:\n  %s",
			strings.Join(gotFKs, "\n  "), strings.Join(wantFKs, "\n  "))
	}

	r := testenv.MustRun(t, 0, args(p, "verify", "--chunk-rows", "777")...)
	mustContain(t, "verify output", r.Stdout, "verify: EQUAL (11 tables", "playlist_track → playlist_track: 8715 rows compared, equal")
}
