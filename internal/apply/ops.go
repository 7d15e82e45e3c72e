// Package apply writes row changes to the target in batches: many source
// transactions per target transaction, reduced to their net effect per key,
// with the source position stored in the same transaction so a crash never
// loses or repeats a change.
package apply

import (
	"fmt"
	"strings"

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
	Row      Row    // Upsert, Patch, Move
	OldKey   Row    // Move: the row's key columns before the change (target form)
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
}

// NewTable prepares the SQL fragments for t.
func NewTable(t *plan.Table) *Table {
	at := &Table{Plan: t, quoted: typemap.QuoteIdent(t.Target)}
	isKey := map[int]bool{}
	for _, k := range t.Key {
		isKey[k] = true
		at.keyCols = append(at.keyCols, typemap.QuoteIdent(t.Columns[k].Target))
	}
	var sets []string
	for i, c := range t.Columns {
		q := typemap.QuoteIdent(c.Target)
		at.cols = append(at.cols, q)
		at.bytesCol = append(at.bytesCol, strings.Contains(c.SQLType, "BLOB") || strings.Contains(c.SQLType, "BINARY"))
		if !isKey[i] {
			sets = append(sets, q+" = VALUES("+q+")")
		}
	}
	if len(sets) == 0 { // every column is part of the key
		k := at.keyCols[0]
		sets = append(sets, k+" = "+k)
	}
	at.upsertTail = " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	return at
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

// upsertSQL writes n rows.
func (t *Table) upsertSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s%s", t.quoted, strings.Join(t.cols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "), t.upsertTail)
}

// deleteSQL removes n keys.
func (t *Table) deleteSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.keyCols)), ", ") + ")"
	return fmt.Sprintf("DELETE FROM %s WHERE (%s) IN (%s)", t.quoted, strings.Join(t.keyCols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "))
}

// insertSQL inserts n rows as they are (keyless tables).
func (t *Table) insertSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", t.quoted, strings.Join(t.cols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "))
}

// matchAll is a WHERE clause matching one row on every column (NULL-safe).
func (t *Table) matchAll(r Row) (string, []any) {
	conds := make([]string, len(t.cols))
	args := make([]any, len(t.cols))
	for i, c := range t.cols {
		conds[i] = c + " <=> ?"
		args[i] = t.arg(i, r[i])
	}
	return strings.Join(conds, " AND "), args
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
