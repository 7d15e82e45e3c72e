package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Warning is one note or warning the server left for the last statement
// (a line of SHOW WARNINGS). With strict mode on, what is left are the
// changes the server made to a value without refusing it, such as a
// DECIMAL rounded to its scale (Note 1265).
type Warning struct {
	Level   string
	Code    int
	Message string
}

func (w Warning) String() string { return fmt.Sprintf("%s %d: %s", w.Level, w.Code, w.Message) }

// warningAt finds the column and row a warning names: "… for column 'c' at
// row 3", or "… for column `db`.`t`.`c` at row 3".
var warningAt = regexp.MustCompile("for column (?:`[^`]*`\\.)*[`']([^`']*)[`'] at row ([0-9]+)")

// Where returns the column a warning names and the row it was in (1 for the
// statement's first row or the load's first line); "" and 0 when it names
// none.
func (w Warning) Where() (column string, row int) {
	m := warningAt.FindStringSubmatch(w.Message)
	if m == nil {
		return "", 0
	}
	row, _ = strconv.Atoi(m[2])
	return m[1], row
}

// ignoredWarning says nothing about the values written: MySQL 8 marks every
// INSERT … ON DUPLICATE KEY UPDATE that uses VALUES() as deprecated (1287);
// with binlog_format=STATEMENT an upsert on a table with two unique keys, or
// a DELETE … LIMIT, is "unsafe" for the binlog (1592); MySQL 8 deprecates
// integer display widths (1681) and the utf8 alias (3719, 3720).
func ignoredWarning(code int) bool {
	switch code {
	case 1287, 1592, 1681, 3719, 3720:
		return true
	}
	return false
}

// diagnostics reads the last statement's warnings without clearing them:
// SHOW statements are diagnostic, where a SELECT (of @@warning_count) would
// empty the list on MySQL. The count comes first because the list holds at
// most max_error_count of them.
const diagnostics = "SHOW COUNT(*) WARNINGS; SHOW WARNINGS"

// scanDiagnostics reads the two answers of diagnostics from rows, which
// stands at the first, and returns the warnings about values. Warnings the
// server counted but did not list are not taken for harmless ones: they
// come back as one warning saying how many.
func scanDiagnostics(rows *sql.Rows) ([]Warning, error) {
	var count int
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("target: count warnings: %w", err)
		}
		return nil, fmt.Errorf("target: no answer to SHOW COUNT(*) WARNINGS")
	}
	if err := rows.Scan(&count); err != nil {
		return nil, fmt.Errorf("target: count warnings: %w", err)
	}
	if !rows.NextResultSet() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("target: read warnings: %w", err)
		}
		return nil, fmt.Errorf("target: no answer to SHOW WARNINGS")
	}
	var out []Warning
	listed := 0
	for rows.Next() {
		var w Warning
		if err := rows.Scan(&w.Level, &w.Code, &w.Message); err != nil {
			return nil, fmt.Errorf("target: read warnings: %w", err)
		}
		listed++
		if !ignoredWarning(w.Code) {
			out = append(out, w)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read warnings: %w", err)
	}
	if count > listed {
		out = append(out, Warning{Level: "Warning", Message: fmt.Sprintf("%d more warnings the server did not list (max_error_count)", count-listed)})
	}
	return out, nil
}

// ReadWarnings returns the warnings about values the last statement run
// through q left.
func ReadWarnings(ctx context.Context, q Querier) ([]Warning, error) {
	rows, err := q.QueryContext(ctx, diagnostics)
	if err != nil {
		return nil, fmt.Errorf("target: read warnings: %w", err)
	}
	defer rows.Close()
	return scanDiagnostics(rows)
}

// writeCheck follows a write in the same round trip (the session allows
// several statements in one query), with diagnostic statements only until
// the warnings are read: the write's row count kept aside, its warnings,
// then the row count. The driver does not pass on the warning count of the
// write's own answer.
const writeCheck = "; GET DIAGNOSTICS @sluice_rows = ROW_COUNT; " + diagnostics + "; SELECT @sluice_rows"

