package pgstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/schema"
)

// MessagePrefix marks sluice's own logical decoding messages (watermarks,
// heartbeats, fences) in the WAL.
const MessagePrefix = "sluice"

// inThisDatabase keeps a lookup of a slot by name to the source database's
// own: slots are the whole server's, and another database's migration may
// use the same name (PostgreSQL drops another database's slot when asked).
const inThisDatabase = "database IS NOT DISTINCT FROM current_database()"

// Preflight checks what logical replication needs on the source and says
// how to fix what is missing. slot is the slot the run will use: when it
// exists already (a resumed run) no free slot is needed.
func Preflight(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	var walLevel string
	if err := pool.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("source: read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return failure.New(failure.Schema, "SLUICE-SOURCE-WALLEVEL", "source has wal_level=%s; streaming changes needs wal_level=logical", walLevel).
			WithHint("run ALTER SYSTEM SET wal_level = logical on the source and restart PostgreSQL")
	}
	var canReplicate bool
	if err := pool.QueryRow(ctx, "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user").Scan(&canReplicate); err != nil {
		return fmt.Errorf("source: read role attributes: %w", err)
	}
	if !canReplicate {
		return failure.New(failure.Schema, "SLUICE-SOURCE-PRIVILEGE", "the source user may not use replication").
			WithHint("ALTER ROLE <user> WITH REPLICATION, and grant SELECT on the migrated tables")
	}
	var free int
	var exists bool
	var elsewhere *string // the database (or "" for a physical slot) of a slot of that name elsewhere
	if err := pool.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
		EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase+`),
		(SELECT coalesce(database::text, '') FROM pg_replication_slots WHERE slot_name = $1 AND NOT `+inThisDatabase+`)`, slot).Scan(&free, &exists, &elsewhere); err != nil {
		return fmt.Errorf("source: count replication slots: %w", err)
	}
	if elsewhere != nil {
		// Slots are the server's, not a database's: two migrations from one
		// server into target databases of the same name derive one name.
		what := "a physical replication slot"
		if *elsewhere != "" {
			what = "the replication slot of another migration, from database " + *elsewhere
		}
		return failure.New(failure.Usage, "SLUICE-SYNC-SLOTTAKEN", "replication slot %s is %s on this server; this source database cannot use it", slot, what).
			With("slot", slot).
			WithHint("give this migration a slot of its own with --slot (the same name on every sync, status, cutover, finish and abort of it)")
	}
	if free < 1 && !exists {
		return failure.New(failure.Schema, "SLUICE-SOURCE-NOSLOT", "the source has no free replication slot (max_replication_slots is used up)").
			WithHint("drop an unused slot (SELECT * FROM pg_replication_slots) or raise max_replication_slots and restart")
	}
	return nil
}

// EnsureCapture makes sure every change to tables is captured from here on:
// the publication, the schema-change triggers, then the slot (created if
// missing). Callers run it before copying anything, so a chunk copied next
// can only miss what the stream delivers.
func EnsureCapture(ctx context.Context, pool *pgxpool.Pool, publication, slot, runID string, tables []schema.TableName, log *slog.Logger) error {
	missed, err := EnsurePublication(ctx, pool, publication, tables)
	if err != nil {
		return err
	}
	if runID != "" { // before the slot exists: a slot with no tag of this run is not its own
		if err := TagPublication(ctx, pool, publication, runID); err != nil {
			return err
		}
	}
	if len(missed) > 0 {
		log.Warn(fmt.Sprintf("publication %s had been altered to publish no %s: such changes made meanwhile never reached the sync and are missing on the target; it publishes them again from here", publication, strings.Join(missed, ", ")),
			"code", "SLUICE-SYNC-PUBLICATION", "publication", publication,
			"hint", "once the sync has caught up, run sluice verify --repair for the migrated tables")
	}
	if err := EnsureDDLWatch(ctx, pool, slot, publication, log); errors.Is(err, ErrDDLWatchRefused) {
		log.Warn("schema changes that the change stream does not show (a column dropped and added again, a type changed and changed back, a partition truncated, detached or dropped) will not stop the sync: "+err.Error(),
			"code", "SLUICE-SYNC-NODDLWATCH", "slot", slot,
			"hint", "run the sync as a superuser (rds_superuser on RDS) so that sluice can install its event triggers, or run sluice verify after any ALTER TABLE on a migrated table")
	} else if err != nil {
		return err
	}
	_, created, err := EnsureSlot(ctx, pool, slot)
	if err != nil {
		return err
	}
	if created {
		log.Info("replication slot created", "slot", slot, "publication", publication)
	}
	return nil
}

