package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/sluice-db/sluice/internal/codec"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
)

// Applier collects ops and commits them with the source position.
type Applier struct {
	db       *sql.DB
	position func(ctx context.Context, tx *sql.Tx) error // stores the source position
	log      *slog.Logger
	ops      []Op
	applied  int64 // ops committed so far
}

// New returns an applier writing to db. position runs inside every commit
// to store how far the source has been applied.
func New(db *sql.DB, log *slog.Logger, position func(ctx context.Context, tx *sql.Tx) error) *Applier {
	return &Applier{db: db, position: position, log: log}
}

// Add queues an op for the next commit.
func (a *Applier) Add(op Op) { a.ops = append(a.ops, op) }

// Pending is the number of queued ops.
func (a *Applier) Pending() int { return len(a.ops) }

// Discard drops the ops queued after the first n (a transaction the run
// stops before writing).
func (a *Applier) Discard(n int) {
	n = min(n, len(a.ops))
	clear(a.ops[n:])
	a.ops = a.ops[:n]
}

// Applied is the number of ops committed so far.
func (a *Applier) Applied() int64 { return a.applied }

// Commit writes the queued ops, runs within and stores the position, all in
// one target transaction. Ops are first reduced to their net effect per row;
// if that order trips a constraint (say a unique value moving between two
// rows in one batch), the batch is replayed op by op in source order. Only
// such conflicts are replayed: after a lost connection or a COMMIT with an
// unknown outcome the caller resumes from the stored position instead.
func (a *Applier) Commit(ctx context.Context, within func(ctx context.Context, tx *sql.Tx) error) error {
	err := a.commit(ctx, within, false)
	if err != nil && ctx.Err() == nil && mysql.IsOrderConflict(err) {
		a.log.Warn("batch failed in net-effect order; replaying it change by change", "code", "SLUICE-APPLY-REPLAY", "error", err.Error(), "ops", len(a.ops))
		err = mysql.ExplainUpsertGuard(a.commit(ctx, within, true))
	}
	if err != nil {
		return err
	}
	a.applied += int64(len(a.ops))
	a.ops = a.ops[:0]
	return nil
}

func (a *Applier) commit(ctx context.Context, within func(ctx context.Context, tx *sql.Tx) error, sequential bool) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback()
	if sequential {
		for i := 0; i < len(a.ops); {
			if end := rewriteRun(a.ops, i); end > i {
				if err := rewrite(ctx, tx, a.ops[i:end]); err != nil {
					return err
				}
				i = end
				continue
			}
			if err := applyOne(ctx, tx, a.ops[i]); err != nil {
				return err
			}
			i++
		}
	} else if err := applyNet(ctx, tx, a.ops); err != nil {
		return err
	}
	if within != nil {
		if err := within(ctx, tx); err != nil {
			return err
		}
	}
	if err := a.position(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("target: commit: %w", err)
	}
	return nil
}

// applyOne applies a single op as the source did it.
func applyOne(ctx context.Context, tx *sql.Tx, op Op) error {
	t := op.Table
	switch op.Kind {
	case Upsert, Load:
		return upsert(ctx, tx, t, []Row{op.Row})
	case Delete:
		return deleteKeys(ctx, tx, t, []Row{op.Row})
	case Patch:
		_, err := patch(ctx, tx, t, op.Row, op.Row)
		return err
	case Move:
		ahead := func(key string) bool { return t.Refetch != nil && t.Ahead != nil && t.Ahead(key) }
		switch {
		case ahead(op.OldKeyID):
			if err := deleteKeys(ctx, tx, t, []Row{op.OldKey, op.Row}); err != nil {
				return err
			}
		case ahead(op.Key):
			if err := deleteKeys(ctx, tx, t, []Row{op.Row}); err != nil {
				return err
			}
			fallthrough
		default:
			if moved, err := patch(ctx, tx, t, op.Row, op.OldKey); err != nil || moved > 0 || t.Refetch == nil {
				return err
			}
		}
		err := t.Refetch(ctx, tx, op.Key)
		if warn := (*mysql.ValueWarning)(nil); errors.As(err, &warn) {
			return t.valueChanged([]Row{op.Row}, warn.Warnings)
		}
		return err
	case Rewrite:
		return rewrite(ctx, tx, []Op{op})
	case Truncate:
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+t.quoted); err != nil {
			return fmt.Errorf("target: empty %s for a TRUNCATE: %w", t.Plan.Target, err)
		}
	case Append:
		return insertRows(ctx, tx, t, []Row{op.Row})
	case DeleteOne:
		return deleteOne(ctx, tx, t, op.Row)
	case UpdateOne:
		return updateOne(ctx, tx, t, op.OldKey, op.Row)
	}
	return nil
}

