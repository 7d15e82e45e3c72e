package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/mysql"
)

// Op is one versioned change to one row, in the target's form.
type Op struct {
	Table   *Table
	Delete  bool      // remove the row (a delete, or an upsert the row filter leaves out)
	Key     []string  // source text of the key columns
	Hash    [16]byte  // KeyHash(Key)
	Row     apply.Row // the row; for a delete only its key columns are needed
	Version int64
	Ref     int // the caller's index of the event
}

// Store applies versioned ops: an op is written only if its version is newer
// than the one the target holds for its row, and the new version is stored
// in the same transaction (a tombstone for a delete).
type Store struct {
	DB *sql.DB
}

// Result says, per op of a call, what happened to it.
type Result struct {
	Applied []bool // written (else ignored as not newer)
}

// Count returns the applied and ignored ops.
func (r Result) Count() (applied, ignored int) {
	for _, a := range r.Applied {
		if a {
			applied++
		} else {
			ignored++
		}
	}
	return
}

// DataError is a value or constraint the target refused: the fault of one
// op, not of the connection.
type DataError struct{ Err error }

func (e *DataError) Error() string { return e.Err.Error() }
func (e *DataError) Unwrap() error { return e.Err }

// Within runs inside an Apply transaction after the rows are written; res
// says which ops were applied.
type Within func(ctx context.Context, tx *sql.Tx, res Result) error

// Apply writes ops in one transaction, then runs within in it. Duplicates
// in ops (same row) are reduced to the highest version. Deadlocks are
// retried.
func (s *Store) Apply(ctx context.Context, ops []Op, within Within) (Result, error) {
	var res Result
	var err error
	for attempt := 0; ; attempt++ {
		res, err = s.apply(ctx, ops, within)
		if err == nil || !retryable(err) || attempt >= 8 || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
}

// Isolate applies ops one transaction each, after Apply failed with a
// DataError, so only the ops at fault fail: they come back in poison (by
// index into ops).
func (s *Store) Isolate(ctx context.Context, ops []Op) (Result, map[int]error, error) {
	res := Result{Applied: make([]bool, len(ops))}
	poison := map[int]error{}
	var de *DataError
	var retry []int
	for pass := 0; pass < 2; pass++ {
		todo := retry
		if pass == 0 {
			todo = make([]int, len(ops))
			for i := range ops {
				todo[i] = i
			}
		}
		retry = nil
		for _, i := range todo {
			r, err := s.Apply(ctx, ops[i:i+1], nil)
			switch {
			case err == nil:
				res.Applied[i] = r.Applied[0]
				delete(poison, i)
			case errors.As(err, &de):
				// A unique value may only be free once a later op of the batch
				// moved it: try those ops once more at the end.
				poison[i] = err
				if isDuplicate(err) && pass == 0 {
					retry = append(retry, i)
				}
			default:
				return res, nil, err
			}
		}
	}
	return res, poison, nil
}

type rowVersion struct {
	table string
	hash  [16]byte
}

func (s *Store) apply(ctx context.Context, ops []Op, within Within) (Result, error) {
	res := Result{Applied: make([]bool, len(ops))}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback()

	// The newest op per row wins within the batch.
	best := map[rowVersion]int{}
	var tables []*Table
	seen := map[*Table]bool{}
	for i, op := range ops {
		rv := rowVersion{op.Table.Plan.Target, op.Hash}
		if j, ok := best[rv]; !ok || op.Version > ops[j].Version {
			best[rv] = i
		}
		if !seen[op.Table] {
			seen[op.Table] = true
			tables = append(tables, op.Table)
		}
	}
	for _, t := range tables {
		var cand []int
		for rv, i := range best {
			if rv.table == t.Plan.Target {
				cand = append(cand, i)
			}
		}
		stored, err := lockVersions(ctx, tx, t.Plan.Target, ops, cand)
		if err != nil {
			return res, err
		}
		var win []int
		for _, i := range cand {
			if v, ok := stored[ops[i].Hash]; !ok || ops[i].Version > v {
				win = append(win, i)
			}
		}
		if err := writeVersions(ctx, tx, t.Plan.Target, ops, win); err != nil {
			return res, err
		}
		if err := writeRows(ctx, tx, t, ops, win); err != nil {
			return res, err
		}
		for _, i := range win {
			res.Applied[i] = true
		}
	}
	if within != nil {
		if err := within(ctx, tx, res); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(); err != nil {
		return res, classify(fmt.Errorf("target: commit: %w", err))
	}
	return res, nil
}

const perStatement = 500

// lockVersions reads the stored versions of the rows, locking them (and,
// for rows without one, the gap, so a concurrent copy waits).
func lockVersions(ctx context.Context, tx *sql.Tx, table string, ops []Op, idx []int) (map[[16]byte]int64, error) {
	out := make(map[[16]byte]int64, len(idx))
	for start := 0; start < len(idx); start += perStatement {
		part := idx[start:min(start+perStatement, len(idx))]
		args := make([]any, 0, len(part)+1)
		args = append(args, table)
		for _, i := range part {
			h := ops[i].Hash
			args = append(args, h[:])
		}
		q := `SELECT key_hash, version FROM ` + mysql.EventVersionsTable + ` WHERE table_name = ? AND key_hash IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ") + `) FOR UPDATE`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, classify(fmt.Errorf("target: read event versions of %s: %w", table, err))
		}
		for rows.Next() {
			var h []byte
			var v int64
			if err := rows.Scan(&h, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("target: read event versions of %s: %w", table, err)
			}
			var k [16]byte
			copy(k[:], h)
			out[k] = v
		}
		if err := rows.Close(); err != nil {
			return nil, classify(fmt.Errorf("target: read event versions of %s: %w", table, err))
		}
		if err := rows.Err(); err != nil {
			return nil, classify(fmt.Errorf("target: read event versions of %s: %w", table, err))
		}
	}
	return out, nil
}

func writeVersions(ctx context.Context, tx *sql.Tx, table string, ops []Op, idx []int) error {
	for start := 0; start < len(idx); start += perStatement {
		part := idx[start:min(start+perStatement, len(idx))]
		args := make([]any, 0, len(part)*4)
		for _, i := range part {
			h := ops[i].Hash
			args = append(args, table, h[:], ops[i].Version, ops[i].Delete)
		}
		q := `INSERT INTO ` + mysql.EventVersionsTable + ` (table_name, key_hash, version, deleted) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", len(part)), ", ") +
			` ON DUPLICATE KEY UPDATE version = VALUES(version), deleted = VALUES(deleted)`
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return classify(fmt.Errorf("target: store event versions of %s: %w", table, err))
		}
	}
	return nil
}