// runTagPrefix starts the comment sluice sets on the publications it makes.
const runTagPrefix = "sluice run "

// TagPublication records run runID as the maker of publication (its
// comment), so that a run resuming its preparation can tell its own slot
// from another migration's of the same name (PublicationRun).
func TagPublication(ctx context.Context, pool *pgxpool.Pool, publication, runID string) error {
	literal := "'" + strings.ReplaceAll(runTagPrefix+runID, "'", "''") + "'"
	if _, err := pool.Exec(ctx, "COMMENT ON PUBLICATION "+postgres.Ident(publication)+" IS "+literal); err != nil {
		return fmt.Errorf("source: mark publication %s as this run's: %w", publication, err)
	}
	return nil
}

// PublicationRun returns the run TagPublication recorded on publication:
// "" when it has none (or a comment of someone else's) or does not exist.
func PublicationRun(ctx context.Context, pool *pgxpool.Pool, publication string) (string, error) {
	var comment *string
	err := pool.QueryRow(ctx, `SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1`, publication).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && comment == nil {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("source: look up publication %s: %w", publication, err)
	}
	if run, ok := strings.CutPrefix(*comment, runTagPrefix); ok {
		return run, nil
	}
	return "", nil
}

// EnsurePublication creates the publication for tables, or makes an existing
// one publish exactly these tables, every kind of change. It returns the
// kinds an existing one had been altered not to publish (the run missed
// them).
func EnsurePublication(ctx context.Context, pool *pgxpool.Pool, name string, tables []schema.TableName) (missed []string, err error) {
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = postgres.Ident(t.Schema, t.Name)
	}
	exists := true
	if err := pool.QueryRow(ctx, `SELECT array_remove(ARRAY[CASE WHEN NOT pubinsert THEN 'INSERT' END, CASE WHEN NOT pubupdate THEN 'UPDATE' END,
			CASE WHEN NOT pubdelete THEN 'DELETE' END, CASE WHEN NOT pubtruncate THEN 'TRUNCATE' END], NULL)
		FROM pg_publication WHERE pubname = $1`, name).Scan(&missed); errors.Is(err, pgx.ErrNoRows) {
		exists = false
	} else if err != nil {
		return nil, fmt.Errorf("source: look up publication %s: %w", name, err)
	}
	// A partitioned table's changes are published under its partitions'
	// names unless the publication says otherwise; the sync knows the table
	// by its own name (PostgreSQL 13 on; before, a partitioned table cannot
	// be published at all and CREATE PUBLICATION says so).
	version, err := serverVersion(ctx, pool)
	if err != nil {
		return nil, err
	}
	stmts := []string{"CREATE PUBLICATION " + postgres.Ident(name) + " FOR TABLE " + strings.Join(list, ", ")}
	if exists {
		options := "publish = 'insert, update, delete, truncate'"
		if version >= 130000 {
			options += ", publish_via_partition_root = true"
		}
		stmts = []string{"ALTER PUBLICATION " + postgres.Ident(name) + " SET TABLE " + strings.Join(list, ", "),
			"ALTER PUBLICATION " + postgres.Ident(name) + " SET (" + options + ")"}
	} else if version >= 130000 {
		stmts[0] += " WITH (publish_via_partition_root = true)"
	}
	for _, stmt := range stmts {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
				return nil, failure.Wrap(err, failure.Schema, "SLUICE-SOURCE-PRIVILEGE", "the source user may not create the publication %s", name).
					With("publication", name).
					WithHint("the sync's user must own the migrated tables (or be superuser) and have CREATE on the database: GRANT CREATE ON DATABASE … TO <user>, and ALTER TABLE … OWNER TO <user> or run the sync as the tables' owner")
			}
			return nil, fmt.Errorf("source: %s: %w", stmt, err)
		}
	}
	return missed, nil
}

