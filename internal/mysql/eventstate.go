package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Bookkeeping of the event and partitioned paths, kept in the target next to
// the rows and updated in the same transactions.
const (
	// EventVersionsTable holds, per row an event touched, the newest event
	// version applied (a tombstone when the row was deleted), so a duplicate,
	// redelivered or older event changes nothing.
	EventVersionsTable = "_sluice_event_versions"
	// EventConsumersTable holds, per JetStream consumer of events, the last
	// stream sequence applied and the counters status shows.
	EventConsumersTable = "_sluice_event_consumers"
	// PartitionsTable holds, per partition of a published change stream, the
	// last stream sequence and source position applied, and the last fence
	// reached.
	PartitionsTable = "_sluice_partitions"
)

// EnsureEventTables creates the event bookkeeping tables.
func (t *Target) EnsureEventTables(ctx context.Context) error {
	for _, ddl := range []string{
		// key_hash: the first 16 bytes of SHA-256 over the target table's
		// name and the row key (source text form), NUL-separated.
		`CREATE TABLE IF NOT EXISTS ` + EventVersionsTable + ` (
			key_hash BINARY(16) NOT NULL PRIMARY KEY,
			table_name VARCHAR(64) NOT NULL,
			version BIGINT NOT NULL,
			deleted BOOLEAN NOT NULL DEFAULT 0
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS ` + EventConsumersTable + ` (
			name VARCHAR(128) NOT NULL PRIMARY KEY,
			stream VARCHAR(255) NOT NULL,
			last_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
			applied BIGINT NOT NULL DEFAULT 0,
			ignored BIGINT NOT NULL DEFAULT 0,
			dead_lettered BIGINT NOT NULL DEFAULT 0,
			own_until BIGINT UNSIGNED NOT NULL DEFAULT 0,
			updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
	} {
		if _, err := t.DB.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("target: create sluice event tables: %w", err)
		}
	}
	// own_until came later: a table made by an earlier version gets it.
	var has int
	if err := t.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'own_until'`, EventConsumersTable).Scan(&has); err != nil {
		return fmt.Errorf("target: read the columns of %s: %w", EventConsumersTable, err)
	}
	if has == 0 {
		if _, err := t.DB.ExecContext(ctx, `ALTER TABLE `+EventConsumersTable+` ADD COLUMN own_until BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER dead_lettered`); err != nil {
			return fmt.Errorf("target: add own_until to %s: %w", EventConsumersTable, err)
		}
	}
	return nil
}

// ConsumerState is one row of EventConsumersTable.
type ConsumerState struct {
	Name         string
	Stream       string
	LastSeq      uint64
	Applied      int64
	Ignored      int64
	DeadLettered int64
	// OwnUntil: the stream sequences after LastSeq up to this one are dead
	// letters this consumer sent, no events (a removal of them by the
	// stream's limits loses nothing).
	OwnUntil uint64
	// Stored is when the row last changed (the last progress stored).
	Stored time.Time
}

// LoadConsumerState reads a consumer's row, creating it when missing.
func (t *Target) LoadConsumerState(ctx context.Context, name, stream string) (ConsumerState, error) {
	st := ConsumerState{Name: name, Stream: stream}
	if _, err := t.DB.ExecContext(ctx, `INSERT IGNORE INTO `+EventConsumersTable+` (name, stream) VALUES (?, ?)`, name, stream); err != nil {
		return st, fmt.Errorf("target: record consumer %s: %w", name, err)
	}
	var stored float64
	err := t.DB.QueryRowContext(ctx, `SELECT stream, last_seq, applied, ignored, dead_lettered, own_until, UNIX_TIMESTAMP(updated_at) FROM `+EventConsumersTable+` WHERE name = ?`, name).
		Scan(&st.Stream, &st.LastSeq, &st.Applied, &st.Ignored, &st.DeadLettered, &st.OwnUntil, &stored)
	if err != nil {
		return st, fmt.Errorf("target: read consumer %s: %w", name, err)
	}
	st.Stored = unixTime(stored)
	return st, nil
}

