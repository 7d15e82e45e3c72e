package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-db/sluice/internal/failure"
)

// SyncTable holds one row per sync: where the change stream has been
// applied up to. It is updated in the same transaction as the changes.
const SyncTable = "_sluice_sync_state"

// SyncState is the stored state of a sync.
type SyncState struct {
	Slot        string
	Publication string
	AppliedLSN  uint64
	Phase       string // preparing, streaming, cutover
	// Tables are the source tables the sync ever captured (schema.TableName's
	// String), and Stream a publisher's JetStream stream: what abort removes
	// of this sync when other syncs share the bookkeeping tables, even after
	// the publication is gone. Empty in a state written by an older build.
	Tables []string
	Stream string
	// Partitions is the publisher's partition count (0: not a publisher, or
	// a state written by an older build): the appliers' progress is per
	// partition, so a resumed publisher must route keys the same way.
	Partitions int
	// SchemaStopLSN is where the run last stopped for a schema change
	// (SLUICE-SYNC-SCHEMACHANGE); the run after it goes on past it.
	SchemaStopLSN uint64
	// AheadLSN is the source position of the newest rows a key move read
	// from the source while its table was copied (see RecordAhead).
	AheadLSN uint64
	// RunID names the run that made the state, and is set as the comment
	// of the publication it creates (pgstream.TagPublication): how a run
	// that restarts (or an abort) tells its own slot from one another
	// migration made under the same name. Empty in a state written by an
	// older build.
	RunID string
	// RevokedGrants are the write privileges a cutover's revoke fence took
	// (fence.EncodeGrants), recorded before it took them: a run that
	// restarts before its cutover is recorded, or an abort, gives them back.
	RevokedGrants string
}

// PhasePreparing is a sync whose slot may not exist yet: nothing has been
// copied or streamed, so a missing slot lost no changes.
const PhasePreparing = "preparing"

// PhaseCutover is the phase of a sync that has cut over.
const PhaseCutover = "cutover"

