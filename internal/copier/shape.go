package copier

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// refuseOtherShape refuses an existing target table that is not the table
// sluice would create for t: a column missing, added, or of another type,
// length, precision, fractional digits, collation, nullability or extra
// (AUTO_INCREMENT, ON UPDATE, generated), or no unique index on the row key;
// and one of another engine than InnoDB, or with triggers.
// Such a table changes values without a word: a MariaDB default collation
// (utf8mb4_general_ci) makes 'Résumé' and 'resume' one key, so the stream
// overwrites one row with the other; a DATETIME(0) drops the fraction of a
// second. The table sluice would create is made as a temporary table and
// described by the same server, so a table sluice created itself (a run
// stopped before it recorded the table) matches exactly, whatever types the
// mapping set.
func refuseOtherShape(ctx context.Context, tgt *mysql.Target, t *plan.Table) error {
	want, err := plannedShape(ctx, tgt, t)
	if err != nil {
		return err
	}
	have, err := mysql.ReadShape(ctx, tgt.DB, t.Target)
	if err != nil {
		return err
	}
	problems, alter, column := compareShape(t, have, want)
	engine, triggers, err := mysql.TableBehaviour(ctx, tgt.DB, t.Target)
	if err != nil {
		return err
	}
	if !strings.EqualFold(engine, "InnoDB") {
		// without transactions a chunk's rows stay when its transaction
		// (with the chunk's done mark) rolls back: a resumed copy loads
		// them again
		if engine == "" {
			engine = "none (a view?)"
		}
		problems = append(problems, fmt.Sprintf("its engine is %s, not InnoDB (a chunk's rows must commit or roll back with its progress)", engine))
		alter = append(alter, "ENGINE=InnoDB")
	}
	for _, tr := range triggers {
		problems = append(problems, fmt.Sprintf("trigger %s would change or add to what sluice writes (drop it: DROP TRIGGER %s)", tr, typemap.QuoteIdent(tr)))
	}
	if len(problems) == 0 {
		return nil
	}
	e := failure.New(failure.Schema, "SLUICE-TARGET-SHAPE",
		"target table %s exists but is not the table sluice would create: %s", t.Target, strings.Join(problems, "; ")).
		With("table", t.Target)
	if column != "" {
		e.With("column", column)
	}
	hint := "drop the table (it is empty) and let sluice create it; `sluice plan` shows its CREATE TABLE"
	if len(alter) > 0 {
		hint += ". Or align it: ALTER TABLE " + typemap.QuoteIdent(t.Target) + " " + strings.Join(alter, ", ")
	}
	return e.WithHint("%s", hint)
}

// probeTable is the name of the temporary table plannedShape and
// ProbeTables create.
const probeTable = "_sluice_shape"

// plannedShape creates t's table as a temporary table, on a connection of
// its own, and returns how the target describes it.
func plannedShape(ctx context.Context, tgt *mysql.Target, t *plan.Table) (mysql.TableShape, error) {
	conn, err := tgt.DB.Conn(ctx)
	if err != nil {
		return mysql.TableShape{}, fmt.Errorf("target: connect: %w", err)
	}
	defer conn.Close()
	if err := createProbe(ctx, conn, t); err != nil {
		return mysql.TableShape{}, failure.Wrap(err, failure.Schema, "SLUICE-TARGET-DDL", "target: create table %s (as a temporary table, to compare it with the existing one)", t.Target).
			With("table", t.Target)
	}
	defer dropProbe(ctx, conn)
	return mysql.ReadShape(ctx, conn, probeTable)
}

// ProbeTables creates, as a temporary table, each table of p that the
// target does not have yet, and returns an error for each one the target
// refuses (InnoDB's row size limit of about 8,126 bytes in the page, say,
// which only the server's own rules tell exactly): a run is refused before
// it creates anything or a slot, and sluice plan lists every such table.
func ProbeTables(ctx context.Context, tgt *mysql.Target, p *plan.Plan) ([]error, error) {
	conn, err := tgt.DB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("target: connect: %w", err)
	}
	defer conn.Close()
	var refused []error
	for _, t := range p.Tables {
		if t.CreateTable == "" { // not planned: its own errors say why
			continue
		}
		exists, err := tgt.TableExists(ctx, t.Target)
		if err != nil {
			return nil, err
		}
		if exists { // compared with the planned table when the run starts (refuseOtherShape)
			continue
		}
		err = createProbe(ctx, conn, t)
		switch {
		case err == nil:
			dropProbe(ctx, conn)
		case mysql.IsDefinitionRefused(err):
			hint := "check the types the mapping sets for its columns; sluice plan prints the CREATE TABLE"
			if mysql.IsRowTooLarge(err) {
				hint = fmt.Sprintf("map some of its columns to TEXT (kept off the page) or a shorter type in the config file, e.g. tables: {%s: {columns: {NAME: {type: TEXT}}}}, or leave columns out (drop: true); sluice plan prints the CREATE TABLE", t.Source.Name.Name)
			}
			refused = append(refused, failure.Wrap(err, failure.Schema, "SLUICE-TARGET-DDL", "the target refuses table %s as planned (tried as a temporary table; nothing was created)", t.Target).
				With("table", t.Target).WithHint("%s", hint))
		case mysql.IsStatementRefused(err):
			// Not about the table: no CREATE TEMPORARY TABLES privilege, a
			// server without temporary tables, the temporary tablespace
			// full. The run's own CREATE TABLE says what the server
			// refuses, table by table.
			return refused, nil
		default:
			return nil, err
		}
	}
	return refused, nil
}

