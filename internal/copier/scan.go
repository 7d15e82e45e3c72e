package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"

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
	s := &rowScanner{t: t, visit: visit, conv: make([][]byte, len(t.Columns)), key: make([]string, len(t.Key))}
	if err := src.CopyOut(ctx, query, s); err != nil {
		if s.err != nil {
			return s.err
		}
		return err
	}
	if len(s.pending) > 0 {
		return errors.New("source COPY output ended in the middle of a row")
	}
	return nil
}

type rowScanner struct {
	t       *plan.Table
	visit   func([]string, [][]byte) error
	split   codec.Splitter
	pending []byte
	conv    [][]byte
	key     []string
	err     error
}

func (s *rowScanner) Write(p []byte) (int, error) {
	data := p
	if len(s.pending) > 0 {
		s.pending = append(s.pending, p...)
		data = s.pending
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if err := s.line(data[:i]); err != nil {
			s.err = err
			return 0, err
		}
		data = data[i+1:]
	}
	s.pending = append(s.pending[:0], data...)
	return len(p), nil
}

func (s *rowScanner) line(line []byte) error {
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
