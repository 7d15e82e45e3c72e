package integration

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

// null stands for SQL NULL in rows read by queryRows.
const null = "<NULL>"

// queryRows runs q on the target and returns every row as strings, exactly as
// the server sends them over the text protocol; NULL becomes null.
func queryRows(t testing.TB, db *sql.DB, q string, args ...any) [][]string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("MariaDB: %s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("MariaDB: %s: %v", q, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if v == nil {
				row[i] = null
			} else {
				row[i] = string(v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("MariaDB: %s: %v", q, err)
	}
	return out
}

// queryOne returns the single value q selects on the target.
func queryOne(t testing.TB, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows := queryRows(t, db, q, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("MariaDB: %s: got %d rows, want one value: %v", q, len(rows), rows)
	}
	return rows[0][0]
}

// output is everything a command printed.
func output(r testenv.Result) string { return r.Stdout + r.Stderr }

// mustContain fails unless every want occurs in got.
func mustContain(t testing.TB, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not mention %q:\n%s", what, w, got)
		}
	}
}

// args joins the pair's connection flags with a command and its flags.
func args(p *testenv.Pair, cmd string, extra ...string) []string {
	return append(append([]string{cmd}, p.Args()...), extra...)
}
