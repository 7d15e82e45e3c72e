package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-db/sluice/internal/typemap"
)

// ColumnShape is a column as the server describes it (SHOW FULL COLUMNS):
// what decides which values it holds and how it compares them.
type ColumnShape struct {
	Name      string
	Type      string // with length, precision, fractional digits, UNSIGNED: decimal(10,2), datetime(6)
	Collation string // "" for a column without a character set; the collation names the set
	Nullable  bool
	Extra     string // auto_increment, on update current_timestamp(), a generated column's kind
}

// Describe is how a message shows the column.
func (c ColumnShape) Describe() string {
	s := c.Type
	if c.Collation != "" {
		s += " COLLATE " + c.Collation
	}
	if !c.Nullable {
		s += " NOT NULL"
	}
	if c.Extra != "" {
		s += " " + strings.ToUpper(c.Extra)
	}
	return s
}

// TableShape is how the server describes a table: its columns in order and
// its unique indexes (name → columns, a prefix as col(n), in index order).
type TableShape struct {
	Columns []ColumnShape
	Unique  map[string][]string
}

// ReadShape describes table as seen through q (SHOW, which also sees the
// session's temporary tables, unlike information_schema).
func ReadShape(ctx context.Context, q Querier, table string) (TableShape, error) {
	var shape TableShape
	err := showRows(ctx, q, "SHOW FULL COLUMNS FROM "+typemap.QuoteIdent(table), func(r map[string]sql.NullString) {
		shape.Columns = append(shape.Columns, ColumnShape{Name: r["Field"].String, Type: strings.ToLower(r["Type"].String),
			Collation: r["Collation"].String, Nullable: r["Null"].String == "YES", Extra: strings.ToLower(r["Extra"].String)})
	})
	if err != nil {
		return TableShape{}, fmt.Errorf("target: describe the columns of %s: %w", table, err)
	}
	type part struct {
		seq int
		col string
	}
	parts := map[string][]part{}
	err = showRows(ctx, q, "SHOW INDEX FROM "+typemap.QuoteIdent(table), func(r map[string]sql.NullString) {
		if r["Non_unique"].String != "0" {
			return
		}
		col := r["Column_name"].String
		if r["Sub_part"].Valid {
			col += "(" + r["Sub_part"].String + ")"
		}
		name := r["Key_name"].String
		seq, _ := strconv.Atoi(r["Seq_in_index"].String)
		parts[name] = append(parts[name], part{seq, col})
	})
	if err != nil {
		return TableShape{}, fmt.Errorf("target: describe the indexes of %s: %w", table, err)
	}
	shape.Unique = map[string][]string{}
	for name, ps := range parts {
		sort.Slice(ps, func(i, j int) bool { return ps[i].seq < ps[j].seq })
		for _, p := range ps {
			shape.Unique[name] = append(shape.Unique[name], p.col)
		}
	}
	return shape, nil
}

// showRows runs a SHOW statement and calls row with each row by column
// name (the columns differ between servers and versions).
func showRows(ctx context.Context, q Querier, stmt string, row func(map[string]sql.NullString)) error {
	rows, err := q.QueryContext(ctx, stmt)
	if err != nil {
		return err
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]sql.NullString, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		r := make(map[string]sql.NullString, len(names))
		for i, n := range names {
			r[n] = vals[i]
		}
		row(r)
	}
	return rows.Err()
}

// TableBehaviour returns the engine of table and the names of its
// triggers: what makes writes to it behave otherwise than to the table
// sluice creates, whatever its columns.
func TableBehaviour(ctx context.Context, db *sql.DB, table string) (engine string, triggers []string, err error) {
	var e sql.NullString // NULL for a view
	err = db.QueryRowContext(ctx, `SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, table).Scan(&e)
	if err != nil {
		return "", nil, fmt.Errorf("target: read the engine of %s: %w", table, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME`, table)
	if err != nil {
		return "", nil, fmt.Errorf("target: read the triggers of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return "", nil, fmt.Errorf("target: read the triggers of %s: %w", table, err)
		}
		triggers = append(triggers, name)
	}
	return e.String, triggers, rows.Err()
}
