package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

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

// runWithTimeout runs sluice like testenv.Run but kills it after d; ok is
// false when it had to be killed.
func runWithTimeout(t testing.TB, d time.Duration, args ...string) (res testenv.Result, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res = testenv.Result{Stdout: out.String(), Stderr: errb.String()}
	if ctx.Err() != nil {
		return res, false
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Exit = ee.ExitCode()
	default:
		t.Fatalf("run sluice %v: %v", args, err)
	}
	return res, true
}
