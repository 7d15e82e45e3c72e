package events

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// maxCollisionRows bounds how many rows of a value held twice are looked up.
const maxCollisionRows = 20

// uniqueCollision tells a unique value held twice that no event will
// settle from one that events still to come will: the rows holding it are
// on the source too, with the very values the target holds, so the source
// tells those values apart and the target, in a type or collation the
// mapping set, does not ('Bob' and 'bob' under a case-insensitive
// collation, 'a' and 'a ' under PAD SPACE). It returns that refusal, or nil
// when it cannot tell (the wait goes on). Only unique indexes with a
// column the mapping typed are looked at: sluice's own types compare as
// the source does.
func (s *Service) uniqueCollision(ctx context.Context, t *plan.Table) error {
	if !textKey(t) {
		return nil
	}
	for _, ix := range t.Source.Indexes {
		cols, ok := userTypedUnique(t, ix.Columns)
		if !ok || !ix.Unique || ix.Deferrable || ix.Primary {
			continue
		}
		rows, err := collidingRows(ctx, s.tgt.DB, t, cols)
		if err != nil || len(rows) < 2 {
			return nil // the wait and its warning go on
		}
		for _, r := range rows {
			if same, err := s.sourceHolds(ctx, t, cols, r); err != nil || !same {
				return nil
			}
		}
		var held []string
		for _, r := range rows {
			held = append(held, describeRow(t, cols, r))
		}
		return failure.New(failure.Schema, "SLUICE-EVENTS-COLLISION", "table %s: unique index %s cannot be built on the target: the source holds rows %s, whose values the target's type or collation for %s (set in the mapping) counts as one",
			t.Source.Name, ix.Name, strings.Join(held, ", "), targetNames(t, cols)).
			With("table", t.Target).
			WithHint("map the column to a type and collation that tell the values apart (e.g. COLLATE utf8mb4_bin), or change one of the rows on the source; then drop the target table and run the sync again")
	}
	return nil
}

// textKey: the row key's columns read back as the same text on both sides
// (integers and plain text), so a target row can be looked up on the source.
func textKey(t *plan.Table) bool {
	for _, k := range t.Key {
		if c := t.Columns[k]; c.Kind != canonical.Integer && c.Kind != canonical.Exact || c.UserType {
			return false
		}
	}
	return len(t.Key) > 0
}

// userTypedUnique maps a unique index's source columns to plan columns; ok
// when all are mapped text and one has a type the mapping set.
func userTypedUnique(t *plan.Table, sourceCols []string) (cols []int, ok bool) {
	user := false
	for _, sc := range sourceCols {
		i := -1
		for j, c := range t.Columns {
			if c.Source == sc {
				i = j
			}
		}
		if i < 0 || t.Columns[i].Kind != canonical.Exact {
			return nil, false
		}
		user = user || t.Columns[i].UserType
		cols = append(cols, i)
	}
	return cols, user
}

// collidingRows reads (key..., unique columns...) of target rows holding a
// value of cols more than once.
func collidingRows(ctx context.Context, db *sql.DB, t *plan.Table, cols []int) ([][]string, error) {
	var sel, ucols, notNull []string
	for _, k := range t.Key {
		sel = append(sel, typemap.QuoteIdent(t.Columns[k].Target))
	}
	for _, c := range cols {
		q := typemap.QuoteIdent(t.Columns[c].Target)
		sel, ucols, notNull = append(sel, q), append(ucols, q), append(notNull, q+" IS NOT NULL")
	}
	list := strings.Join(ucols, ", ")
	q := fmt.Sprintf("SELECT %s FROM %s WHERE (%s) IN (SELECT %s FROM %s WHERE %s GROUP BY %s HAVING COUNT(*) > 1) LIMIT %d",
		strings.Join(sel, ", "), typemap.QuoteIdent(t.Target), list, list, typemap.QuoteIdent(t.Target), strings.Join(notNull, " AND "), list, maxCollisionRows)
	rs, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out [][]string
	for rs.Next() {
		vals := make([]sql.NullString, len(sel))
		ptrs := make([]any, len(sel))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	return out, rs.Err()
}

// sourceHolds reports whether the source has the row of r's key with the
// same text in cols as the target's row r.
func (s *Service) sourceHolds(ctx context.Context, t *plan.Table, cols []int, r []string) (bool, error) {
	var sel, where []string
	var args []any
	for _, c := range cols {
		sel = append(sel, postgres.Ident(t.Columns[c].Source)+"::text")
	}
	for i, k := range t.Key {
		args = append(args, r[i])
		where = append(where, fmt.Sprintf("%s::text = $%d", postgres.Ident(t.Columns[k].Source), i+1))
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(sel, ", "), postgres.Ident(t.Source.Name.Schema, t.Source.Name.Name), strings.Join(where, " AND "))
	vals := make([]*string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := s.src.Pool.QueryRow(ctx, q, args...).Scan(ptrs...); err != nil {
		return false, err // no such row (pgx.ErrNoRows) included: an event is still to come
	}
	for i, v := range vals {
		if v == nil || *v != r[len(t.Key)+i] {
			return false, nil
		}
	}
	return true, nil
}

// describeRow is "key=… (col='value')" for a message.
func describeRow(t *plan.Table, cols []int, r []string) string {
	var key, vals []string
	for i, k := range t.Key {
		key = append(key, t.Columns[k].Source+"="+r[i])
	}
	for i, c := range cols {
		vals = append(vals, fmt.Sprintf("%s=%q", t.Columns[c].Source, r[len(t.Key)+i]))
	}
	return strings.Join(key, ",") + " (" + strings.Join(vals, ", ") + ")"
}

// targetNames lists cols' target names.
func targetNames(t *plan.Table, cols []int) string {
	var names []string
	for _, c := range cols {
		names = append(names, t.Columns[c].Target)
	}
	return strings.Join(names, ", ")
}
