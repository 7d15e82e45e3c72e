package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

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
// in the same transaction (a tombstone for a delete). One Store writes to a
// target at a time (the events sync holds a named lock and applies one
// batch at a time), so it can keep the versions in memory: when the version
// table fits in the cache, every version is known without reading it.
type Store struct {
	DB *sql.DB
	// CacheRows bounds the in-memory copy of the version table (about 40
	// bytes a row); 0 disables it.
	CacheRows int

	cache    map[[16]byte]int64
	complete bool // the cache holds every row of the version table
}

// Load fills the cache with the version table when it fits.
func (s *Store) Load(ctx context.Context) error {
	s.cache, s.complete = map[[16]byte]int64{}, false
	if s.CacheRows <= 0 {
		return nil
	}
	var n int
	if err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+mysql.EventVersionsTable).Scan(&n); err != nil {
		return fmt.Errorf("target: count event versions: %w", err)
	}
	if n > s.CacheRows*3/4 {
		return nil // read as needed
	}
	rows, err := s.DB.QueryContext(ctx, `SELECT key_hash, version FROM `+mysql.EventVersionsTable)
	if err != nil {
		return fmt.Errorf("target: read event versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h []byte
		var v int64
		if err := rows.Scan(&h, &v); err != nil {
			return fmt.Errorf("target: read event versions: %w", err)
		}
		s.cache[[16]byte(h)] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("target: read event versions: %w", err)
	}
	s.complete = true
	return nil
}

// remember records versions known to be committed.
func (s *Store) remember(known map[[16]byte]int64) {
	if s.CacheRows <= 0 {
		return
	}
	if s.cache == nil {
		s.cache = map[[16]byte]int64{}
	}
	for h, v := range known {
		s.cache[h] = v
	}
	if len(s.cache) > s.CacheRows {
		// Over the bound: forget a quarter (map order is random) and read
		// what is missing from now on.
		drop := len(s.cache) - s.CacheRows*3/4
		for h := range s.cache {
			if drop == 0 {
				break
			}
			delete(s.cache, h)
			drop--
		}
		s.complete = false
	}
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
		if err == nil || !mysql.IsTransient(err) || attempt >= 8 || ctx.Err() != nil {
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
				if mysql.IsDuplicate(err) && pass == 0 {
					retry = append(retry, i)
				}
			default:
				return res, nil, err
			}
		}
	}
	return res, poison, nil
}

// interlock is the isolation of event and chunk transactions. Copy and
// events meet on the version rows: a chunk locks the versions of its keys
// (LOCK IN SHARE MODE), including the gaps of keys with none, so an event
// for one of them waits for the chunk or the chunk for the event. Only
// REPEATABLE READ takes gap locks; a server whose default is READ COMMITTED
// would let an event's row be overwritten by the chunk's older one.
var interlock = &sql.TxOptions{Isolation: sql.LevelRepeatableRead}