// updateOne changes one row equal to old into r: it deletes one such row
// and inserts r. When the target has no such row yet (its chunk is still to
// come), r is inserted all the same: the chunk then leaves both out, as the
// stream has written them. (An UPDATE … LIMIT 1 would not do: MariaDB counts
// the rows an UPDATE changed, not those it matched, so an update that
// changes nothing, such as SET x = x, looked like a missing row and added a
// second copy.)
func updateOne(ctx context.Context, tx *sql.Tx, t *Table, old, r Row) error {
	if err := deleteOne(ctx, tx, t, old); err != nil {
		return err
	}
	return insertRows(ctx, tx, t, []Row{r})
}

// deleteOne deletes one row equal to r (a table without a key may hold
// several).
func deleteOne(ctx context.Context, tx *sql.Tx, t *Table, r Row) error {
	where, args := t.matchAll(r)
	n, err := t.write(ctx, tx, []Row{r}, "DELETE FROM "+t.quoted+" WHERE "+where+" LIMIT 1", args...)
	if err != nil {
		return fmt.Errorf("target: delete from %s: %w", t.Plan.Target, err)
	}
	if n == 0 && t.Unmatched != nil {
		t.Unmatched()
	}
	return nil
}

func insertRows(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	return writeRows(ctx, tx, t, rows, t.insertSQL, "insert %d rows into %s")
}

// writeRows runs statement (for n rows) over rows in pieces.
func writeRows(ctx context.Context, tx *sql.Tx, t *Table, rows []Row, statement func(n int) string, what string) error {
	for start := 0; start < len(rows); {
		end := partEnd(rows, start, len(t.cols))
		part := rows[start:end]
		start = end
		args := make([]any, 0, len(part)*len(t.cols))
		for _, r := range part {
			for i, v := range r {
				args = append(args, t.arg(i, v))
			}
		}
		if _, err := t.write(ctx, tx, part, statement(len(part)), args...); err != nil {
			return fmt.Errorf("target: "+what+": %w", len(part), t.Plan.Target, err)
		}
	}
	return nil
}

type netState struct {
	kind OpKind
	row  Row
}

// applyNet reduces each run of ops between barriers (TRUNCATE, key moves)
// to one state per row and writes deletes, patches and upserts in bulk.
func applyNet(ctx context.Context, tx *sql.Tx, ops []Op) error {
	start := 0
	for i := 0; i < len(ops); {
		op := ops[i]
		end := rewriteRun(ops, i)
		if end == i && op.Kind != Truncate && op.Kind != Move {
			i++
			continue
		}
		if err := applySegment(ctx, tx, ops[start:i]); err != nil {
			return err
		}
		if end > i {
			if err := rewrite(ctx, tx, ops[i:end]); err != nil {
				return err
			}
			i = end
		} else {
			if err := applyOne(ctx, tx, op); err != nil {
				return err
			}
			i++
		}
		start = i
	}
	return applySegment(ctx, tx, ops[start:])
}

// rewriteRun returns the end of the run of Rewrite ops on one table that
// starts at i (i when ops[i] is not one).
func rewriteRun(ops []Op, i int) int {
	end := i
	for end < len(ops) && ops[end].Kind == Rewrite && ops[end].Table == ops[i].Table {
		end++
	}
	return end
}

