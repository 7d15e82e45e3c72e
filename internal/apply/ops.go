// Package apply writes row changes to the target in batches: many source
// transactions per target transaction, reduced to their net effect per key,
// with the source position stored in the same transaction so a crash never
// loses or repeats a change.
package apply

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Val is one column value in the target's input form. Data nil is NULL
// unless Unchanged, which means "keep what the target has".
type Val struct {
	Data      []byte
	Unchanged bool
}

// Row is a row in the plan's column order.
type Row []Val

// Partial reports whether some columns were left out (unchanged TOAST).
func (r Row) Partial() bool {
	for _, v := range r {
		if v.Unchanged {
			return true
		}
	}
	return false
}

// OpKind is what an Op does.
type OpKind int

const (
	Upsert   OpKind = iota + 1 // write the whole row, inserting or replacing
	Load                       // Upsert of a copied chunk's row: written in bulk with LOAD DATA … REPLACE
	Delete                     // remove the row with Key
	Patch                      // set the sent columns of the row with Key (unchanged TOAST left out)
	Move                       // a key change with unchanged TOAST: UPDATE … WHERE OldKey
	Truncate                   // remove every row of the table
	// Rewrite: the end state of Key after a transaction on a table whose key
	// is DEFERRABLE: Row, or no row when Row is nil; OldKey holds the key
	// columns. A run of them is written as a whole: every key deleted, then
	// the end rows inserted, since one key by one a swap could not be.
	Rewrite
	// Tables without a key (REPLICA IDENTITY FULL) match rows on all columns
	// and are applied in order, one op at a time.
	Append    // insert the row
	DeleteOne // delete one row equal to Row
	UpdateOne // change one row equal to OldKey into Row (insert Row if none)
)

// Op is one change to one table, already converted to the target's form.
type Op struct {
	Kind     OpKind
	Table    *Table
	Key      string // identity of the row within the table (source key text)
	Row      Row    // Upsert, Patch, Move, Rewrite
	OldKey   Row    // Move: the row's key columns before the change (target form); Rewrite: the key's
	OldKeyID string // Move: Key before the change
}

// Table is a target table the applier writes, with its SQL prepared once.
type Table struct {
	Plan       *plan.Table
	quoted     string
	cols       []string // quoted target columns
	keyCols    []string
	upsertTail string // ON DUPLICATE KEY UPDATE …
	bytesCol   []bool // pass as []byte (binary) rather than string
	matchCond  string // matchAll's WHERE clause
	replace    *mysql.Replace

	// Refetch, when set, copies the source's current row with key (source
	// text, columns joined by NUL) into the target within tx. A key move
	// that changes no row on the target calls it: the row may have been in
	// a chunk not copied yet and moved into one already done, and an update
	// that left its TOASTed values out cannot be written from the stream
	// alone. (No row changed can also mean the new key equals the old one
	// on the target, 1.5 and 1.50 say: then the copy rewrites the row.)
	// Changes after this one, older than what it reads, are applied on top
	// as they come, so the row ends as the source has it.
	Refetch func(ctx context.Context, tx *sql.Tx, keys ...string) error
	// Ahead, when set, says whether the target's row under key may be one
	// Refetch read ahead of the stream: the source's row of a later moment,
	// perhaps another row than the one the stream's next changes of key
	// speak of. A key move out of such a key carries nothing (it could
	// carry that other row to the new key): the new key takes the source's
	// row as it is now. One into such a key deletes the row read ahead
	// first, which at this point of the stream is not there yet.
	Ahead func(key string) bool
	// Unmatched, when set, is told of a change of a table without a key
	// (matched on all its columns) that found no row on the target: a row
	// still to be copied, or a target that differs from the source.
	Unmatched func()
}

// NewTable prepares the SQL fragments for t.
func NewTable(t *plan.Table) *Table {
	at := &Table{Plan: t, quoted: typemap.QuoteIdent(t.Target), replace: t.Replace()}
	for _, k := range t.Key {
		at.keyCols = append(at.keyCols, typemap.QuoteIdent(t.Columns[k].Target))
	}
	for _, c := range t.Columns {
		at.cols = append(at.cols, typemap.QuoteIdent(c.Target))
		at.bytesCol = append(at.bytesCol, strings.Contains(c.SQLType, "BLOB") || strings.Contains(c.SQLType, "BINARY"))
	}
	at.upsertTail = UpsertTail(t)
	at.matchCond = matchCondition(t, at.cols)
	return at
}