func (s *Store) apply(ctx context.Context, ops []Op, within Within) (Result, error) {
	res := Result{Applied: make([]bool, len(ops))}
	tx, err := s.DB.BeginTx(ctx, interlock)
	if err != nil {
		return res, fmt.Errorf("target: begin: %w", err)
	}
	defer tx.Rollback()

	// The newest op per row wins within the batch.
	best := make(map[[16]byte]int, len(ops))
	var order [][16]byte
	for i, op := range ops {
		j, ok := best[op.Hash]
		if !ok {
			order = append(order, op.Hash)
		}
		if !ok || op.Version > ops[j].Version {
			best[op.Hash] = i
		}
	}
	// Stored versions: from the cache, else from the table.
	known := make(map[[16]byte]int64, len(order))
	var missing [][16]byte
	for _, h := range order {
		if v, ok := s.cache[h]; ok {
			known[h] = v
		} else if !s.complete {
			missing = append(missing, h)
		}
	}
	if err := readVersions(ctx, tx, missing, known); err != nil {
		return res, err
	}
	byTable := map[*Table][]int{}
	var tables []*Table
	for _, h := range order {
		i := best[h]
		if v, ok := known[h]; ok && ops[i].Version <= v {
			continue
		}
		t := ops[i].Table
		if _, ok := byTable[t]; !ok {
			tables = append(tables, t)
		}
		byTable[t] = append(byTable[t], i)
	}
	// Versions first, then rows: a concurrent copy holds share locks on the
	// version rows it read, and the rows it writes wait for us only after.
	for _, t := range tables {
		if err := writeVersions(ctx, tx, t.Plan.Target, ops, byTable[t]); err != nil {
			return res, err
		}
	}
	for _, t := range tables {
		if err := writeRows(ctx, tx, t, ops, byTable[t]); err != nil {
			return res, err
		}
		for _, i := range byTable[t] {
			res.Applied[i] = true
		}
	}
	if within != nil {
		if err := within(ctx, tx, res); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(); err != nil {
		// The commit may have gone through with its answer lost: forget what
		// the cache says of these rows and read their versions when next
		// needed, or an older event could pass the check against a stale one.
		for _, t := range tables {
			for _, i := range byTable[t] {
				delete(s.cache, ops[i].Hash)
			}
		}
		s.complete = false
		return res, classify(fmt.Errorf("target: commit: %w", err))
	}
	for _, t := range tables {
		for _, i := range byTable[t] {
			known[ops[i].Hash] = ops[i].Version
		}
	}
	s.remember(known)
	return res, nil
}

// Rows per statement: few round trips (row writes are also cut by size, see
// apply.StatementEnd).
const (
	perStatement = 1000
	perRead      = 2000
)

// readVersions reads the stored versions of rows into known. A plain
// consistent read is enough: only this Store writes versions (see Store),
// and the copy, which runs concurrently, reads them with a locking read, so
// the version rows this transaction writes make it wait.
func readVersions(ctx context.Context, tx *sql.Tx, hashes [][16]byte, known map[[16]byte]int64) error {
	for start := 0; start < len(hashes); start += perRead {
		part := hashes[start:min(start+perRead, len(hashes))]
		args := make([]any, len(part))
		for i := range part {
			args[i] = part[i][:]
		}
		q := `SELECT key_hash, version FROM ` + mysql.EventVersionsTable + ` WHERE key_hash IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ") + `)`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return classify(fmt.Errorf("target: read event versions: %w", err))
		}
		for rows.Next() {
			var h []byte
			var v int64
			if err := rows.Scan(&h, &v); err != nil {
				rows.Close()
				return fmt.Errorf("target: read event versions: %w", err)
			}
			known[[16]byte(h)] = v
		}
		if err := rows.Close(); err != nil {
			return classify(fmt.Errorf("target: read event versions: %w", err))
		}
		if err := rows.Err(); err != nil {
			return classify(fmt.Errorf("target: read event versions: %w", err))
		}
	}
	return nil
}

func writeVersions(ctx context.Context, tx *sql.Tx, table string, ops []Op, idx []int) error {
	for start := 0; start < len(idx); start += perStatement {
		part := idx[start:min(start+perStatement, len(idx))]
		args := make([]any, 0, len(part)*4)
		for _, i := range part {
			h := ops[i].Hash
			args = append(args, h[:], table, ops[i].Version, ops[i].Delete)
		}
		q := `INSERT INTO ` + mysql.EventVersionsTable + ` (key_hash, table_name, version, deleted) VALUES ` +
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
		if err := writeChecked(ctx, tx, t, t.deleteSQL(len(part)), args); err != nil {
			return classify(fmt.Errorf("target: delete %d rows from %s: %w", len(part), t.Plan.Target, err))
		}
	}
	for start := 0; start < len(ups); {
		end := apply.StatementEnd(len(ups), start, len(t.cols), perStatement, func(i int) apply.Row { return ops[ups[i]].Row })
		part := ups[start:end]
		start = end
		args := make([]any, 0, len(part)*len(t.cols))
		for _, i := range part {
			for c, v := range ops[i].Row {
				args = append(args, t.arg(c, v.Data))
			}
		}
		if err := writeChecked(ctx, tx, t, t.upsertSQL(len(part)), args); err != nil {
			return classify(fmt.Errorf("target: write %d rows to %s: %w", len(part), t.Plan.Target, mysql.ExplainUpsertGuard(err)))
		}
	}
	return nil
}

// writeChecked runs a write of t's rows and refuses it when the target
// changed a value with only a warning (strict mode refuses most values it
// cannot hold, but rounds a DECIMAL to its scale with a note): a
// DataError, so the batch is applied op by op and the event at fault is
// dead-lettered or refused, the others applied.
func writeChecked(ctx context.Context, tx *sql.Tx, t *Table, query string, args []any) error {
	_, warnings, err := mysql.ExecWrite(ctx, tx, query, args...)
	if err != nil {
		return err
	}
	if len(warnings) == 0 {
		return nil
	}
	column, _ := warnings[0].Where()
	if column == "" {
		column = "unknown"
	}
	return &DataError{Err: fmt.Errorf("table %s, column %s: the target would store another value than the event's: %s (the target column holds less than the event's value: widen it, or fix the application's value)",
		t.Name, column, mysql.Summary(warnings))}
}

func classify(err error) error {
	if mysql.IsDataError(err) {
		return &DataError{Err: err}
	}
	return err
}
