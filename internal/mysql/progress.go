package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/chunk"
)

// Progress lives in the target database, next to the rows it describes, so
// a chunk's rows and its "done" mark commit in one transaction: after any
// crash a chunk is either wholly there and marked, or wholly absent.
const (
	ChunksTable = "_sluice_copy_chunks"
	TablesTable = "_sluice_tables"
)

// Table phases.
const (
	PhaseCopying = "copying"
	PhaseDone    = "done"
)

// StoredChunk is one planned chunk and whether it is copied.
type StoredChunk struct {
	No       int
	Range    chunk.Range
	Done     bool
	Rows     int64
	Rejected int64
}

// EnsureProgressTables creates sluice's bookkeeping tables.
func (t *Target) EnsureProgressTables(ctx context.Context) error {
	for _, ddl := range []string{
		`CREATE TABLE IF NOT EXISTS ` + ChunksTable + ` (
			table_name VARCHAR(64) NOT NULL,
			chunk_no INT NOT NULL,
			lo LONGTEXT NULL,
			hi LONGTEXT NULL,
			done BOOLEAN NOT NULL DEFAULT 0,
			rows_copied BIGINT NOT NULL DEFAULT 0,
			rows_rejected BIGINT NOT NULL DEFAULT 0,
			finished_at DATETIME(6) NULL,
			bound_format TINYINT NOT NULL DEFAULT 0,
			PRIMARY KEY (table_name, chunk_no)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS ` + TablesTable + ` (
			table_name VARCHAR(64) NOT NULL PRIMARY KEY,
			source_table VARCHAR(255) NOT NULL,
			phase VARCHAR(16) NOT NULL,
			source_columns MEDIUMTEXT NULL,
			updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
	} {
		if _, err := t.DB.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("target: create sluice progress tables: %w", err)
		}
	}
	// Tables made by an earlier sluice lack these.
	if err := t.addMissingColumns(ctx, ChunksTable, column{"bound_format", "TINYINT NOT NULL DEFAULT 0"}); err != nil {
		return err
	}
	return t.addMissingColumns(ctx, TablesTable, column{"source_columns", "MEDIUMTEXT NULL"})
}

// Chunk bounds are stored as chunk.Encode writes them (boundEncoded); a
// table made by an earlier version lacks the column (bound_format), and its
// rows, given the default, read as joined values (boundJoined). The text alone cannot say
// which form a row holds.
const (
	boundJoined  = 0
	boundEncoded = 1
)

// Phase returns a table's copy phase, or "" when sluice never started it.
func (t *Target) Phase(ctx context.Context, table string) (string, error) {
	var phase string
	err := t.DB.QueryRowContext(ctx, `SELECT phase FROM `+TablesTable+` WHERE table_name = ?`, table).Scan(&phase)
	if err == sql.ErrNoRows {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("target: read progress of %s: %w", table, err)
	}
	return phase, nil
}

// SetPhase records a table's copy phase.
func (t *Target) SetPhase(ctx context.Context, table, source, phase string) error {
	_, err := t.DB.ExecContext(ctx, `INSERT INTO `+TablesTable+` (table_name, source_table, phase) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE phase = VALUES(phase), source_table = VALUES(source_table)`, table, source, phase)
	if err != nil {
		return fmt.Errorf("target: record phase of %s: %w", table, err)
	}
	return nil
}

// ColumnNumbers are a source table's columns as the target records them:
// each one's attnum by name, and under TableIdentity the table's OID.
type ColumnNumbers map[string]int64

// TableIdentity is the key of ColumnNumbers that holds the table's OID (no
// column has an empty name): a table dropped and made again, or another
// renamed into its place, has another.
const TableIdentity = ""

// text is the recorded form ("" for none).
func (c ColumnNumbers) text() string {
	if c == nil {
		return ""
	}
	b, _ := json.Marshal(c) // a map of strings to numbers always encodes
	return string(b)
}

// SourceColumns returns what StartTable or SetSourceColumns recorded of
// the table's source columns (nil when nothing is).
func (t *Target) SourceColumns(ctx context.Context, table string) (ColumnNumbers, error) {
	var text sql.NullString
	err := t.DB.QueryRowContext(ctx, `SELECT source_columns FROM `+TablesTable+` WHERE table_name = ?`, table).Scan(&text)
	if err != nil && err != sql.ErrNoRows {
		return nil, fmt.Errorf("target: read the recorded source columns of %s: %w", table, err)
	}
	var cols ColumnNumbers
	if text.String != "" {
		if err := json.Unmarshal([]byte(text.String), &cols); err != nil {
			return nil, fmt.Errorf("target: read the recorded source columns of %s: %w", table, err)
		}
	}
	return cols, nil
}

// SetSourceColumns records the table's source columns.
func (t *Target) SetSourceColumns(ctx context.Context, table string, columns ColumnNumbers) error {
	if _, err := t.DB.ExecContext(ctx, `UPDATE `+TablesTable+` SET source_columns = ? WHERE table_name = ?`, columns.text(), table); err != nil {
		return fmt.Errorf("target: record the source columns of %s: %w", table, err)
	}
	return nil
}

// StartTable stores a table's chunk plan and marks it copying, in one
// transaction, replacing any earlier plan; columns describes the source
// columns copied (see SourceColumns).
func (t *Target) StartTable(ctx context.Context, table, source string, ranges []chunk.Range, columns ColumnNumbers) error {
	tx, err := t.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: store chunk plan of %s: %w", table, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+ChunksTable+` WHERE table_name = ?`, table); err != nil {
		return fmt.Errorf("target: store chunk plan of %s: %w", table, err)
	}
	const batch = 500
	for start := 0; start < len(ranges); start += batch {
		end := min(start+batch, len(ranges))
		var sb strings.Builder
		args := make([]any, 0, (end-start)*5)
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, table, i, nullable(chunk.Encode(ranges[i].Lo)), nullable(chunk.Encode(ranges[i].Hi)), boundEncoded)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+ChunksTable+` (table_name, chunk_no, lo, hi, bound_format) VALUES `+sb.String(), args...); err != nil {
			return fmt.Errorf("target: store chunk plan of %s: %w", table, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+TablesTable+` (table_name, source_table, phase, source_columns) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE phase = VALUES(phase), source_table = VALUES(source_table), source_columns = VALUES(source_columns)`, table, source, PhaseCopying, columns.text()); err != nil {
		return fmt.Errorf("target: store chunk plan of %s: %w", table, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("target: store chunk plan of %s: %w", table, err)
	}
	return nil
}

func nullable(s string, ok bool) sql.NullString { return sql.NullString{String: s, Valid: ok} }

// Chunks returns a table's stored chunk plan in order.
func (t *Target) Chunks(ctx context.Context, table string) ([]StoredChunk, error) {
	rows, err := t.DB.QueryContext(ctx, `SELECT chunk_no, lo, hi, bound_format, done, rows_copied, rows_rejected FROM `+ChunksTable+` WHERE table_name = ? ORDER BY chunk_no`, table)
	if err != nil {
		return nil, fmt.Errorf("target: read chunk plan of %s: %w", table, err)
	}
	defer rows.Close()
	var out []StoredChunk
	for rows.Next() {
		var c StoredChunk
		var lo, hi sql.NullString
		var format int
		if err := rows.Scan(&c.No, &lo, &hi, &format, &c.Done, &c.Rows, &c.Rejected); err != nil {
			return nil, fmt.Errorf("target: read chunk plan of %s: %w", table, err)
		}
		if format == boundJoined {
			c.Range = chunk.Range{Lo: chunk.DecodeJoined(lo.String, lo.Valid), Hi: chunk.DecodeJoined(hi.String, hi.Valid)}
		} else {
			var errLo, errHi error
			c.Range.Lo, errLo = chunk.Decode(lo.String, lo.Valid)
			c.Range.Hi, errHi = chunk.Decode(hi.String, hi.Valid)
			if err := errors.Join(errLo, errHi); err != nil {
				return nil, fmt.Errorf("target: chunk %d of %s in %s: %w; to start over run sluice abort, empty the target tables, then copy or sync again", c.No, table, ChunksTable, err)
			}
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ChunkDone reports whether chunk no of table is marked copied, and with how
// many rows and rejects: after a commit whose outcome was lost, whether the
// chunk is in.
func (t *Target) ChunkDone(ctx context.Context, table string, no int) (done bool, rows, rejected int64, err error) {
	err = t.DB.QueryRowContext(ctx, `SELECT done, rows_copied, rows_rejected FROM `+ChunksTable+` WHERE table_name = ? AND chunk_no = ?`, table, no).
		Scan(&done, &rows, &rejected)
	if err == sql.ErrNoRows {
		return false, 0, 0, nil
	}
	if err != nil {
		return false, 0, 0, fmt.Errorf("target: read chunk %d of %s: %w", no, table, err)
	}
	return done, rows, rejected, nil
}

// MarkChunkDone records a copied chunk inside the transaction that wrote it.
func MarkChunkDone(ctx context.Context, tx *sql.Tx, table string, no int, rows, rejected int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+ChunksTable+` SET done = 1, rows_copied = ?, rows_rejected = ?, finished_at = NOW(6)
		WHERE table_name = ? AND chunk_no = ?`, rows, rejected, table, no)
	if err != nil {
		return fmt.Errorf("target: record chunk %d of %s: %w", no, table, err)
	}
	return nil
}
