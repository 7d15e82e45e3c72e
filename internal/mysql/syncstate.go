package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
}

// PhasePreparing is a sync whose slot may not exist yet: nothing has been
// copied or streamed, so a missing slot lost no changes.
const PhasePreparing = "preparing"

// EnsureSyncTable creates the sync state table.
func (t *Target) EnsureSyncTable(ctx context.Context) error {
	_, err := t.DB.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+SyncTable+` (
		slot VARCHAR(64) NOT NULL PRIMARY KEY,
		publication VARCHAR(64) NOT NULL,
		applied_lsn BIGINT UNSIGNED NOT NULL DEFAULT 0,
		phase VARCHAR(16) NOT NULL,
		updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
	if err != nil {
		return fmt.Errorf("target: create %s: %w", SyncTable, err)
	}
	return nil
}

// LoadSyncState returns the stored state of the sync on slot, or nil.
func (t *Target) LoadSyncState(ctx context.Context, slot string) (*SyncState, error) {
	st := &SyncState{Slot: slot}
	err := t.DB.QueryRowContext(ctx, `SELECT publication, applied_lsn, phase FROM `+SyncTable+` WHERE slot = ?`, slot).
		Scan(&st.Publication, &st.AppliedLSN, &st.Phase)
	if err == sql.ErrNoRows || errorNumber(err) == 1146 { // no row, or no table: sluice finish or abort ran
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
	}
	return st, nil
}

// CreateSyncState records a new sync on st.Slot. The applied position of
// an existing row is kept: only the change loop moves it (StoreAppliedLSN),
// so no other writer can set it back.
func (t *Target) CreateSyncState(ctx context.Context, st SyncState) error {
	_, err := t.DB.ExecContext(ctx, `INSERT INTO `+SyncTable+` (slot, publication, applied_lsn, phase) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE publication = VALUES(publication), phase = VALUES(phase)`,
		st.Slot, st.Publication, st.AppliedLSN, st.Phase)
	if err != nil {
		return fmt.Errorf("target: write %s: %w", SyncTable, err)
	}
	return nil
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

// RecordCutover marks the sync on slot as cut over, once the fenced
// cutover has succeeded. A failure here says so: the source and target are
// already in step, only the record is missing, and running cutover again
// (which fences and verifies once more) records it.
func (t *Target) RecordCutover(ctx context.Context, slot string) error {
	err := t.SetSyncPhase(ctx, slot, "cutover")
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

// StoreAppliedLSN records the applied position through db.
func StoreAppliedLSN(ctx context.Context, db Execer, slot string, lsn uint64) error {
	if _, err := db.ExecContext(ctx, `UPDATE `+SyncTable+` SET applied_lsn = ? WHERE slot = ?`, lsn, slot); err != nil {
		return fmt.Errorf("target: record applied position: %w", err)
	}
	return nil
}

// OtherSyncs returns the syncs recorded on slots other than slot (none when
// no sync state table exists).
func (t *Target) OtherSyncs(ctx context.Context, slot string) ([]SyncState, error) {
	rows, err := t.DB.QueryContext(ctx, `SELECT slot, publication, applied_lsn, phase FROM `+SyncTable+` WHERE slot <> ? ORDER BY slot`, slot)
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
		if err := rows.Scan(&st.Slot, &st.Publication, &st.AppliedLSN, &st.Phase); err != nil {
			return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("target: read %s: %w", SyncTable, err)
	}
	return out, nil
}

// RemoveSync deletes what the sync on slot alone recorded, for when other
// syncs share the bookkeeping tables: its state row, and the copy progress
// of sourceTables (named as the progress names them, schema.TableName's
// String). The tables themselves, and every other sync's rows, stay.
func (t *Target) RemoveSync(ctx context.Context, slot string, sourceTables []string) error {
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