// createProbe creates t's table as the temporary table probeTable on conn.
func createProbe(ctx context.Context, conn *sql.Conn, t *plan.Table) error {
	ddl, err := t.CreateTemporary(probeTable)
	if err != nil {
		return err
	}
	drop := "DROP TEMPORARY TABLE IF EXISTS " + typemap.QuoteIdent(probeTable)
	if _, err := conn.ExecContext(ctx, drop); err != nil {
		return fmt.Errorf("target: drop temporary table %s: %w", probeTable, err)
	}
	_, err = conn.ExecContext(ctx, ddl)
	return err
}

// dropProbe drops probeTable, also when ctx has ended.
func dropProbe(ctx context.Context, conn *sql.Conn) {
	conn.ExecContext(context.WithoutCancel(ctx), "DROP TEMPORARY TABLE IF EXISTS "+typemap.QuoteIdent(probeTable))
}

// compareShape lists how have differs from want (t's table as the target
// defines it), the ALTER TABLE clauses that align the columns, and the first
// column that differs.
func compareShape(t *plan.Table, have, want mysql.TableShape) (problems, alter []string, column string) {
	differs := func(name, problem string) {
		problems = append(problems, problem)
		if column == "" {
			column = name
		}
	}
	found := map[string]mysql.ColumnShape{}
	for _, c := range have.Columns {
		found[strings.ToLower(c.Name)] = c
	}
	for _, w := range want.Columns {
		def := t.ColumnByTarget(w.Name).Definition()
		h, ok := found[strings.ToLower(w.Name)]
		delete(found, strings.ToLower(w.Name))
		switch {
		case !ok:
			differs(w.Name, fmt.Sprintf("column %s is missing (expected %s)", w.Name, w.Describe()))
			alter = append(alter, "ADD COLUMN "+def)
		case h.Type != w.Type || h.Collation != w.Collation || h.Extra != w.Extra || !h.Nullable && w.Nullable:
			differs(w.Name, fmt.Sprintf("column %s is %s, expected %s", w.Name, h.Describe(), w.Describe()))
			alter = append(alter, "MODIFY COLUMN "+def)
		}
	}
	for _, h := range have.Columns {
		if _, extra := found[strings.ToLower(h.Name)]; extra {
			differs(h.Name, fmt.Sprintf("column %s (%s) is not one sluice writes", h.Name, h.Describe()))
			alter = append(alter, "DROP COLUMN "+typemap.QuoteIdent(h.Name))
		}
	}
	for _, key := range want.Unique {
		if !hasUnique(have, key) {
			differs("", fmt.Sprintf("it has no unique index on (%s), the row key sluice matches rows on", strings.Join(key, ", ")))
		}
	}
	return problems, alter, column
}

// hasUnique reports whether shape has a unique index on exactly the columns
// of key (in any order: the same rows are unique).
func hasUnique(shape mysql.TableShape, key []string) bool {
	norm := func(cols []string) []string {
		out := make([]string, len(cols))
		for i, c := range cols {
			out[i] = strings.ToLower(c)
		}
		slices.Sort(out)
		return out
	}
	want := norm(key)
	for _, cols := range shape.Unique {
		if slices.Equal(norm(cols), want) {
			return true
		}
	}
	return false
}

// checkRowKey refuses a target table sluice made whose unique index on the
// row key is gone (changed by hand since): without it an upsert matches no
// row and inserts a second one, and a chunk's REPLACE keeps both.
func checkRowKey(ctx context.Context, tgt *mysql.Target, t *plan.Table) error {
	if len(t.Key) == 0 {
		return nil // keyless: matched on all columns
	}
	var key []string
	for _, k := range t.Key {
		key = append(key, t.Columns[k].Target)
	}
	have, err := mysql.ReadShape(ctx, tgt.DB, t.Target)
	if err != nil || hasUnique(have, key) {
		return err
	}
	quoted := make([]string, len(key))
	for i, c := range key {
		quoted[i] = typemap.QuoteIdent(c)
	}
	return failure.New(failure.Schema, "SLUICE-TARGET-SHAPE", "target table %s has no unique index on its row key (%s) any more: sluice matches rows on it, and without it a change would add a second row instead of updating the first",
		t.Target, strings.Join(key, ", ")).
		With("table", t.Target).
		WithHint("give it back: ALTER TABLE %s ADD PRIMARY KEY (%s) (remove duplicate rows first; sluice verify names them), then run the command again", typemap.QuoteIdent(t.Target), strings.Join(quoted, ", "))
}

// MissingUniqueIndexes names the source's unique indexes on t (read now)
// that the target table lacks, such as one made on the source while the
// sync ran: the application relies on the constraint, which the target
// would not enforce after the switch. Expression, partial and deferrable
// ones, and ones on a column the mapping drops, are left out (the plan
// reports those).
func MissingUniqueIndexes(ctx context.Context, src *postgres.Source, tgt *mysql.Target, t *plan.Table) ([]string, error) {
	now, err := src.ReadTable(ctx, t.Source.Name)
	if err != nil {
		return nil, err
	}
	have, err := mysql.ReadShape(ctx, tgt.DB, t.Target)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, ix := range now.Indexes {
		if !ix.Unique || ix.Primary || ix.Deferrable || ix.Unsupported != "" {
			continue
		}
		var cols []string
		for _, c := range ix.Columns {
			i := slices.IndexFunc(t.Columns, func(pc plan.Column) bool { return pc.Source == c })
			if i < 0 {
				cols = nil
				break
			}
			cols = append(cols, t.Columns[i].Target)
		}
		if len(cols) > 0 && !hasUnique(have, cols) {
			missing = append(missing, fmt.Sprintf("%s (%s)", ix.Name, strings.Join(cols, ", ")))
		}
	}
	return missing, nil
}
