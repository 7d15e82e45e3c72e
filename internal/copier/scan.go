package copier

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sluice-db/sluice/internal/codec"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// ScanRows runs query (which selects t's source expressions) on the source
// and calls visit for every row with its key in source text form and its
// values converted to the target's form (nil for NULL). Values are only
// valid during the call. A value the target cannot hold is returned as a
// *typemap.BadValue wrapped with the table, key and column.
func ScanRows(ctx context.Context, src *postgres.Source, t *plan.Table, query string, visit func(key []string, row [][]byte) error) error {
	return scanRows(t, visit, func(w io.Writer) error { return src.CopyOut(ctx, query, w) })
}

// ScanRowsRunning is ScanRows that also returns the read's snapshot (see
// postgres.Source.CopyOutRunning): a watermark copy needs it to tell whether
// the read missed a commit, and which changes in its window the rows hold.
func ScanRowsRunning(ctx context.Context, src *postgres.Source, t *plan.Table, query string, visit func(key []string, row [][]byte) error) (postgres.Snapshot, error) {
	var snap postgres.Snapshot
	err := scanRows(t, visit, func(w io.Writer) (err error) {
		snap, err = src.CopyOutRunning(ctx, query, w)
		return err
	})
	return snap, err
}

func scanRows(t *plan.Table, visit func(key []string, row [][]byte) error, copyOut func(io.Writer) error) error {
	s := &rowScanner{t: t, visit: visit, conv: make([][]byte, len(t.Columns)), key: make([]string, len(t.Key))}
	s.lines.Line = s.line
	if err := copyOut(&s.lines); err != nil {
		if s.err != nil {
			return s.err
		}
		return err
	}
	if s.lines.Partial() {
		return errors.New("source COPY output ended in the middle of a row")
	}
	return nil
}

type rowScanner struct {
	t     *plan.Table
	visit func([]string, [][]byte) error
	lines codec.LineWriter
	split codec.Splitter
	conv  [][]byte
	key   []string
	err   error // the visit or conversion error that stopped the COPY
}

func (s *rowScanner) line(line []byte) error {
	if err := s.parse(line); err != nil {
		s.err = err
		return err
	}
	return nil
}

func (s *rowScanner) parse(line []byte) error {
	fields, err := s.split.Split(line)
	if err != nil {
		return err
	}
	if len(fields) != len(s.t.Columns) {
		return errors.New("source row has an unexpected number of fields")
	}
	for i, k := range s.t.Key {
		s.key[i] = string(fields[k])
	}
	for i, c := range s.t.Columns {
		v := fields[i]
		if v != nil && c.Convert != nil {
			if v, err = c.Convert(v); err != nil {
				var bv *typemap.BadValue
				if errors.As(err, &bv) {
					return fmt.Errorf("table %s, key %v, column %s: %w", s.t.Source.Name, s.key, c.Target, err)
				}
				return err
			}
		}
		s.conv[i] = v
	}
	return s.visit(s.key, s.conv)
}