func writeRows(ctx context.Context, tx *sql.Tx, t *Table, ops []Op, idx []int) error {
	var dels, ups []int
	for _, i := range idx {
		if ops[i].Delete {
			dels = append(dels, i)
		} else {
			ups = append(ups, i)
		}
	}
	for start := 0; start < len(dels); start += perStatement {
		part := dels[start:min(start+perStatement, len(dels))]
		args := make([]any, 0, len(part)*len(t.keyCols))
		for _, i := range part {
			for _, k := range t.Plan.Key {
				args = append(args, t.arg(k, ops[i].Row[k].Data))
			}
		}
		if _, err := tx.ExecContext(ctx, t.deleteSQL(len(part)), args...); err != nil {
			return classify(fmt.Errorf("target: delete %d rows from %s: %w", len(part), t.Plan.Target, err))
		}
	}
	for start := 0; start < len(ups); start += perStatement {
		part := ups[start:min(start+perStatement, len(ups))]
		args := make([]any, 0, len(part)*len(t.cols))
		for _, i := range part {
			for c, v := range ops[i].Row {
				args = append(args, t.arg(c, v.Data))
			}
		}
		if _, err := tx.ExecContext(ctx, t.upsertSQL(len(part)), args...); err != nil {
			return classify(fmt.Errorf("target: write %d rows to %s: %w", len(part), t.Plan.Target, err))
		}
	}
	return nil
}

// MySQL errors that mean "this value or row", not "this connection".
var dataErrors = map[uint16]bool{
	1048: true, // column cannot be null
	1062: true, // duplicate entry (a unique secondary index)
	1264: true, // out of range
	1265: true, // data truncated
	1292: true, // incorrect datetime value
	1366: true, // incorrect value
	1406: true, // data too long
	1690: true, // value out of range
	3140: true, // invalid JSON (MySQL)
	3819: true, // check constraint (MySQL)
	4025: true, // check constraint (MariaDB), e.g. json_valid
	1452: true, // foreign key (checks are off, but a user may turn them on)
}

func classify(err error) error {
	var me *gomysql.MySQLError
	if errors.As(err, &me) && dataErrors[me.Number] {
		return &DataError{Err: err}
	}
	return err
}

func isDuplicate(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// retryable: deadlocks and lock wait timeouts roll the transaction back; it
// can simply run again.
func retryable(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}
