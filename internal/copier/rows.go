package copier

import (
	"bufio"
	"context"
	"errors"
	"io"

	"golang.org/x/time/rate"

	"github.com/sluice-db/sluice/internal/codec"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Reject is a row the target cannot hold, written to the reject file.
type Reject struct {
	Table  string            `json:"table"`
	Key    map[string]string `json:"key"`
	Column string            `json:"column"`
	Value  string            `json:"value"`
	Reason string            `json:"reason"`
}

// rowTranslator is the io.Writer COPY writes the source's text rows into; it
// converts each row for the target and writes LOAD DATA rows to out.
type rowTranslator struct {
	ctx     context.Context
	table   *plan.Table
	out     *bufio.Writer
	skipBad bool
	limiter *rate.Limiter
	onRows  func(n int64) // progress callback, called every few hundred rows
	lines   codec.LineWriter
	split   codec.Splitter
	row     [][]byte
	encoded []byte
	rows    int64
	unseen  int64 // rows not yet reported to onRows
	rejects []Reject
	// passthrough: no column needs converting for a bulk load, so a COPY
	// line goes to LOAD DATA as it is unless it holds an escape MySQL reads
	// differently (\f, \v, octal or hex).
	passthrough bool
}

func newRowTranslator(ctx context.Context, t *plan.Table, out io.Writer, skipBad bool, limiter *rate.Limiter, onRows func(int64)) *rowTranslator {
	r := &rowTranslator{ctx: ctx, table: t, out: bufio.NewWriterSize(out, 256<<10), skipBad: skipBad,
		limiter: limiter, onRows: onRows, row: make([][]byte, len(t.Columns))}
	r.lines.Line = r.line
	r.passthrough = true
	for _, c := range t.Columns {
		if c.Convert != nil && !c.BulkSafe {
			r.passthrough = false
		}
	}
	return r
}

// loadDataSafe reports whether a COPY text line means the same to LOAD DATA:
// both use \N, \\, \t, \n, \r and \b; only PostgreSQL has \f and \v.
func loadDataSafe(line []byte) bool {
	for i := 0; i < len(line); i++ {
		if line[i] != '\\' {
			continue
		}
		i++
		if i < len(line) && (line[i] == 'f' || line[i] == 'v' || (line[i] >= '0' && line[i] <= '7') || line[i] == 'x') {
			return false
		}
	}
	return true
}

func (r *rowTranslator) Write(p []byte) (int, error) { return r.lines.Write(p) }

const reportEvery = 512

func (r *rowTranslator) line(line []byte) error {
	if r.passthrough && loadDataSafe(line) {
		if _, err := r.out.Write(line); err != nil {
			return err
		}
		if err := r.out.WriteByte('\n'); err != nil {
			return err
		}
		return r.counted()
	}
	fields, err := r.split.Split(line)
	if err != nil {
		return err
	}
	if len(fields) != len(r.table.Columns) {
		return errors.New("source row has an unexpected number of fields")
	}
	for i, c := range r.table.Columns {
		v := fields[i]
		if v == nil || c.Convert == nil {
			r.row[i] = v
			continue
		}
		conv, err := c.Convert(v)
		if err != nil {
			var bv *typemap.BadValue
			if !errors.As(err, &bv) {
				return err
			}
			rej := Reject{Table: r.table.Source.Name.String(), Key: r.key(fields), Column: c.Target, Value: clip(v), Reason: bv.Reason}
			if !r.skipBad {
				e := failure.New(failure.BadRow, "SLUICE-COPY-BADROW", "table %s, key %s, column %s: %s",
					rej.Table, formatKey(rej.Key), rej.Column, rej.Reason).
					With("table", rej.Table).With("key", formatKey(rej.Key)).With("column", rej.Column).
					WithHint("fix the value on the source, map the column to another type in the config file, or run with --on-bad-row=skip to write such rows to the reject file")
				return e
			}
			r.rejects = append(r.rejects, rej)
			return nil
		}
		r.row[i] = conv
	}
	r.encoded = codec.AppendLoadDataRow(r.encoded[:0], r.row)
	if _, err := r.out.Write(r.encoded); err != nil {
		return err
	}
	return r.counted()
}

// counted notes one more row written, reporting progress now and then.
func (r *rowTranslator) counted() error {
	r.rows++
	r.unseen++
	if r.unseen >= reportEvery {
		return r.report()
	}
	return nil
}

func (r *rowTranslator) report() error {
	n := r.unseen
	r.unseen = 0
	if r.onRows != nil {
		r.onRows(n)
	}
	if r.limiter != nil {
		return WaitRows(r.ctx, r.limiter, n)
	}
	return nil
}

// WaitRows takes n tokens, in pieces no larger than the limiter's burst.
func WaitRows(ctx context.Context, l *rate.Limiter, n int64) error {
	for n > 0 {
		take := min(n, int64(l.Burst()))
		if err := l.WaitN(ctx, int(take)); err != nil {
			return err
		}
		n -= take
	}
	return nil
}

// Close flushes what is buffered; a trailing line without '\n' is an error.
func (r *rowTranslator) Close() error {
	if r.lines.Partial() {
		return errors.New("source COPY output ended in the middle of a row")
	}
	if r.unseen > 0 {
		if err := r.report(); err != nil {
			return err
		}
	}
	return r.out.Flush()
}

func (r *rowTranslator) key(fields [][]byte) map[string]string {
	k := make(map[string]string, len(r.table.Key))
	for _, i := range r.table.Key {
		k[r.table.Columns[i].Target] = string(fields[i])
	}
	return k
}

func clip(v []byte) string {
	const max = 200
	if len(v) > max {
		return string(v[:max]) + "…"
	}
	return string(v)
}
