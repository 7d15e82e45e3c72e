package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Value is one source column's value in the source's text form.
type Value struct {
	Text      string
	Null      bool
	Absent    bool // not sent: an unchanged TOASTed value, or a column the mapping drops
	Canonical bool // Text is exactly what the source prints
}

// Input is one row to convert, or with KeyOnly one row key.
type Input struct {
	Vals    []Value // by source column
	KeyOnly bool
}

// Output is an Input in the target's form.
type Output struct {
	Key      []string  // the key columns in source text form
	Row      apply.Row // the row; KeyOnly: only the key columns are set
	InFilter bool      // the row passes the table's row filter
	Err      error     // this input cannot be converted (nothing else is wrong)
}

// Normalizer converts rows that did not come from a COPY of the source into
// exactly what the copy writes.
type Normalizer struct {
	Src *postgres.Source
}

// Convert converts ins. raw means the values are the change stream's text
// (pgoutput), which is always canonical and goes through each column's
// StreamConvert. The error is for a source that could not be asked; a
// problem with one input is in its Output.Err.
func (n *Normalizer) Convert(ctx context.Context, t *Table, ins []Input, raw bool) ([]Output, error) {
	out := make([]Output, len(ins))
	var evalRows, evalKeys []int
	for i, in := range ins {
		switch {
		case in.KeyOnly && (raw || t.canonical(in, true)):
			out[i] = t.goRow(in, raw)
		case in.KeyOnly:
			evalKeys = append(evalKeys, i)
		case !t.sourceEval && (raw || t.canonical(in, false)):
			out[i] = t.goRow(in, raw)
		default:
			evalRows = append(evalRows, i)
		}
	}
	if len(evalRows) > 0 {
		rows := make([][]*string, 0, len(evalRows))
		idx := make([]int, 0, len(evalRows))
		for _, i := range evalRows {
			r, err := t.evalInput(ins[i])
			if err != nil {
				out[i].Err = err
				continue
			}
			rows = append(rows, r)
			idx = append(idx, i)
		}
		if err := n.eval(ctx, t, rows, false, func(j int, fields [][]byte, err error) {
			if err != nil {
				out[idx[j]].Err = err
				return
			}
			out[idx[j]] = t.fromFields(fields, false)
		}); err != nil {
			return nil, err
		}
	}
	if len(evalKeys) > 0 {
		keys := make([][]*string, len(evalKeys))
		for j, i := range evalKeys {
			k := make([]*string, len(t.keySrc))
			for p, si := range t.keySrc {
				v := ins[i].Vals[si]
				if !v.Null && !v.Absent {
					s := v.Text
					k[p] = &s
				}
			}
			keys[j] = k
		}
		if err := n.eval(ctx, t, keys, true, func(j int, fields [][]byte, err error) {
			if err != nil {
				out[evalKeys[j]].Err = err
				return
			}
			out[evalKeys[j]] = t.fromFields(fields, true)
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// canonical reports whether every value the conversion reads is the
// source's exact text.
func (t *Table) canonical(in Input, keyOnly bool) bool {
	if keyOnly {
		for _, si := range t.keySrc {
			if v := in.Vals[si]; !v.Null && !(v.Canonical && t.fast[si]) {
				return false
			}
		}
		return true
	}
	for si, v := range in.Vals {
		if t.dropped[si] || v.Null {
			continue
		}
		if !v.Canonical || !t.fast[si] {
			return false
		}
	}
	return true
}

// goRow converts without the source.
func (t *Table) goRow(in Input, raw bool) Output {
	var out Output
	out.InFilter = true
	out.Key = make([]string, len(t.keySrc))
	for p, si := range t.keySrc {
		v := in.Vals[si]
		if v.Null || v.Absent {
			out.Err = fmt.Errorf("key column %s is null", t.Plan.Source.Columns[si].Name)
			return out
		}
		out.Key[p] = v.Text
	}
	cols := t.Plan.Columns
	out.Row = make(apply.Row, len(cols))
	convert := func(i int, v Value) error {
		if v.Null {
			return nil
		}
		if v.Absent {
			out.Row[i].Unchanged = true
			return nil
		}
		d := []byte(v.Text)
		var err error
		c := cols[i]
		if raw && c.StreamConvert != nil {
			if d, err = c.StreamConvert(d); err != nil {
				return columnErr(c, err)
			}
		}
		if c.Convert != nil {
			if d, err = c.Convert(d); err != nil {
				return columnErr(c, err)
			}
		}
		out.Row[i].Data = d
		return nil
	}
	if in.KeyOnly {
		for p, k := range t.Plan.Key {
			if err := convert(k, in.Vals[t.keySrc[p]]); err != nil {
				out.Err = err
				return out
			}
		}
		return out
	}
	for i, si := range t.colSrc {
		if err := convert(i, in.Vals[si]); err != nil {
			out.Err = err
			return out
		}
	}
	return out
}

func columnErr(c plan.Column, err error) error {
	var bv *typemap.BadValue
	if errors.As(err, &bv) {
		return fmt.Errorf("column %s: %s", c.Target, bv.Reason)
	}
	return fmt.Errorf("column %s: %w", c.Target, err)
}

// evalInput lays a row out for EvalQuery.
func (t *Table) evalInput(in Input) ([]*string, error) {
	row := make([]*string, len(in.Vals))
	for si, v := range in.Vals {
		switch {
		case v.Absent && !t.dropped[si]:
			return nil, fmt.Errorf("column %s was not sent, and the table's computed columns or row filter need the whole row (set REPLICA IDENTITY FULL on the source table)",
				t.Plan.Source.Columns[si].Name)
		case v.Absent || v.Null:
		default:
			s := v.Text
			row[si] = &s
		}
	}
	return row, nil
}

// fromFields converts one row of an evaluation query's output.
func (t *Table) fromFields(fields [][]byte, keyOnly bool) Output {
	var out Output
	cols := t.Plan.Columns
	out.Row = make(apply.Row, len(cols))
	out.Key = make([]string, len(t.Plan.Key))
	set := func(i int, v []byte) error {
		if v == nil {
			return nil
		}
		d := v
		if c := cols[i]; c.Convert != nil {
			var err error
			if d, err = c.Convert(d); err != nil {
				return columnErr(c, err)
			}
		}
		out.Row[i].Data = d
		return nil
	}
	// key sets key column p (plan column k) from v, in the copy's form.
	key := func(p, k int, v []byte) error {
		if v == nil {
			return fmt.Errorf("key column %s is null", cols[k].Source)
		}
		var err error
		if out.Key[p], err = cols[k].PadKey(string(v)); err != nil {
			return columnErr(cols[k], err)
		}
		return nil
	}
	if keyOnly {
		out.InFilter = true
		for p, k := range t.Plan.Key {
			if out.Err = key(p, k, fields[p]); out.Err != nil {
				return out
			}
			if err := set(k, fields[p]); err != nil {
				out.Err = err
				return out
			}
		}
		return out
	}
	for p, k := range t.Plan.Key {
		if out.Err = key(p, k, fields[k]); out.Err != nil {
			return out
		}
	}
	for i := range cols {
		if err := set(i, fields[i]); err != nil {
			out.Err = err
			return out
		}
	}
	out.InFilter = string(fields[len(cols)]) == "t"
	return out
}

// eval runs the evaluation query for rows and calls visit for each, in
// order. When the source refuses a value, the batch is split in halves
// until the rows it refuses are found; each gets its error.
func (n *Normalizer) eval(ctx context.Context, t *Table, rows [][]*string, keyOnly bool, visit func(i int, fields [][]byte, err error)) error {
	if len(rows) == 0 {
		return nil
	}
	q := ""
	if keyOnly {
		q = t.Plan.EvalKeysQuery(t.CastTypes)
	} else {
		q = t.Plan.EvalQuery(t.CastTypes)
	}
	got, err := n.query(ctx, q, rows)
	if err == nil {
		if len(got) != len(rows) {
			return fmt.Errorf("source: evaluating %d rows of %s returned %d", len(rows), t.Name, len(got))
		}
		for i, f := range got {
			visit(i, f, nil)
		}
		return nil
	}
	if !isDataError(err) {
		return err
	}
	if len(rows) == 1 {
		visit(0, nil, fmt.Errorf("the source refuses a value: %s", pgMessage(err)))
		return nil
	}
	half := len(rows) / 2
	if err := n.eval(ctx, t, rows[:half], keyOnly, visit); err != nil {
		return err
	}
	return n.eval(ctx, t, rows[half:], keyOnly, func(i int, f [][]byte, err error) { visit(half+i, f, err) })
}

// query runs an evaluation query with the rows as one text[] per column and
// returns every row's values in the source's text form (as COPY prints
// them, unescaped), nil for NULL.
func (n *Normalizer) query(ctx context.Context, q string, rows [][]*string) ([][][]byte, error) {
	cols := len(rows[0])
	args := make([]any, 0, cols+1)
	params := make([][]*string, cols)
	for c := range params {
		params[c] = make([]*string, len(rows))
		for r, row := range rows {
			params[c][r] = row[c]
		}
	}
	args = append(args, pgx.QueryResultFormats{pgx.TextFormatCode})
	for _, p := range params {
		args = append(args, p)
	}
	res, err := n.Src.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := make([][][]byte, 0, len(rows))
	for res.Next() {
		raw := res.RawValues()
		vals := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				vals[i] = append(make([]byte, 0, len(v)), v...)
			}
		}
		out = append(out, vals)
	}
	return out, res.Err()
}

// isDataError tells a value the source refuses from a source that is down.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "P0", "39", "2F":
		return true
	}
	return false
}

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}