// ExecWrite runs a write statement in tx and returns how many rows it
// changed (as RowsAffected would) and the warnings it left about values,
// in one round trip.
func ExecWrite(ctx context.Context, tx *sql.Tx, query string, args ...any) (changed int64, warnings []Warning, err error) {
	rows, err := tx.QueryContext(ctx, query+writeCheck, args...)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	if warnings, err = scanDiagnostics(rows); err != nil {
		return 0, nil, err
	}
	if !rows.NextResultSet() || !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("target: no answer to SELECT @sluice_rows")
	}
	if err := rows.Scan(&changed); err != nil {
		return 0, nil, fmt.Errorf("target: read the outcome of a write: %w", err)
	}
	return changed, warnings, rows.Err()
}

// Write is a statement and its arguments, for ExecWrites.
type Write struct {
	Query string
	Args  []any
}

// A round trip of ExecWrites holds up to writesPerTrip statements, or
// tripBytes of statements and arguments (the packet must stay under
// max_allowed_packet), but always at least one.
const (
	writesPerTrip = 200
	tripBytes     = 4 << 20
)

// ExecWrites runs writes in tx in order, each followed by its diagnostics,
// several to a round trip, and returns the index of the first write that
// left warnings about values, with them (-1 when none did). The writes
// after that one have run too: roll the transaction back.
func ExecWrites(ctx context.Context, tx *sql.Tx, writes []Write) (int, []Warning, error) {
	for start := 0; start < len(writes); {
		end, size := start, 0
		for end < len(writes) && end-start < writesPerTrip {
			n := len(writes[end].Query)
			for _, a := range writes[end].Args {
				switch v := a.(type) {
				case string:
					n += len(v)
				case []byte:
					n += 2 * len(v)
				}
			}
			if end > start && size+n > tripBytes {
				break
			}
			size += n
			end++
		}
		bad, warnings, err := execTrip(ctx, tx, writes[start:end])
		if err != nil {
			return -1, nil, err
		}
		if bad >= 0 {
			return start + bad, warnings, nil
		}
		start = end
	}
	return -1, nil, nil
}

// execTrip is one round trip of ExecWrites.
func execTrip(ctx context.Context, tx *sql.Tx, writes []Write) (bad int, warnings []Warning, err error) {
	var b strings.Builder
	var args []any
	for i, w := range writes {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(w.Query)
		b.WriteString("; " + diagnostics)
		args = append(args, w.Args...)
	}
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return -1, nil, err
	}
	defer rows.Close()
	bad = -1
	for i := range writes {
		if i > 0 && !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return -1, nil, err
			}
			return -1, nil, fmt.Errorf("target: %d answers to %d statements", i, len(writes))
		}
		ws, err := scanDiagnostics(rows)
		if err != nil {
			return -1, nil, err
		}
		if bad < 0 && len(ws) > 0 {
			bad, warnings = i, ws
		}
	}
	return bad, warnings, rows.Err()
}

// ValueWarning means the server changed or refused a value during a load.
type ValueWarning struct {
	Table    string
	Warnings []Warning // at least one; as scanDiagnostics returns them
}

func (w *ValueWarning) Error() string {
	return fmt.Sprintf("target changed or refused a value while loading %s: %s", w.Table, Summary(w.Warnings))
}

// Summary names the first of warnings (at least one) and how many there
// are when more, for a message.
func Summary(warnings []Warning) string {
	first := warnings[0].String()
	if len(warnings) > 1 {
		first += fmt.Sprintf(" (%d warnings in all)", len(warnings))
	}
	return first
}

// loadWarnings returns the warnings about values a load into table left
// (a *ValueWarning), an error if they cannot be read, or nil.
func loadWarnings(ctx context.Context, tx *sql.Tx, table string) error {
	warnings, err := ReadWarnings(ctx, tx)
	if err != nil {
		return fmt.Errorf("after loading %s: %w", table, err)
	}
	if len(warnings) == 0 {
		return nil
	}
	return &ValueWarning{Table: table, Warnings: warnings}
}