// UpsertTail is the ON DUPLICATE KEY UPDATE clause that writes a row of t
// over the row with its key.
//
// The guard comes first: ON DUPLICATE KEY UPDATE also fires when only a
// unique secondary index matches, and would then overwrite that other row
// and drop the incoming one without a word. When the matched row's key is
// not the incoming one, the guard divides by zero, which the session's
// strict mode (ERROR_FOR_DIVISION_BY_ZERO) turns into error 1365 for any key
// type (NULL would not do: an AUTO_INCREMENT key takes it as 0). The batch
// is then replayed change by change in source order, where a unique value
// always leaves its old row before it reaches the new one.
func UpsertTail(t *plan.Table) string {
	if len(t.Key) == 0 { // keyless tables are written row by row, never upserted
		return ""
	}
	isKey := map[int]bool{}
	same := make([]string, len(t.Key))
	for i, k := range t.Key {
		isKey[k] = true
		q := typemap.QuoteIdent(t.Columns[k].Target)
		same[i] = q + " <=> VALUES(" + q + ")"
	}
	first := typemap.QuoteIdent(t.Columns[t.Key[0]].Target)
	// the failing branch keeps the key's type (IF(uuid, decimal) is refused)
	fail := "IF(LENGTH(" + first + ") / 0, " + first + ", " + first + ")"
	sets := []string{first + " = IF(" + strings.Join(same, " AND ") + ", " + first + ", " + fail + ")"}
	for i, c := range t.Columns {
		if !isKey[i] {
			q := typemap.QuoteIdent(c.Target)
			sets = append(sets, q+" = VALUES("+q+")")
		}
	}
	return " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

func (t *Table) arg(i int, v Val) any {
	if v.Data == nil {
		return nil
	}
	if t.bytesCol[i] {
		return v.Data
	}
	return string(v.Data)
}

// KeyArgs returns the key values of r as statement arguments.
func (t *Table) KeyArgs(r Row) []any {
	out := make([]any, len(t.Plan.Key))
	for i, k := range t.Plan.Key {
		out[i] = t.arg(k, r[k])
	}
	return out
}

// keyText shows r's key for a message, column=value joined by commas; a
// table without a key shows every column.
func (t *Table) keyText(r Row) string {
	cols := t.Plan.Key
	if len(cols) == 0 {
		cols = make([]int, len(t.cols))
		for i := range cols {
			cols[i] = i
		}
	}
	parts := make([]string, 0, len(cols))
	for _, k := range cols {
		v := "NULL"
		if k < len(r) && r[k].Data != nil {
			v = string(r[k].Data)
		}
		parts = append(parts, t.Plan.Columns[k].Target+"="+v)
	}
	return strings.Join(parts, ",")
}

// upsertSQL writes n rows.
func (t *Table) upsertSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s%s", t.quoted, strings.Join(t.cols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "), t.upsertTail)
}

// deleteSQL removes n keys.
func (t *Table) deleteSQL(n int) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", t.quoted, t.Plan.KeyIn(n))
}

// insertSQL inserts n rows as they are (keyless tables).
func (t *Table) insertSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", t.quoted, strings.Join(t.cols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "))
}

// matchCondition is a WHERE clause matching one row on every column
// (NULL-safe), for matchAll. MariaDB's JSON is LONGTEXT in a PAD SPACE
// collation, where text that differs only in trailing spaces compares
// equal, but PostgreSQL's json keeps its text as written: a JSON column is
// compared byte for byte, or a change could match the other of two such
// rows.
func matchCondition(t *plan.Table, cols []string) string {
	conds := make([]string, len(cols))
	for i, c := range cols {
		conds[i] = c + " <=> ?"
		if strings.EqualFold(t.Columns[i].SQLType, "JSON") {
			conds[i] = "CAST(" + c + " AS BINARY) <=> CAST(? AS BINARY)"
		}
	}
	return strings.Join(conds, " AND ")
}

// matchAll is the clause matching one row on every column, and its values.
func (t *Table) matchAll(r Row) (string, []any) {
	args := make([]any, len(t.cols))
	for i := range t.cols {
		args[i] = t.arg(i, r[i])
	}
	return t.matchCond, args
}

// Identity is a keyless row's identity: all its values, unambiguously joined.
func Identity(r Row) string {
	var b strings.Builder
	for _, v := range r {
		if v.Data == nil {
			b.WriteString("N")
			continue
		}
		fmt.Fprintf(&b, "%d:", len(v.Data))
		b.Write(v.Data)
	}
	return b.String()
}

// patchSQL sets the sent columns of r where the key is keyRow's.
func (t *Table) patchSQL(r Row, keyRow Row) (string, []any) {
	var sets []string
	var args []any
	for i, v := range r {
		if v.Unchanged {
			continue
		}
		sets = append(sets, t.cols[i]+" = ?")
		args = append(args, t.arg(i, v))
	}
	var where []string
	for i, k := range t.Plan.Key {
		where = append(where, t.keyCols[i]+" = ?")
		args = append(args, t.arg(k, keyRow[k]))
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", t.quoted, strings.Join(sets, ", "), strings.Join(where, " AND ")), args
}