// rewrite writes a run of Rewrite ops: each key's last end state, every key
// deleted first so that rows trading keys or unique values (a swap) do not
// meet. Between source transactions every key and unique value is held once,
// so the last state per key is the run's end state.
func rewrite(ctx context.Context, tx *sql.Tx, ops []Op) error {
	t := ops[0].Table
	last := make(map[string]int, len(ops))
	var order []string
	for i, op := range ops {
		if _, seen := last[op.Key]; !seen {
			order = append(order, op.Key)
		}
		last[op.Key] = i
	}
	keys := make([]Row, len(order))
	var rows []Row
	for n, k := range order {
		op := ops[last[k]]
		keys[n] = op.OldKey
		if op.Row != nil {
			rows = append(rows, op.Row)
		}
	}
	if err := deleteKeys(ctx, tx, t, keys); err != nil {
		return err
	}
	return upsert(ctx, tx, t, rows)
}

// netTable is the net effect of a run of ops on one keyed table: what to
// delete, patch, upsert and load, each row once, in first-touched order.
type netTable struct {
	table   *Table
	deletes []Row
	patches []Row
	upserts []Row
	loads   []Row
}

// netEffect reduces ops (a run without barriers) to one state per row and
// table; ops on keyless tables are returned apart, in order.
func netEffect(ops []Op) (tables []*netTable, keyless []Op) {
	type tableState struct {
		order []string
		rows  map[string]*netState
	}
	var order []*Table
	states := map[*Table]*tableState{}
	for _, op := range ops {
		if op.Table.Plan.Keyless {
			keyless = append(keyless, op)
			continue
		}
		ts := states[op.Table]
		if ts == nil {
			ts = &tableState{rows: map[string]*netState{}}
			states[op.Table] = ts
			order = append(order, op.Table)
		}
		cur := ts.rows[op.Key]
		if cur == nil {
			cur = &netState{}
			ts.rows[op.Key] = cur
			ts.order = append(ts.order, op.Key)
		}
		switch op.Kind {
		case Upsert, Load:
			cur.kind, cur.row = op.Kind, op.Row
		case Delete:
			cur.kind, cur.row = Delete, op.Row
		case Patch:
			switch cur.kind {
			case Upsert, Load, Patch:
				cur.row = Merge(cur.row, op.Row)
			default:
				cur.kind, cur.row = Patch, op.Row
			}
		}
	}
	for _, t := range order {
		ts := states[t]
		nt := &netTable{table: t}
		for _, k := range ts.order {
			st := ts.rows[k]
			switch st.kind {
			case Delete:
				nt.deletes = append(nt.deletes, st.row)
			case Patch:
				nt.patches = append(nt.patches, st.row)
			case Upsert:
				nt.upserts = append(nt.upserts, st.row)
			case Load:
				nt.loads = append(nt.loads, st.row)
			}
		}
		tables = append(tables, nt)
	}
	return tables, keyless
}

// applySegment writes the net effect of ops: per table deletes first (a
// unique value a deleted row held is free for the rows written next), then
// patches, upserts and loads.
func applySegment(ctx context.Context, tx *sql.Tx, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	tables, keyless := netEffect(ops)
	for _, nt := range tables {
		t := nt.table
		if err := deleteKeys(ctx, tx, t, nt.deletes); err != nil {
			return err
		}
		if err := patchRows(ctx, tx, t, nt.patches); err != nil {
			return err
		}
		if err := upsert(ctx, tx, t, nt.upserts); err != nil {
			return err
		}
		if err := load(ctx, tx, t, nt.loads); err != nil {
			return err
		}
	}
	return applyKeyless(ctx, tx, keyless)
}