// StoreConsumerState records a consumer's progress inside tx.
func StoreConsumerState(ctx context.Context, tx *sql.Tx, st ConsumerState) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+EventConsumersTable+` SET stream = ?, last_seq = ?, applied = ?, ignored = ?, dead_lettered = ?, own_until = ? WHERE name = ?`,
		st.Stream, st.LastSeq, st.Applied, st.Ignored, st.DeadLettered, st.OwnUntil, st.Name)
	if err != nil {
		return fmt.Errorf("target: record progress of consumer %s: %w", st.Name, err)
	}
	return nil
}

// EnsurePartitionsTable creates PartitionsTable.
func (t *Target) EnsurePartitionsTable(ctx context.Context) error {
	_, err := t.DB.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+PartitionsTable+` (
			stream VARCHAR(255) NOT NULL,
			partition_no INT NOT NULL,
			partitions INT NOT NULL,
			last_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
			pos_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0,
			pos_n INT UNSIGNED NOT NULL DEFAULT 0,
			applied BIGINT NOT NULL DEFAULT 0,
			fence VARCHAR(128) NOT NULL DEFAULT '',
			updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
			PRIMARY KEY (stream, partition_no)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
	if err != nil {
		return fmt.Errorf("target: create %s: %w", PartitionsTable, err)
	}
	return nil
}

// PartitionState is one row of PartitionsTable.
type PartitionState struct {
	Stream     string
	Partition  int
	Partitions int
	LastSeq    uint64
	PosLSN     uint64
	PosN       uint32
	Applied    int64
	Fence      string
	Stored     time.Time // when the row last changed
}

// unixTime is the time of UNIX_TIMESTAMP's seconds (the session's time
// zone is UTC, as the DATETIME was written).
func unixTime(seconds float64) time.Time {
	return time.Unix(0, int64(seconds*1e9)).UTC()
}

// LoadPartition reads a partition's row, creating it when missing.
func (t *Target) LoadPartition(ctx context.Context, stream string, partition, partitions int) (PartitionState, error) {
	st := PartitionState{Stream: stream, Partition: partition, Partitions: partitions}
	if _, err := t.DB.ExecContext(ctx, `INSERT IGNORE INTO `+PartitionsTable+` (stream, partition_no, partitions) VALUES (?, ?, ?)`,
		stream, partition, partitions); err != nil {
		return st, fmt.Errorf("target: record partition %d: %w", partition, err)
	}
	var stored float64
	err := t.DB.QueryRowContext(ctx, `SELECT partitions, last_seq, pos_lsn, pos_n, applied, fence, UNIX_TIMESTAMP(updated_at) FROM `+PartitionsTable+` WHERE stream = ? AND partition_no = ?`,
		stream, partition).Scan(&st.Partitions, &st.LastSeq, &st.PosLSN, &st.PosN, &st.Applied, &st.Fence, &stored)
	if err != nil {
		return st, fmt.Errorf("target: read partition %d: %w", partition, err)
	}
	st.Stored = unixTime(stored)
	return st, nil
}

// Partitions reads every partition row of stream.
func (t *Target) Partitions(ctx context.Context, stream string) ([]PartitionState, error) {
	rows, err := t.DB.QueryContext(ctx, `SELECT partition_no, partitions, last_seq, pos_lsn, pos_n, applied, fence FROM `+PartitionsTable+`
		WHERE stream = ? ORDER BY partition_no`, stream)
	if err != nil {
		return nil, fmt.Errorf("target: read %s: %w", PartitionsTable, err)
	}
	defer rows.Close()
	var out []PartitionState
	for rows.Next() {
		st := PartitionState{Stream: stream}
		if err := rows.Scan(&st.Partition, &st.Partitions, &st.LastSeq, &st.PosLSN, &st.PosN, &st.Applied, &st.Fence); err != nil {
			return nil, fmt.Errorf("target: read %s: %w", PartitionsTable, err)
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// StorePartition records a partition's progress inside tx.
func StorePartition(ctx context.Context, tx *sql.Tx, st PartitionState) error {
	_, err := tx.ExecContext(ctx, `UPDATE `+PartitionsTable+` SET partitions = ?, last_seq = ?, pos_lsn = ?, pos_n = ?, applied = ?, fence = ?
		WHERE stream = ? AND partition_no = ?`, st.Partitions, st.LastSeq, st.PosLSN, st.PosN, st.Applied, st.Fence, st.Stream, st.Partition)
	if err != nil {
		return fmt.Errorf("target: record progress of partition %d: %w", st.Partition, err)
	}
	return nil
}