// EnsureSyncTable creates the sync state table.
func (t *Target) EnsureSyncTable(ctx context.Context) error {
	_, err := t.DB.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+SyncTable+` (
		slot VARCHAR(64) NOT NULL PRIMARY KEY,
		publication VARCHAR(64) NOT NULL,
		applied_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0,
		phase VARCHAR(16) NOT NULL,
		source_tables MEDIUMTEXT NULL,
		stream VARCHAR(255) NOT NULL DEFAULT '',
		partitions INT NOT NULL DEFAULT 0,
		schema_stop_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0,
		ahead_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0,
		run_id VARCHAR(64) NOT NULL DEFAULT '',
		revoked_grants MEDIUMTEXT NULL,
		updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
	if err != nil {
		return fmt.Errorf("target: create %s: %w", SyncTable, err)
	}
	return t.upgradeSyncTable(ctx)
}

// upgradeSyncTable adds the columns a table made by an older build lacks.
func (t *Target) upgradeSyncTable(ctx context.Context) error {
	return t.addMissingColumns(ctx, SyncTable,
		column{"source_tables", "MEDIUMTEXT NULL"},
		column{"stream", "VARCHAR(255) NOT NULL DEFAULT ''"},
		column{"partitions", "INT NOT NULL DEFAULT 0"},
		column{"schema_stop_lsn", "BIGINT UNSIGNED NOT NULL DEFAULT 0"},
		column{"ahead_lsn", "BIGINT UNSIGNED NOT NULL DEFAULT 0"},
		column{"run_id", "VARCHAR(64) NOT NULL DEFAULT ''"},
		column{"revoked_grants", "MEDIUMTEXT NULL"})
}

// column is a column of one of sluice's tables, for addMissingColumns.
type column struct{ name, def string }

// addMissingColumns adds to table those of cols it lacks (made by an
// older build). information_schema rather than ADD COLUMN IF NOT EXISTS,
// which MySQL does not have.
func (t *Target) addMissingColumns(ctx context.Context, table string, cols ...column) error {
	for _, col := range cols {
		var n int
		err := t.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
			table, col.name).Scan(&n)
		if err == nil && n == 0 {
			_, err = t.DB.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+col.name+` `+col.def)
			if errorNumber(err) == 1060 { // another sluice added it meanwhile
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("target: add column %s to %s: %w", col.name, table, err)
		}
	}
	return nil
}

// LoadSyncState returns the stored state of the sync on slot, or nil.
func (t *Target) LoadSyncState(ctx context.Context, slot string) (*SyncState, error) {
	states, err := t.readSyncStates(ctx, `slot = ?`, slot)
	if err != nil || len(states) == 0 { // no row, or no table: sluice finish or abort ran
		return nil, err
	}
	return &states[0], nil
}

// readSyncStates reads the rows of SyncTable matching where, none when
// the table does not exist. A table of an older build is upgraded first
// (finish and abort read it without creating it).
func (t *Target) readSyncStates(ctx context.Context, where string, args ...any) ([]SyncState, error) {
	query := `SELECT slot, publication, applied_lsn, phase, COALESCE(source_tables, ''), stream, partitions, schema_stop_lsn, ahead_lsn, run_id, COALESCE(revoked_grants, '') FROM ` + SyncTable + ` WHERE ` + where + ` ORDER BY slot`
	rows, err := t.DB.QueryContext(ctx, query, args...)
	if errorNumber(err) == 1054 { // unknown column
		if err = t.upgradeSyncTable(ctx); err == nil {
			rows, err = t.DB.QueryContext(ctx, query, args...)
		}
	}
	if errorNumber(err) == 1146 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
	}
	defer rows.Close()
	var out []SyncState
	for rows.Next() {
		var st SyncState
		var tables string
		if err := rows.Scan(&st.Slot, &st.Publication, &st.AppliedLSN, &st.Phase, &tables, &st.Stream, &st.Partitions, &st.SchemaStopLSN, &st.AheadLSN, &st.RunID, &st.RevokedGrants); err != nil {
			return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
		}
		if tables != "" {
			if err := json.Unmarshal([]byte(tables), &st.Tables); err != nil {
				return nil, fmt.Errorf("target: read the tables of the sync on slot %s in %s: %w", st.Slot, SyncTable, err)
			}
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
	}
	return out, nil
}

// CreateSyncState records a new sync on st.Slot. The applied position of
// an existing row is kept: only the change loop moves it (StoreAppliedLSN),
// so no other writer can set it back.
func (t *Target) CreateSyncState(ctx context.Context, st SyncState) error {
	tables, err := json.Marshal(st.Tables)
	if err != nil {
		return fmt.Errorf("target: record the tables of the sync on slot %s: %w", st.Slot, err)
	}
	_, err = t.DB.ExecContext(ctx, `INSERT INTO `+SyncTable+` (slot, publication, applied_lsn, phase, source_tables, stream, partitions, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE publication = VALUES(publication), phase = VALUES(phase), source_tables = VALUES(source_tables), stream = VALUES(stream), partitions = VALUES(partitions), run_id = VALUES(run_id)`,
		st.Slot, st.Publication, st.AppliedLSN, st.Phase, string(tables), st.Stream, st.Partitions, st.RunID)
	if err != nil {
		return fmt.Errorf("target: write %s: %w", SyncTable, err)
	}
	return nil
}

// RecordSyncTables records the tables, stream and partition count of the
// sync on slot, adding to the tables already recorded: a resumed run may
// name other tables, and the copy progress of every one is this sync's to
// remove. An empty stream (0 partitions) keeps the one recorded; another
// partition count than the one recorded is an OtherPartitionsError, and
// nothing is recorded. A sync whose state is gone (abort ran meanwhile) is ErrNoSyncState,
// not recorded again.
func (t *Target) RecordSyncTables(ctx context.Context, slot string, tables []string, stream string, partitions int) error {
	tx, err := t.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: record the tables of the sync on slot %s: %w", slot, err)
	}
	defer tx.Rollback()
	var recorded, recordedStream string
	var recordedPartitions int
	err = tx.QueryRowContext(ctx, `SELECT COALESCE(source_tables, ''), stream, partitions FROM `+SyncTable+` WHERE slot = ? FOR UPDATE`, slot).Scan(&recorded, &recordedStream, &recordedPartitions)
	if err == sql.ErrNoRows || errorNumber(err) == 1146 {
		return fmt.Errorf("record the tables of the sync on slot %s: %w", slot, ErrNoSyncState)
	}
	if err != nil {
		return fmt.Errorf("target: read %s: %w", SyncTable, err)
	}
	var all []string
	if recorded != "" {
		if err := json.Unmarshal([]byte(recorded), &all); err != nil {
			return fmt.Errorf("target: read the tables of the sync on slot %s in %s: %w", slot, SyncTable, err)
		}
	}
	known := len(all)
	for _, n := range tables {
		if !slices.Contains(all, n) {
			all = append(all, n)
		}
	}
	if stream == "" {
		stream = recordedStream
	}
	switch {
	case partitions == 0:
		partitions = recordedPartitions
	case recordedPartitions != 0 && partitions != recordedPartitions:
		return &OtherPartitionsError{Slot: slot, Recorded: recordedPartitions, Asked: partitions}
	}
	if len(all) == known && stream == recordedStream && partitions == recordedPartitions {
		return nil
	}
	list, err := json.Marshal(all)
	if err != nil {
		return fmt.Errorf("target: record the tables of the sync on slot %s: %w", slot, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+SyncTable+` SET source_tables = ?, stream = ?, partitions = ? WHERE slot = ?`, string(list), stream, partitions, slot); err != nil {
		return fmt.Errorf("target: record the tables of the sync on slot %s: %w", slot, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("target: record the tables of the sync on slot %s: %w", slot, err)
	}
	return nil
}

// RecordAhead records within tx, which wrote rows read from the source as
// of lsn, that the target holds rows of that moment (SyncState.AheadLSN).
func (t *Target) RecordAhead(ctx context.Context, tx *sql.Tx, slot string, lsn uint64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE `+SyncTable+` SET ahead_lsn = GREATEST(ahead_lsn, ?) WHERE slot = ?`, lsn, slot); err != nil {
		return fmt.Errorf("target: record the source position of rows read for a key move (sync on slot %s): %w", slot, err)
	}
	return nil
}

