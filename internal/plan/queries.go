package plan

import (
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/chunk"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/schema"
	"github.com/sluice-db/sluice/internal/typemap"
)

// KeyExprsSource lists the key columns as the source orders them (a
// keyless table is ordered and chunked by its physical row address).
func (t *Table) KeyExprsSource() []string {
	if t.Keyless {
		return []string{"ctid"}
	}
	out := make([]string, len(t.Key))
	for i, k := range t.Key {
		out[i] = t.Columns[k].KeyExprSource
	}
	return out
}

// SourceQuery selects the rows of range r on the source, in key order, with
// the row filter applied. Bounds are inlined as typed literals because COPY
// takes no parameters.
func (t *Table) SourceQuery(r chunk.Range) string {
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = c.SourceExpr
	}
	keys := t.KeyExprsSource()
	where := chunk.Predicate(keys, r, func(i int, v string) string {
		if t.Keyless {
			return postgres.Literal(v) + "::tid"
		}
		return postgres.Literal(v) + "::" + CastType(t.Columns[t.Key[i]].SourceType)
	})
	if t.Filter != "" {
		where += " AND (" + t.Filter + ")"
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s", strings.Join(exprs, ", "),
		postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name), where, strings.Join(keys, ", "))
}

// CastType names typ for a cast of a key literal: by its schema unless it
// is built in, so an enum of a schema not on the search_path (or one whose
// name another schema's type shares) is the column's own.
func CastType(typ schema.Type) string {
	if typ.Namespace == "" || typ.Namespace == "pg_catalog" {
		return postgres.Ident(typ.Name)
	}
	return postgres.Ident(typ.Namespace, typ.Name)
}

// KeyFilterSource selects the source rows whose keys are listed (source text
// form), for repairs.
func (t *Table) KeyFilterSource(keys [][]string) string {
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = c.SourceExpr
	}
	keyCols := make([]string, len(t.Key))
	for i, k := range t.Key {
		keyCols[i] = postgres.Ident(t.Columns[k].Source)
	}
	tuples := make([]string, len(keys))
	for j, key := range keys {
		lits := make([]string, len(key))
		for i, v := range key {
			lits[i] = postgres.Literal(v) + "::" + CastType(t.Columns[t.Key[i]].SourceType)
		}
		tuples[j] = "(" + strings.Join(lits, ", ") + ")"
	}
	where := "(" + strings.Join(keyCols, ", ") + ") IN (" + strings.Join(tuples, ", ") + ")"
	if t.Filter != "" {
		where += " AND (" + t.Filter + ")"
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(exprs, ", "),
		postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name), where)
}

// TargetQuery selects range r on the target for verify. Bounds are converted
// to the target's form (a timestamptz bound loses its "+00", a boolean
// becomes 0/1) and passed as parameters.
func (t *Table) TargetQuery(r chunk.Range) (string, []any, error) {
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = c.TargetExpr
	}
	keys := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = t.Columns[k].KeyExprTarget
	}
	var args []any
	var convErr error
	where := chunk.Predicate(keys, r, func(i int, v string) string {
		conv := []byte(v)
		if c := t.Columns[t.Key[i]].Convert; c != nil {
			var err error
			if conv, err = c(conv); err != nil && convErr == nil {
				convErr = err
			}
		}
		args = append(args, string(conv))
		return "?"
	})
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(exprs, ", "), typemap.QuoteIdent(t.Target), where)
	return q, args, convErr
}

// TargetKeysQuery selects the target rows with the listed keys (source
// text form, converted here to the target's form).
func (t *Table) TargetKeysQuery(keys [][]string) (string, []any, error) {
	exprs := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		exprs[i] = c.TargetExpr
	}
	var args []any
	for _, key := range keys {
		for i, v := range key {
			conv := []byte(v)
			if c := t.Columns[t.Key[i]].Convert; c != nil {
				var err error
				if conv, err = c(conv); err != nil {
					return "", nil, err
				}
			}
			args = append(args, string(conv))
		}
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(exprs, ", "), typemap.QuoteIdent(t.Target), t.KeyIn(len(keys)))
	return q, args, nil
}

// LoadColumns lists the target columns in copy order with their load
// expressions.
func (t *Table) LoadColumns() []mysql.LoadColumn {
	out := make([]mysql.LoadColumn, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = mysql.LoadColumn{Name: c.Target, Expr: c.LoadExpr}
	}
	return out
}

// TargetColumns lists the target column names in copy order.
func (t *Table) TargetColumns() []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.Target
	}
	return out
}

// KeyIn is a WHERE condition matching n keys on the target, one tuple of
// placeholders each: (k1, k2) IN ((?, ?), …).
//
// A DECIMAL key's placeholder is cast to its type: MariaDB compares a
// DECIMAL column with a list of strings as doubles, so id IN ('…890', '1')
// also matched …891 and every key within a double's precision.
func (t *Table) KeyIn(n int) string {
	cols := make([]string, len(t.Key))
	params := make([]string, len(t.Key))
	for i, k := range t.Key {
		c := t.Columns[k]
		cols[i] = typemap.QuoteIdent(c.Target)
		params[i] = "?"
		if c.Kind == canonical.Decimal && strings.HasPrefix(strings.ToUpper(c.SQLType), "DECIMAL") {
			params[i] = "CAST(? AS " + c.SQLType + ")"
		}
	}
	tuple := "(" + strings.Join(params, ", ") + ")"
	return "(" + strings.Join(cols, ", ") + ") IN (" + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ") + ")"
}

// DeleteKeysTarget deletes the listed keys (already in target form).
func (t *Table) DeleteKeysTarget(n int) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", typemap.QuoteIdent(t.Target), t.KeyIn(n))
}
