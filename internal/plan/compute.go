package plan

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sluice-db/sluice/internal/postgres"
)

// Rows that did not come from the source table (application events, or
// change messages for a table with computed columns or a row filter) are
// turned into what the copy would have read by evaluating the copy's own
// source expressions over them on the source:
//
//	SELECT <SourceExpr…>, (<filter>) IS TRUE
//	FROM (SELECT u."sluice#ord", u.c0::bigint AS "user_id", …
//	      FROM unnest($1::text[], $2::text[], …) WITH ORDINALITY AS u(c0, c1, …, "sluice#ord")) AS "likes"
//	ORDER BY "sluice#ord"
//
// so renamed, retyped and computed columns and the row filter give exactly
// the copy's values, and the source parses and prints every value the way
// COPY does. The rows travel as one text array per column: the statement
// is the same for every batch (prepared once), and the source parses no
// SQL per row (a VALUES list of typed literals costs ten times more).

// evalOrd numbers the rows so the output keeps their order; a name no real
// column has.
const evalOrd = `"sluice#ord"`

// CastTypes returns, for each column of t.Source.Columns, the SQL type a
// text literal is cast to for EvalQuery. Character and bit types are cast
// without their length, because an explicit cast would silently cut a value
// that the column itself refuses; the target checks the length instead.
// (Without a length means typmod -1: format_type with a NULL typmod names
// bpchar "character", which is character(1), and cut every value to one
// character. A char(n) key is padded back to n by PadKey.)
func CastTypes(ctx context.Context, src *postgres.Source, t *Table) ([]string, error) {
	rows, err := src.Pool.Query(ctx, `
		SELECT a.attname,
		       CASE WHEN bt.typname IN ('varchar', 'bpchar', 'bit', 'varbit') AND t.typtype <> 'd'
		            THEN format_type(a.atttypid, -1) ELSE format_type(a.atttypid, a.atttypmod) END
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
		postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name))
	if err != nil {
		return nil, fmt.Errorf("source: column types of %s: %w", t.Source.Name, err)
	}
	defer rows.Close()
	byName := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("source: column types of %s: %w", t.Source.Name, err)
		}
		byName[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source: column types of %s: %w", t.Source.Name, err)
	}
	out := make([]string, len(t.Source.Columns))
	for i, c := range t.Source.Columns {
		typ, ok := byName[c.Name]
		if !ok {
			return nil, fmt.Errorf("source: table %s has no column %s any more", t.Source.Name, c.Name)
		}
		out[i] = typ
	}
	return out, nil
}

// EvalQuery selects t's source expressions (t.Columns order), then the row
// filter as a boolean (always true without a filter), over rows passed as
// one text[] parameter per column of t.Source.Columns (NULL elements for
// NULL), cast to castTypes; rows come back in their order.
func (t *Table) EvalQuery(castTypes []string) string {
	exprs := make([]string, 0, len(t.Columns)+1)
	for _, c := range t.Columns {
		exprs = append(exprs, c.SourceExpr)
	}
	if t.Filter != "" {
		exprs = append(exprs, "(("+t.Filter+") IS TRUE)")
	} else {
		exprs = append(exprs, "true")
	}
	names := make([]string, len(t.Source.Columns))
	for i, c := range t.Source.Columns {
		names[i] = postgres.Ident(c.Name)
	}
	return evalQuery(exprs, t.Source.Name.Name, names, castTypes)
}

// EvalKeysQuery selects the key columns' source expressions over keys
// passed as one text[] parameter per key column (t.Key order); castTypes is
// as for EvalQuery (every column of the table).
func (t *Table) EvalKeysQuery(castTypes []string) string {
	exprs := make([]string, len(t.Key))
	names := make([]string, len(t.Key))
	types := make([]string, len(t.Key))
	for i, k := range t.Key {
		c := t.Columns[k]
		exprs[i] = c.SourceExpr
		names[i] = postgres.Ident(c.Source)
		for j, sc := range t.Source.Columns {
			if sc.Name == c.Source {
				types[i] = castTypes[j]
			}
		}
	}
	return evalQuery(exprs, t.Source.Name.Name, names, types)
}

func evalQuery(exprs []string, alias string, names, types []string) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	b.WriteString(strings.Join(exprs, ", "))
	b.WriteString(" FROM (SELECT u." + evalOrd)
	for i, n := range names {
		fmt.Fprintf(&b, ", u.c%d::%s AS %s", i, types[i], n)
	}
	b.WriteString(" FROM unnest(")
	for i := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::text[]", i+1)
	}
	b.WriteString(") WITH ORDINALITY AS u(")
	for i := range names {
		fmt.Fprintf(&b, "c%d, ", i)
	}
	b.WriteString(evalOrd + ")) AS " + postgres.Ident(alias) + " ORDER BY " + evalOrd)
	return b.String()
}

// NeedsSourceEval reports whether rows of t can only be converted by
// evaluating them on the source: it has computed columns or a row filter.
func (t *Table) NeedsSourceEval() bool {
	if t.Filter != "" {
		return true
	}
	for _, c := range t.Columns {
		if c.Source == "" {
			return true
		}
	}
	return false
}

// PadKey gives a char(n) key value evaluated without its length (see
// CastTypes) the form the copy reads, padded to n: key texts must match for
// an event and a copied row of the same key. A value longer than n is an
// error, as PostgreSQL's own insert would be, unless what is over is spaces.
func (c Column) PadKey(v string) (string, error) {
	n := c.SourceType.Length
	if c.SourceType.Name != "bpchar" || n < 1 {
		return v, nil
	}
	runes := utf8.RuneCountInString(v)
	if runes > n {
		cut := v
		for utf8.RuneCountInString(cut) > n && strings.HasSuffix(cut, " ") {
			cut = cut[:len(cut)-1]
		}
		if utf8.RuneCountInString(cut) > n {
			return "", fmt.Errorf("value too long for %s", c.SourceType.Display)
		}
		return cut, nil
	}
	return v + strings.Repeat(" ", n-runes), nil
}