// RecordSchemaStop records that the run on slot stopped for a schema change
// at lsn (see SyncState.SchemaStopLSN).
func (t *Target) RecordSchemaStop(ctx context.Context, slot string, lsn uint64) error {
	if _, err := t.DB.ExecContext(ctx, `UPDATE `+SyncTable+` SET schema_stop_lsn = GREATEST(schema_stop_lsn, ?) WHERE slot = ?`, lsn, slot); err != nil {
		return fmt.Errorf("target: record the schema change the sync on slot %s stopped at: %w", slot, err)
	}
	return nil
}

// OtherPartitionsError is a publisher resumed with another partition count
// than the one its messages and appliers use.
type OtherPartitionsError struct {
	Slot            string
	Recorded, Asked int
}

func (e *OtherPartitionsError) Error() string {
	return fmt.Sprintf("the publisher on slot %s was started with %d partitions; this run asks for %d", e.Slot, e.Recorded, e.Asked)
}

// ErrNoSyncState is SetSyncPhase's error when the sync's state row is gone:
// sluice finish or abort removed it while the run was going.
var ErrNoSyncState = errors.New("the sync state on the target was removed (sluice finish or abort ran?)")

// SetSyncPhase records the phase of the sync on slot and nothing else.
func (t *Target) SetSyncPhase(ctx context.Context, slot, phase string) error {
	res, err := t.DB.ExecContext(ctx, `UPDATE `+SyncTable+` SET phase = ? WHERE slot = ?`, phase, slot)
	if errorNumber(err) == 1146 {
		return fmt.Errorf("record phase %s of the sync on slot %s: %w", phase, slot, ErrNoSyncState)
	}
	if err != nil {
		return fmt.Errorf("target: record phase %s of the sync on slot %s: %w", phase, slot, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 { // the row is gone, or already had this phase
		if st, err := t.LoadSyncState(ctx, slot); err != nil {
			return err
		} else if st == nil {
			return fmt.Errorf("record phase %s of the sync on slot %s: %w", phase, slot, ErrNoSyncState)
		}
	}
	return nil
}

// RecordRevokedGrants records (or, with "", clears) the write privileges
// the revoke fence of the sync on slot took.
func (t *Target) RecordRevokedGrants(ctx context.Context, slot, grants string) error {
	var v any
	if grants != "" {
		v = grants
	}
	if _, err := t.DB.ExecContext(ctx, `UPDATE `+SyncTable+` SET revoked_grants = ? WHERE slot = ?`, v, slot); err != nil {
		return fmt.Errorf("target: record the write privileges the fence took: %w", err)
	}
	return nil
}

// RecordCutover marks the sync on slot as cut over, once the fenced
// cutover has succeeded. A failure here says so: the source and target are
// already in step, only the record is missing, and running cutover again
// (which fences and verifies once more) records it.
func (t *Target) RecordCutover(ctx context.Context, slot string) error {
	err := t.SetSyncPhase(ctx, slot, PhaseCutover)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoSyncState):
		return failure.Wrap(err, failure.Schema, "SLUICE-SYNC-NOSTATE", "the cutover completed, but the sync was finished or aborted meanwhile").
			With("slot", slot).
			WithHint("nothing is left to record: check sluice status and the target's rows before switching the application")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-CUTOVER-RECORD", "the cutover completed, but the target did not record it").
		With("slot", slot).
		WithHint("once the target is reachable, run sluice cutover again: it fences and verifies once more, then records the cutover")
}

// Execer is what StoreAppliedLSN writes through: a transaction, so the
// position commits with the changes it covers, or the pool.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// StoreAppliedLSN records the applied position through db. The position
// only moves forward: a late commit of a process that lost its connection
// (or any writer behind the stored position) must not make the next run
// apply changes again.
func StoreAppliedLSN(ctx context.Context, db Execer, slot string, lsn uint64) error {
	if _, err := db.ExecContext(ctx, `UPDATE `+SyncTable+` SET applied_lsn = GREATEST(applied_lsn, ?) WHERE slot = ?`, lsn, slot); err != nil {
		return fmt.Errorf("target: record applied position: %w", err)
	}
	return nil
}

// OtherSyncs returns the syncs recorded on slots other than slot (none when
// no sync state table exists).
func (t *Target) OtherSyncs(ctx context.Context, slot string) ([]SyncState, error) {
	return t.readSyncStates(ctx, `slot <> ?`, slot)
}

// RemoveSync deletes what the sync on slot alone recorded, for when other
// syncs share the bookkeeping tables: its state row, and the copy progress
// of sourceTables (named as the progress names them, schema.TableName's
// String), and the partition progress of its published stream when it
// had one. The tables themselves, and every other sync's rows, stay.
func (t *Target) RemoveSync(ctx context.Context, slot string, sourceTables []string, stream string) error {
	tx, err := t.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("target: remove the sync on slot %s: %w", slot, err)
	}
	defer tx.Rollback()
	stmts := []string{`DELETE FROM ` + SyncTable + ` WHERE slot = ?`}
	args := [][]any{{slot}}
	if len(sourceTables) > 0 {
		in := strings.TrimSuffix(strings.Repeat("?, ", len(sourceTables)), ", ")
		names := make([]any, len(sourceTables))
		for i, n := range sourceTables {
			names[i] = n
		}
		stmts = append(stmts,
			`DELETE c FROM `+ChunksTable+` c JOIN `+TablesTable+` t ON t.table_name = c.table_name WHERE t.source_table IN (`+in+`)`,
			`DELETE FROM `+TablesTable+` WHERE source_table IN (`+in+`)`)
		args = append(args, names, names)
	}
	if stream != "" {
		stmts = append(stmts, `DELETE FROM `+PartitionsTable+` WHERE stream = ?`)
		args = append(args, []any{stream})
	}
	for i, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt, args[i]...); err != nil && errorNumber(err) != 1146 {
			return fmt.Errorf("target: remove the sync on slot %s: %w", slot, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("target: remove the sync on slot %s: %w", slot, err)
	}
	return nil
}

// DropMetadata removes every sluice bookkeeping table from the target: of
// copy, sync, the partitioned topology and the events path. The event
// versions go too: a run started again over emptied tables would otherwise
// skip copying every key they name.
func (t *Target) DropMetadata(ctx context.Context) error {
	for _, tbl := range []string{ChunksTable, TablesTable, SyncTable, PartitionsTable, EventVersionsTable, EventConsumersTable} {
		if _, err := t.DB.ExecContext(ctx, "DROP TABLE IF EXISTS "+tbl); err != nil {
			return fmt.Errorf("target: drop %s: %w", tbl, err)
		}
	}
	return nil
}