// EnsureSlot creates the logical slot if it does not exist. It returns the
// slot's confirmed position (where streaming resumes) and whether it was new.
func EnsureSlot(ctx context.Context, pool *pgxpool.Pool, name string) (pglogrepl.LSN, bool, error) {
	for attempt := 0; ; attempt++ {
		var active bool
		var confirmed *string
		err := pool.QueryRow(ctx, `SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase, name).Scan(&active, &confirmed)
		if errors.Is(err, pgx.ErrNoRows) {
			var lsn string
			if err := pool.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, name).Scan(&lsn); err != nil {
				return 0, false, fmt.Errorf("source: create replication slot %s: %w", name, err)
			}
			l, err := pglogrepl.ParseLSN(lsn)
			return l, true, err
		}
		if err != nil {
			return 0, false, fmt.Errorf("source: look up replication slot %s: %w", name, err)
		}
		if active {
			// a sluice that was just killed leaves its walsender for a moment
			if attempt < 20 {
				time.Sleep(500 * time.Millisecond)
				continue
			}
			return 0, false, failure.New(failure.Schema, "SLUICE-SYNC-SLOTBUSY", "replication slot %s is in use by another process", name).
				WithHint("stop the other sluice sync first (sluice status shows it), or wait for it to exit")
		}
		var l pglogrepl.LSN
		if confirmed != nil {
			if l, err = pglogrepl.ParseLSN(*confirmed); err != nil {
				return 0, false, err
			}
		}
		return l, false, nil
	}
}

// Drop removes the slot, the publication and the schema-change triggers, ending a walsender that still
// holds the slot. Missing ones are fine: Drop is safe to repeat. (A slot of
// that name in another database is another migration's: it stays.) A slot that
// stays held (its walsender cannot be ended) is an error: reporting success
// would leave it retaining WAL on the source.
func Drop(ctx context.Context, pool *pgxpool.Pool, slot, publication string) error {
	const attempts = 25
	for attempt := 1; ; attempt++ {
		var pid *int32
		err := pool.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase, slot).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return fmt.Errorf("source: look up replication slot %s: %w", slot, err)
		}
		if pid == nil {
			_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
			if err == nil {
				break
			}
			// the walsender may have taken the slot again between the two
			// statements (a sluice sync restarting); look again
			if attempt >= attempts {
				return fmt.Errorf("source: drop replication slot %s: %w", slot, err)
			}
		} else {
			if attempt >= attempts {
				return failure.New(failure.Schema, "SLUICE-SYNC-SLOTBUSY",
					"replication slot %s is still held by process %d after %d attempts to end it", slot, *pid, attempts).
					WithHint("stop the sluice sync using it, or run SELECT pg_terminate_backend(%d); SELECT pg_drop_replication_slot('%s'); on the source", *pid, slot)
			}
			var ended bool
			if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, *pid).Scan(&ended); err != nil {
				return fmt.Errorf("source: end process %d holding replication slot %s (needs superuser or pg_signal_backend): %w", *pid, slot, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+postgres.Ident(publication)); err != nil {
		return fmt.Errorf("source: drop publication %s: %w", publication, err)
	}
	return dropDDLWatch(ctx, pool, slot)
}

// SlotExists reports whether the slot is there, in the source database.
func SlotExists(ctx context.Context, pool *pgxpool.Pool, slot string) (bool, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase, slot).Scan(&n)
	return n > 0, err
}

// PublicationTables returns the tables publication publishes, and whether
// it exists.
func PublicationTables(ctx context.Context, pool *pgxpool.Pool, publication string) ([]schema.TableName, bool, error) {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, publication).Scan(&exists); err != nil {
		return nil, false, fmt.Errorf("source: look up publication %s: %w", publication, err)
	}
	if !exists {
		return nil, false, nil
	}
	rows, err := pool.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2`, publication)
	if err != nil {
		return nil, true, fmt.Errorf("source: read the tables of publication %s: %w", publication, err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schema.TableName, error) {
		var t schema.TableName
		err := r.Scan(&t.Schema, &t.Name)
		return t, err
	})
	if err != nil {
		return nil, true, fmt.Errorf("source: read the tables of publication %s: %w", publication, err)
	}
	return tables, true, nil
}

// SlotStatus is what the source keeps for the slot.
type SlotStatus struct {
	RetainedBytes int64  // WAL the slot holds back from recycling
	WALStatus     string // reserved, extended, unreserved, lost
	SafeWALBytes  *int64 // left before max_slot_wal_keep_size invalidates the slot; nil when unlimited
	CurrentLSN    pglogrepl.LSN
}

// Status reads the slot's retained WAL.
func Status(ctx context.Context, pool *pgxpool.Pool, slot string) (SlotStatus, error) {
	var st SlotStatus
	var cur string
	err := pool.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
		coalesce(wal_status, ''), safe_wal_size, pg_current_wal_lsn()::text
		FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase, slot).Scan(&st.RetainedBytes, &st.WALStatus, &st.SafeWALBytes, &cur)
	if err != nil {
		return st, fmt.Errorf("source: read replication slot %s: %w", slot, err)
	}
	st.CurrentLSN, err = pglogrepl.ParseLSN(cur)
	return st, err
}

// SlotProgress is how far a slot's reader got.
type SlotProgress struct {
	Active    bool          // a reader (a running sync) holds the slot
	Confirmed pglogrepl.LSN // the position the reader confirmed as applied
}