// applyKeyless applies ops on tables without a key in order; runs of
// inserts into one table go in multi-row statements.
func applyKeyless(ctx context.Context, tx *sql.Tx, ops []Op) error {
	for i := 0; i < len(ops); {
		if ops[i].Kind != Append {
			if err := applyOne(ctx, tx, ops[i]); err != nil {
				return err
			}
			i++
			continue
		}
		j := i
		var rows []Row
		for j < len(ops) && ops[j].Kind == Append && ops[j].Table == ops[i].Table {
			rows = append(rows, ops[j].Row)
			j++
		}
		if err := insertRows(ctx, tx, ops[i].Table, rows); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// Merge lays the sent columns of patch over base.
func Merge(base, patch Row) Row {
	out := make(Row, len(base))
	copy(out, base)
	for i, v := range patch {
		if !v.Unchanged {
			out[i] = v
		}
	}
	return out
}

// A multi-row statement holds up to rowsPerStatement rows, as long as its
// values stay under statementBytes (wide rows: MariaDB refuses a statement
// over max_allowed_packet, 16 MiB by default, and a value may take twice its
// size escaped) and its placeholders under the protocol's 65,535. A row
// larger than that goes alone.
const (
	rowsPerStatement = 500
	statementBytes   = 4 << 20
	maxPlaceholders  = 65535
)

// partEnd returns where the statement starting at rows[start] ends.
func partEnd(rows []Row, start, cols int) int {
	return StatementEnd(len(rows), start, cols, rowsPerStatement, func(i int) Row { return rows[i] })
}

// StatementEnd returns where a multi-row statement of cols values a row,
// over rows start… of n (row(i) gives each), ends: at maxRows rows,
// statementBytes of values or maxPlaceholders, whichever comes first, and
// never before one row.
func StatementEnd(n, start, cols, maxRows int, row func(i int) Row) int {
	maxRows = min(maxRows, max(maxPlaceholders/max(cols, 1), 1))
	size := 0
	end := start
	for end < n && end-start < maxRows {
		b := 0
		for _, v := range row(end) {
			b += len(v.Data)
		}
		if end > start && size+b > statementBytes {
			break
		}
		size += b
		end++
	}
	return end
}

// bulkRows is where LOAD DATA … REPLACE beats multi-row INSERTs for rows
// that are mostly new (chunks of the initial copy).
const bulkRows = 1000

// load writes copied rows: in bulk when there are many.
func load(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	if len(rows) >= bulkRows {
		return bulkUpsert(ctx, tx, t, rows)
	}
	return upsert(ctx, tx, t, rows)
}

// upsert writes rows with INSERT … ON DUPLICATE KEY UPDATE, which updates
// an existing row in place (changes from the stream mostly hit such rows).
func upsert(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	return writeRows(ctx, tx, t, rows, t.upsertSQL, "write %d rows to %s")
}

// deleteKeys deletes the rows with the keys of rows (only their key columns
// are read).
func deleteKeys(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	for start := 0; start < len(rows); start += rowsPerStatement {
		part := rows[start:min(start+rowsPerStatement, len(rows))]
		var args []any
		for _, r := range part {
			args = append(args, t.KeyArgs(r)...)
		}
		if _, err := t.write(ctx, tx, part, t.deleteSQL(len(part)), args...); err != nil {
			return fmt.Errorf("target: delete %d rows from %s: %w", len(part), t.Plan.Target, err)
		}
	}
	return nil
}

// patch updates the sent columns of the row whose key is keyRow's and
// returns how many rows changed. A row the target does not have yet (its
// chunk is not copied) is left alone: the chunk brings it with these values.
func patch(ctx context.Context, tx *sql.Tx, t *Table, r, keyRow Row) (int64, error) {
	q, args := t.patchSQL(r, keyRow)
	n, err := t.write(ctx, tx, []Row{keyRow}, q, args...)
	if err != nil {
		return 0, fmt.Errorf("target: update %s: %w", t.Plan.Target, err)
	}
	return n, nil
}

// patchRows updates the sent columns of rows, many UPDATEs to a round trip.
// (A row the target does not have yet is left alone, as by patch.)
func patchRows(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	writes := make([]mysql.Write, len(rows))
	for i, r := range rows {
		writes[i].Query, writes[i].Args = t.patchSQL(r, r)
	}
	bad, warnings, err := mysql.ExecWrites(ctx, tx, writes)
	if err == nil && bad >= 0 {
		err = t.valueChanged(rows[bad:bad+1], warnings)
	}
	if err != nil {
		return fmt.Errorf("target: update %d rows of %s: %w", len(rows), t.Plan.Target, err)
	}
	return nil
}

// bulkUpsert writes full rows with LOAD DATA … REPLACE. REPLACE may remove
// a row that holds one of these rows' unique values; that row changed in
// the same batch (the source enforced uniqueness at every commit), and its
// own net state is written in this batch too.
func bulkUpsert(ctx context.Context, tx *sql.Tx, t *Table, rows []Row) error {
	pr, pw := io.Pipe()
	go func() {
		// Guard: a panic here would end the process with status 2 and no
		// log line; as an error it fails the load and the sync says why.
		pw.CloseWithError(failure.Guard(func() error {
			buf := make([]byte, 0, 256<<10)
			fields := make([][]byte, len(t.cols))
			for _, r := range rows {
				for i, v := range r {
					fields[i] = v.Data
				}
				buf = codec.AppendLoadDataRow(buf, fields)
				if len(buf) > 200<<10 {
					if _, err := pw.Write(buf); err != nil {
						return nil // the load stopped reading: its own error says why
					}
					buf = buf[:0]
				}
			}
			pw.Write(buf)
			return nil
		}))
	}()
	_, err := mysql.LoadData(ctx, tx, t.Plan.Target, t.Plan.LoadColumns(), pr, t.replace)
	pr.CloseWithError(errors.New("load stopped"))
	if warn := (*mysql.ValueWarning)(nil); errors.As(err, &warn) {
		err = t.valueChanged(rows, warn.Warnings) // a load's rows are its lines
	}
	if err != nil {
		return fmt.Errorf("target: load %d rows into %s: %w", len(rows), t.Plan.Target, err)
	}
	return nil
}

// write runs a statement that writes rows (the statement's own, in its
// order: a warning names one by its place) and returns how many rows it
// changed. Strict mode refuses a value the target cannot hold, but some it
// changes with a note only (a DECIMAL rounded to its scale): such a
// statement is refused too, so that its transaction stores nothing changed.
func (t *Table) write(ctx context.Context, tx *sql.Tx, rows []Row, query string, args ...any) (int64, error) {
	changed, warnings, err := mysql.ExecWrite(ctx, tx, query, args...)
	if err != nil {
		return 0, err
	}
	if len(warnings) > 0 {
		return 0, t.valueChanged(rows, warnings)
	}
	return changed, nil
}

// valueChanged is the error for the warnings (at least one) a write of rows
// left: it names the table, and the key and column of the first warning.
func (t *Table) valueChanged(rows []Row, warnings []mysql.Warning) error {
	what := mysql.Summary(warnings)
	column, n := warnings[0].Where()
	key := ""
	if n >= 1 && n <= len(rows) {
		key = t.keyText(rows[n-1])
	}
	if key == "" && len(rows) == 1 {
		key = t.keyText(rows[0])
	}
	if key == "" {
		key = "unknown"
	}
	if column == "" {
		column = "unknown"
	}
	return failure.New(failure.BadRow, "SLUICE-APPLY-TARGETWARN", "table %s, key %s, column %s: the target would store another value than the source's: %s",
		t.Plan.Source.Name, key, column, what).
		With("table", t.Plan.Source.Name.String()).With("key", key).With("column", column).
		WithHint("the target column holds less than the source's value (a type set in the mapping, or a target table made by hand); nothing of the batch was written: widen the column or fix the value on the source, then run the command again: it resumes from the last applied change")
}