// Progress reads slot's reader and confirmed position.
func Progress(ctx context.Context, pool *pgxpool.Pool, slot string) (SlotProgress, error) {
	var p SlotProgress
	var lsn string
	err := pool.QueryRow(ctx, `SELECT active, coalesce(confirmed_flush_lsn, '0/0')::text
		FROM pg_replication_slots WHERE slot_name = $1 AND `+inThisDatabase, slot).Scan(&p.Active, &lsn)
	if err != nil {
		return p, fmt.Errorf("source: read replication slot %s: %w", slot, err)
	}
	p.Confirmed, err = pglogrepl.ParseLSN(lsn)
	return p, err
}

// AdvanceSlot confirms the slot (which must have no reader) up to lsn, as
// its reader would: everything before lsn is applied.
func AdvanceSlot(ctx context.Context, pool *pgxpool.Pool, slot string, lsn pglogrepl.LSN) error {
	if _, err := pool.Exec(ctx, `SELECT pg_replication_slot_advance($1, $2::pg_lsn)`, slot, lsn.String()); err != nil {
		return fmt.Errorf("source: advance replication slot %s to %s: %w", slot, lsn, err)
	}
	return nil
}

// UnreadChanges counts the row changes (inserts, updates, deletes,
// truncates of the publication's tables) slot holds up to upTo, without
// consuming them. The slot must have no reader, and be confirmed as far as
// the target has applied (AdvanceSlot). It reads at most peekLimit
// messages (decoding a long backlog whole would take the source minutes
// and gigabytes of spill files for a yes or no): more says the limit was
// reached, so there may be more than counted.
func UnreadChanges(ctx context.Context, pool *pgxpool.Pool, slot, publication string, upTo pglogrepl.LSN) (changes int64, more bool, err error) {
	var read int64
	// pgoutput's message types: 'I', 'U', 'D', 'T'
	err = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68, 84)), count(*)
		FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $4, 'proto_version', '1', 'publication_names', quote_ident($3))`,
		slot, upTo.String(), publication, peekLimit).Scan(&changes, &read)
	if err != nil {
		return 0, false, fmt.Errorf("source: read what replication slot %s holds: %w", slot, err)
	}
	return changes, read >= peekLimit, nil
}

// peekLimit is how many messages UnreadChanges reads at most.
const peekLimit = 10000

// Emit writes a logical decoding message into the WAL and returns its
// position. Transactional messages arrive in the stream at their commit
// (watermarks); others as soon as they are decoded (heartbeats, fences).
func Emit(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, transactional bool, content string) (pglogrepl.LSN, error) {
	var lsn string
	if err := q.QueryRow(ctx, `SELECT pg_logical_emit_message($1, $2, $3)::text`, transactional, MessagePrefix, content).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("source: write a %s message into the WAL: %w", MessagePrefix, err)
	}
	return pglogrepl.ParseLSN(lsn)
}

// slotLost reports a source error that means the slot can never deliver
// again: it was dropped, invalidated (max_slot_wal_keep_size), or the WAL
// it needs was removed.
func slotLost(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	// Matched on the message too: the same codes also mean a slot of
	// another database (a wrong connection string) or a spill file error,
	// which a retry or a fix of the URL gets past.
	switch pe.Code {
	case "42704": // undefined_object
		return strings.Contains(pe.Message, "replication slot") && strings.Contains(pe.Message, "does not exist")
	case "55000": // object_not_in_prerequisite_state: invalidated
		return strings.Contains(pe.Message, "can no longer get changes") ||
			strings.Contains(pe.Detail, "invalidated") || strings.Contains(pe.Message, "invalidated")
	case "58P01": // undefined_file
		return strings.Contains(pe.Message, "WAL segment") && strings.Contains(pe.Message, "removed")
	}
	return false
}

// StreamError classifies an error from opening or reading the change
// stream: a lost slot stops the run (retrying cannot bring the changes
// back), anything else is a connection problem that resumes by itself.
func StreamError(err error, slot, doing, hint string) error {
	if slotLost(err) {
		return failure.Wrap(err, failure.Schema, "SLUICE-SYNC-SLOTLOST", "source: %s: replication slot %s is lost, and the changes it held with it", doing, slot).
			With("slot", slot).
			WithHint("the target misses changes and cannot catch up: run sluice abort, empty the target tables and start again; raise max_slot_wal_keep_size or watch SLUICE-ALERT-WAL-KEEP so it does not happen again")
	}
	return failure.Wrap(err, failure.Connection, "SLUICE-SYNC-STREAM", "source: %s", doing).WithHint("%s", hint)
}
