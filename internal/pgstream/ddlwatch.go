package pgstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/partbound"
	"github.com/sluice-db/sluice/internal/postgres"
)

// The change stream describes a table only when a change to it follows a
// schema change, and then only by column names, types and order: a column
// dropped and added again, or a type changed and changed back, rewrite the
// rows without a word in the stream. An event trigger on the source closes
// that gap: after every ALTER TABLE (and before a rewrite, and when a
// table is dropped) it writes the table's shape into the WAL as a transactional sluice
// message, which arrives in commit order with the changes.

// ddlMessageTag starts the content of a schema-change message.
const ddlMessageTag = "D:"

// DDLNotice is a schema change the source's event trigger recorded.
type DDLNotice struct {
	OID      uint32      `json:"oid"`
	Schema   string      `json:"schema"`
	Name     string      `json:"name"`
	Identity string      `json:"identity"` // relreplident: d, n, f, i
	Columns  []DDLColumn `json:"columns"`
	// Rewrite is pg_event_trigger_table_rewrite_reason() when the table's
	// rows are about to be rewritten (0: not a rewrite).
	Rewrite int  `json:"rewrite"`
	Dropped bool `json:"dropped"` // Name is then the schema-qualified name it had
	// A partitioned table's partitions at every level (nil for another
	// table), and those the transaction attached holding rows.
	Parts    []uint32       `json:"parts"`
	Attached []DDLPartition `json:"attached"`
	// Unlogged names its partitions that write no WAL: their changes reach
	// no change stream.
	Unlogged []string `json:"unlogged"`
	// Unwatched names its partitions whose TRUNCATE trigger is disabled;
	// Rewatch says some partition's is missing or does not fire ALWAYS.
	Unwatched []string `json:"unwatched"`
	Rewatch   bool     `json:"rewatch"`
	// Truncated: a TRUNCATE of this partition (Name, schema-qualified)
	// holding rows was about to run; Ancestors are the tables above it. The
	// stream shows it only when it came with one of a published table as a
	// whole.
	Truncated bool     `json:"truncated"`
	Ancestors []uint32 `json:"ancestors"`
	// Bounds are the partition's bound and each ancestor's as the trigger
	// read them (pg_get_expr of relpartbound, in sluice's session
	// settings): the rows it held are
	// told only if the catalog still has them (PartitionBound.Matches).
	Bounds []string `json:"bounds"`
	// Bound is the partition's constraint, its ancestors' bounds included,
	// as the source's catalog has it (ReadBound): any role may write a
	// notice, so the rows it names are not taken from one. Delete is the
	// statement that deletes them on the target, when a condition there
	// tells them (capture.TableNotices fills both in).
	Bound  string `json:"-"`
	Delete string `json:"-"`
	// NoCondition says why no condition may name the truncated
	// partition's rows (rows that reach the target after the stop may
	// belong to it; the TRUNCATE is not shown to have happened), set by
	// the run that judges the notice; "" when none.
	NoCondition string `json:"-"`
	// Xid is the transaction that wrote the notice, as the stream tells
	// it (0: unknown).
	Xid uint32 `json:"-"`
}

// DDLPartition names a partition.
type DDLPartition struct {
	OID  uint32 `json:"oid"`
	Name string `json:"name"`
}

// DDLColumn is one column of the table as the notice saw it (stored
// generated columns left out, as the stream leaves them out).
type DDLColumn struct {
	Num  int16  `json:"num"`
	Name string `json:"name"`
	Type uint32 `json:"type"`
	Mod  int32  `json:"mod"`
	Key  bool   `json:"key"` // part of the replica identity
}

// Reason bits of a table rewrite: RewriteColumns for rows rewritten
// because a column's type or value expression changed (ALTER COLUMN … TYPE
// … USING); RewritePersistence for SET LOGGED or UNLOGGED (an unlogged
// partition's changes reach no change stream). The others (access method,
// a volatile default of an added column) keep the values or show in the
// columns.
const (
	RewritePersistence = 1
	RewriteColumns     = 4
)

// ParseDDLNotice reads a sluice message's content; ok is false when it is
// not a schema-change notice.
func ParseDDLNotice(content []byte) (n DDLNotice, ok bool, err error) {
	body, found := strings.CutPrefix(string(content), ddlMessageTag)
	if !found {
		return n, false, nil
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		return n, true, fmt.Errorf("source: read a schema-change message of sluice's event trigger: %w", err)
	}
	return n, true, nil
}

// Relation is the notice as the stream would describe the table, for the
// same comparison with the plan.
func (n DDLNotice) Relation() *Relation {
	rel := &Relation{ID: n.OID, Schema: n.Schema, Name: n.Name}
	if n.Identity != "" {
		rel.ReplicaIdentity = n.Identity[0]
	}
	for _, c := range n.Columns {
		rel.Columns = append(rel.Columns, RelationColumn{Name: c.Name, TypeOID: c.Type, TypeMod: c.Mod, Key: c.Key})
	}
	return rel
}

// ddlWatchNames are the event triggers (and the function they run) of
// the run on slot, one per event as a trigger has one, the TRUNCATE
// trigger of each partition with its function, and the function that adds
// that trigger to a partition.
type ddlWatchNames struct{ end, drop, rewrite, truncate, watch string }

func ddlWatchNamesFor(slot string) ddlWatchNames {
	// Identifiers stop at 63 bytes; a long slot name is shortened with a
	// hash so that two slots never share a trigger.
	name := func(prefix string) string {
		n := prefix + slot
		if len(n) > 63 {
			sum := sha256.Sum256([]byte(slot))
			n = n[:63-13] + "_" + hex.EncodeToString(sum[:6])
		}
		return n
	}
	return ddlWatchNames{end: name("sluice_ddl_"), drop: name("sluice_drop_"), rewrite: name("sluice_rewrite_"), truncate: name("sluice_trunc_"), watch: name("sluice_watch_")}
}

// ddlWatchBody is the trigger function. Whatever goes wrong in it becomes
// a warning: sluice must never make the application's DDL fail.
const ddlWatchBody = `
DECLARE
  r record;
  part record;
  leaf record;
  shape text;
  attached jsonb;
  has_rows boolean;
BEGIN
  IF tg_event = 'table_rewrite' THEN
    -- a partitioned table's rows are rewritten in its partitions: the
    -- migrated root hears of it too
    FOR r IN SELECT relid FROM (SELECT pg_event_trigger_table_rewrite_oid() AS relid
        UNION SELECT relid FROM pg_partition_ancestors(pg_event_trigger_table_rewrite_oid())) rw
      WHERE relid IN (SELECT pr.prrelid FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = __PUBLICATION__) LOOP
      PERFORM pg_logical_emit_message(true, 'sluice', 'D:' || json_build_object(
        'oid', r.relid::bigint, 'rewrite', pg_event_trigger_table_rewrite_reason())::text);
    END LOOP;
  ELSIF tg_event = 'sql_drop' THEN
    FOR r IN SELECT objid, object_identity FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table' AND objsubid = 0 LOOP
      PERFORM pg_logical_emit_message(true, 'sluice', 'D:' || json_build_object('oid', r.objid::bigint, 'name', r.object_identity, 'dropped', true)::text);
    END LOOP;
  ELSE
    -- an ALTER TABLE of an inheritance parent changes its children too,
    -- and a partition's (a new one's, one's below) concerns the tables
    -- above it. Only the run's tables (its publication's) are described:
    -- DDL on other tables, a big partition tree's above all, costs one
    -- lookup.
    FOR r IN WITH RECURSIVE altered(objid) AS (
        SELECT objid FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_class'::regclass
        UNION SELECT a.relid::oid FROM pg_event_trigger_ddl_commands() d, pg_partition_ancestors(d.objid) a
          WHERE d.classid = 'pg_class'::regclass
        UNION SELECT i.inhrelid FROM pg_inherits i JOIN altered a ON i.inhparent = a.objid
          JOIN pg_class pc ON pc.oid = a.objid AND pc.relkind = 'r') -- inheritance children, not partitions
      SELECT objid FROM altered WHERE objid IN (SELECT pr.prrelid FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = __PUBLICATION__) LOOP
      SELECT json_build_object('oid', c.oid::bigint, 'schema', n.nspname, 'name', c.relname, 'identity', c.relreplident,
        'columns', (SELECT json_agg(json_build_object('num', a.attnum, 'name', a.attname, 'type', a.atttypid::bigint, 'mod', a.atttypmod,
            'key', c.relreplident = 'f' OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND a.attnum = ANY (i.indkey)
              AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END)) ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''))::text
        INTO shape
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = r.objid AND c.relkind IN ('r', 'p');
      IF shape IS NOT NULL AND (SELECT relkind FROM pg_class WHERE oid = r.objid) = 'p' THEN
        -- its partitions now, and those this transaction attached holding
        -- rows (their pg_inherits row is this transaction's, a savepoint's
        -- included: the only rows in progress it can see): rows that came
        -- or went without a change in the stream
        attached := '[]';
        BEGIN
          FOR part IN SELECT t.relid, i.cmin::text::bigint AS cmin FROM pg_partition_tree(r.objid) t JOIN pg_inherits i ON i.inhrelid = t.relid
              WHERE age(i.xmin) <= 0 -- not older than this transaction: the rest need no lookup
                AND txid_status(__FULL_XMIN__(i.xmin)) = 'in progress' LOOP
            -- rows it held before it joined (an older transaction's, or
            -- this one's before the command that made it a partition);
            -- those written after came through the table, and streamed
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s r WHERE NOT (age(r.xmin) <= 0 AND r.cmin::text::bigint > $1
                AND txid_status(__FULL_XMIN__(r.xmin)) = ''in progress''))', part.relid) USING part.cmin INTO has_rows;
            IF has_rows THEN
              attached := attached || jsonb_build_object('oid', part.relid::oid::bigint, 'name', part.relid::text);
            END IF;
            -- a transaction that cannot see every row (REPEATABLE READ,
            -- SERIALIZABLE: one committed since its snapshot; a row-level
            -- security policy: the rows it hides) cannot tell
            IF NOT has_rows AND (current_setting('transaction_isolation') <> 'read committed'
                  OR EXISTS (SELECT 1 FROM pg_partition_tree(part.relid) t JOIN pg_class pc ON pc.oid = t.relid WHERE pc.relrowsecurity))
                AND (SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree(part.relid)) > 0 THEN
              attached := attached || jsonb_build_object('oid', part.relid::oid::bigint,
                'name', part.relid::text || ' (perhaps: the attaching transaction cannot see every row, by its isolation or a row-level security policy)');
            END IF;
            -- a new partition's TRUNCATE must tell too; this transaction
            -- holds its lock already (and those of the partitions below
            -- an attached partitioned table). The function that adds the
            -- trigger runs as sluice's user: the application's may not own
            -- them all.
            FOR leaf IN SELECT t.relid FROM pg_partition_tree(part.relid) t JOIN pg_class pc ON pc.oid = t.relid
                WHERE pc.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = t.relid AND tg.tgname = __TRUNCATE_TRIGGER__) LOOP
              BEGIN
                PERFORM __WATCH_FUNCTION__(leaf.relid);
              EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'sluice cannot see a TRUNCATE of partition % during its migration: %', leaf.relid, SQLERRM;
              END;
            END LOOP;
          END LOOP;
        EXCEPTION WHEN OTHERS THEN
          -- cannot tell: better a stop the user goes on past than rows missed
          attached := jsonb_build_array(jsonb_build_object('oid', 0, 'name', '(one sluice could not tell: ' || SQLERRM || ')'));
        END;
        shape := (shape::jsonb || jsonb_build_object('attached', attached, 'parts',
          (SELECT coalesce(jsonb_agg(relid::oid::bigint), '[]') FROM pg_partition_tree(r.objid) WHERE relid <> r.objid::regclass),
          'unlogged', (SELECT coalesce(jsonb_agg(relid::text), '[]') FROM pg_partition_tree(r.objid) t JOIN pg_class pc ON pc.oid = t.relid
            WHERE pc.relpersistence = 'u'),
          -- partitions whose TRUNCATE trigger was disabled (ALTER TABLE …
          -- DISABLE TRIGGER, a bulk loader's habit)
          'unwatched', (SELECT coalesce(jsonb_agg(t.relid::text), '[]') FROM pg_partition_tree(r.objid) t
            JOIN pg_trigger tg ON tg.tgrelid = t.relid AND tg.tgname = __TRUNCATE_TRIGGER__ WHERE tg.tgenabled = 'D'),
          -- partitions whose trigger is missing or fires in some sessions
          -- only (new ones; ENABLE TRIGGER ALL after a bulk load)
          'rewatch', EXISTS (SELECT 1 FROM pg_partition_tree(r.objid) t JOIN pg_class pc ON pc.oid = t.relid AND pc.relkind = 'r'
            LEFT JOIN pg_trigger tg ON tg.tgrelid = t.relid AND tg.tgname = __TRUNCATE_TRIGGER__ WHERE tg.tgenabled IS DISTINCT FROM 'A')))::text;
      END IF;
      IF shape IS NOT NULL THEN
        PERFORM pg_logical_emit_message(true, 'sluice', 'D:' || shape);
      END IF;
    END LOOP;
  END IF;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'sluice could not record a schema change for its migration: %', SQLERRM;
END`

// fullXmin expands __FULL_XMIN__(x) in ddlWatchBody: the 64-bit id of x,
// an xmin no older than this transaction's id (its own, a savepoint's a
// little above it, another's), with the epoch of this transaction's id (or
// the last one's, for an id far above it).
var fullXmin = regexp.MustCompile(`__FULL_XMIN__\(([a-z.]+)\)`)

const fullXminSQL = `(SELECT CASE WHEN e.x > txid_current() + 2147483648 THEN e.x - 4294967296 ELSE e.x END ` +
	`FROM (SELECT ((txid_current() >> 32) << 32) + ($1)::text::bigint AS x) e)`

// truncateWatchBody is the function of each partition's TRUNCATE trigger.
// The publication publishes a partitioned table through its root, and
// PostgreSQL then streams no TRUNCATE of a single partition: the rows it
// takes away would stay on the target without a word. A TRUNCATE of the
// whole table fires it too, and the stream shows that one after it.
const truncateWatchBody = `
DECLARE
  held boolean := pg_relation_size(TG_RELID) > 0;
  empty boolean;
BEGIN
  -- An empty partition loses nothing (one a TRUNCATE of the whole table
  -- emptied earlier in the transaction, too). Its size tells first: no
  -- snapshot hides a row from it. A size may be dead rows only (all rows
  -- deleted, not yet vacuumed): a small partition (at most 8 MB read under
  -- the lock) is read too when nothing can hide a row from that read: READ
  -- COMMITTED takes a new snapshot, which sees every row committed before
  -- this TRUNCATE got its lock (the writers have ended), no row-level
  -- security, and SELECT granted (else it counts as holding rows).
  IF held AND pg_relation_size(TG_RELID) <= 8388608 AND current_setting('transaction_isolation') = 'read committed'
      AND NOT (SELECT relrowsecurity FROM pg_class WHERE oid = TG_RELID) THEN
    BEGIN
      EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM ONLY %s)', TG_RELID::regclass) INTO STRICT empty;
      held := NOT empty;
    EXCEPTION WHEN OTHERS THEN
      held := true;
    END;
  END IF;
  IF held THEN
    PERFORM pg_logical_emit_message(true, 'sluice', 'D:' || json_build_object('oid', TG_RELID::bigint, 'name', TG_RELID::regclass::text,
        'truncated', true,
        'ancestors', (SELECT json_agg(a.relid::oid::bigint) FROM pg_partition_ancestors(TG_RELID) a WHERE a.relid <> TG_RELID::regclass),
        'bounds', (SELECT json_agg(pg_get_expr(c.relpartbound, c.oid) ORDER BY a.n)
          FROM pg_partition_ancestors(TG_RELID) WITH ORDINALITY a(relid, n) JOIN pg_class c ON c.oid = a.relid))::text);
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'sluice could not record a TRUNCATE of % for its migration: %', TG_RELID::regclass, SQLERRM;
  RETURN NULL;
END`

// watchPartitionBody adds the TRUNCATE trigger to a partition new to one
// of the run's tables (the argument: it or a table above it became a
// partition in the calling transaction; any other table is refused with
// false), unless it has it. It runs as sluice's user, which the event
// trigger needs (the application's role may attach a partitioned table
// whose partitions it does not own), and so it reads no table and runs
// nothing of the application's: CREATE TRIGGER fires none of sluice's
// event triggers, and no row is read. Any role may call it; the caller's
// own transaction holds the partition's lock already, and no other table
// can be locked through it. (An ALTER TABLE … ENABLE ALWAYS TRIGGER would
// fire the event triggers as sluice's user: the running sync does that.)
const watchPartitionBody = `
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = rel AND relkind = 'r' AND relispartition)
      OR NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(rel) a JOIN pg_publication_rel pr ON pr.prrelid = a.relid
        JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = __PUBLICATION__ AND a.relid <> rel)
      OR NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(rel) a JOIN pg_inherits i ON i.inhrelid = a.relid
        WHERE age(i.xmin) <= 0 AND txid_status(__FULL_XMIN__(i.xmin)) = 'in progress') THEN
    RETURN false;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = __TRUNCATE_TRIGGER__) THEN
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()', __TRUNCATE_TRIGGER__, rel, __TRUNCATE_FUNCTION__);
  END IF;
  RETURN true;
END`

// SchemaWatchNames are the names of what the run on slot installs: its
// event triggers, the name of the TRUNCATE trigger it gives each partition,
// and the functions they run (in the _sluice schema).
func SchemaWatchNames(slot string) (eventTriggers []string, tableTrigger string, functions []string) {
	n := ddlWatchNamesFor(slot)
	return []string{n.end, n.drop, n.rewrite}, n.truncate, []string{n.end, n.truncate, n.watch}
}

// ErrDDLWatchRefused: the source user may not create event triggers (it
// takes a superuser, or rds_superuser on RDS).
var ErrDDLWatchRefused = errors.New("the source user may not create event triggers")

// watchSchema holds the trigger functions: a schema of sluice's own, so
// that the application's DDL (a DROP SCHEMA … CASCADE) cannot take them
// away with its tables, and its schema dumps do not show them.
const watchSchema = "_sluice"

// EnsureDDLWatch installs the run's event triggers and their function, for
// the tables of publication. It
// returns ErrDDLWatchRefused when the user lacks the privilege; the run
// then relies on what the stream itself shows.
func EnsureDDLWatch(ctx context.Context, pool *pgxpool.Pool, slot, publication string, log *slog.Logger) error {
	err := installDDLWatch(ctx, pool, slot, publication)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P06") { // another run created the schema meanwhile
		err = installDDLWatch(ctx, pool, slot, publication)
	}
	if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
		return fmt.Errorf("%w: %s", ErrDDLWatchRefused, pe.Message)
	}
	if err != nil {
		return fmt.Errorf("source: install sluice's schema-change triggers for slot %s: %w", slot, err)
	}
	_, missed, err := watchPartitionTruncates(ctx, pool, slot, publication, time.Now().Add(10*time.Second))
	if err != nil {
		return err
	}
	if len(missed) > 0 {
		log.Warn("a TRUNCATE of these partitions will not stop the sync, and the rows it takes would stay on the target: "+strings.Join(missed, ", "),
			"code", "SLUICE-SYNC-NOTRUNCWATCH", "slot", slot,
			"hint", "a transaction or a VACUUM kept each of them locked while sluice tried to add its TRUNCATE trigger; it tries again once a minute and logs when it could: do not truncate single partitions until then")
	}
	return nil
}

// Rewatch asks KeepWatchingTruncates to look now rather than at its next
// minute: a notice showed a partition whose trigger is missing or does not
// fire ALWAYS (a new partition's, made by the event trigger, fires in
// ordinary sessions only until sluice enables it ALWAYS; one disabled, or
// enabled again by ENABLE TRIGGER ALL).
type Rewatch chan struct{}

// NewRewatch makes a Rewatch; pokes made while one is pending count once.
func NewRewatch() Rewatch { return make(Rewatch, 1) }

// Poke asks for a look now.
func (r Rewatch) Poke() {
	select {
	case r <- struct{}{}:
	default:
	}
}

// rewatchGap is the least time between two looks, however often poked.
const rewatchGap = time.Second

// KeepWatchingTruncates tries again once a minute, and when poked through
// rewatch, until ctx ends, to give the TRUNCATE trigger to the partitions
// that lack it (ones a transaction or a VACUUM kept locked at start, ones
// created since) and to enable it ALWAYS where it is not, one short try
// each, so that the application's writers of such a partition wait at most
// 100 ms a look, and a look comes once a minute, or when poked at most once
// a second (pokes come with DDL on the run's tables). It returns at once on
// a source without sluice's triggers, and for a run without a partitioned
// table (the run's tables stay the same).
func KeepWatchingTruncates(ctx context.Context, pool *pgxpool.Pool, slot, publication string, log *slog.Logger, rewatch Rewatch) {
	var partitioned bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
		JOIN pg_class c ON c.oid = pr.prrelid WHERE p.pubname = $1 AND c.relkind = 'p')`, publication).Scan(&partitioned); err == nil && !partitioned {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-rewatch:
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(last.Add(rewatchGap))):
			}
		}
		last = time.Now()
		var installed bool
		if err := pool.QueryRow(ctx, `SELECT to_regprocedure($1) IS NOT NULL`, WatchFunctions(slot)[2]).Scan(&installed); err != nil {
			if ctx.Err() == nil {
				log.Warn("could not look up sluice's TRUNCATE triggers; trying again in a minute", "code", "SLUICE-SYNC-NOTRUNCWATCH", "error", err.Error())
			}
			continue
		}
		if !installed {
			return // the user may not install them
		}
		watched, _, err := watchPartitionTruncates(ctx, pool, slot, publication, time.Now())
		if err != nil && ctx.Err() == nil {
			log.Warn("could not add sluice's TRUNCATE trigger to partitions", "code", "SLUICE-SYNC-NOTRUNCWATCH", "error", err.Error())
		}
		if len(watched) > 0 {
			log.Info("partitions now watched for TRUNCATE: "+strings.Join(watched, ", "), "slot", slot)
		}
	}
}

// watchPartitionTruncates gives every partition of the publication's
// partitioned tables the TRUNCATE trigger, and returns those it gave it
// and those it could not: CREATE TRIGGER waits for the partition's writers
// (and for a VACUUM of it), and holds up the writers after it meanwhile,
// so it waits a moment only, and tries again until giveUp (as the
// cutover's fence does).
func watchPartitionTruncates(ctx context.Context, pool *pgxpool.Pool, slot, publication string, giveUp time.Time) (watched, missed []string, err error) {
	version, err := serverVersion(ctx, pool)
	if err != nil {
		return nil, nil, err
	}
	if version < 130000 { // no partitioned table can be published before
		return nil, nil, nil
	}
	names := ddlWatchNamesFor(slot)
	// those without the trigger, or with it not firing always (disabled,
	// or not in replica sessions)
	rows, err := pool.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid
			CROSS JOIN LATERAL pg_partition_tree(pr.prrelid) t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1 AND t.relid <> pr.prrelid::regclass AND c.relkind = 'r'
			AND NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = t.relid AND tg.tgname = $2 AND tg.tgenabled = 'A')
		ORDER BY 1`, publication, names.truncate)
	if err != nil {
		return nil, nil, fmt.Errorf("source: list the partitions of publication %s: %w", publication, err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("source: list the partitions of publication %s: %w", publication, err)
	}
	for _, part := range parts { // giveUp is for all of them: one long transaction may hold them all
		err := withShortLock(ctx, pool, giveUp, func(tx pgx.Tx) error {
			// sluice's own ALTER TABLE need not be described: with the event
			// trigger firing, each partition's would write the whole tree's
			// shape (quadratic in the partitions, in time and WAL). Disabled
			// for this transaction's statements only: other sessions see it
			// enabled throughout.
			if _, err := tx.Exec(ctx, "ALTER EVENT TRIGGER "+postgres.Ident(names.end)+" DISABLE"); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)", part, names.truncate).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				if _, err := tx.Exec(ctx, "CREATE TRIGGER "+postgres.Ident(names.truncate)+" BEFORE TRUNCATE ON "+part+
					" FOR EACH STATEMENT EXECUTE FUNCTION "+postgres.Ident(watchSchema, names.truncate)+"()"); err != nil {
					return err
				}
			}
			// enabled ALWAYS: fired in sessions with session_replication_role
			// = replica too (a subscription's apply worker, pglogical, bulk
			// loaders)
			if _, err := tx.Exec(ctx, "ALTER TABLE "+part+" ENABLE ALWAYS TRIGGER "+postgres.Ident(names.truncate)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "ALTER EVENT TRIGGER "+postgres.Ident(names.end)+" ENABLE ALWAYS")
			return err
		})
		var pe *pgconn.PgError
		switch {
		case err == nil:
			watched = append(watched, part)
		case errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42704"): // dropped meanwhile
		case errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "42501"): // lock_not_available; not its owner (RDS)
			missed = append(missed, part)
		default:
			return watched, missed, fmt.Errorf("source: add sluice's TRUNCATE trigger to partition %s: %w", part, err)
		}
	}
	return watched, missed, nil
}

// serverVersion is the source's server_version_num (150004 for 15.4).
func serverVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return 0, fmt.Errorf("source: read the server version: %w", err)
	}
	return version, nil
}

// withShortLock runs statements that lock a table the application uses in
// one transaction with a short lock_timeout, again after a pause while the
// lock is not to be had, until giveUp.
func withShortLock(ctx context.Context, pool *pgxpool.Pool, giveUp time.Time, stmts func(pgx.Tx) error) error {
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '100ms'"); err != nil {
				return err
			}
			return stmts(tx)
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" || time.Now().Add(pause).After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// textSettings are SET clauses for the TRUNCATE trigger's function: the
// bounds it records are compared with sluice's own reading of them, so it
// prints them in sluice's session settings (a timestamptz bound prints in
// the session's time zone, an interval in its IntervalStyle).
func textSettings() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(postgres.SessionParams)) {
		if name == "application_name" || name == "client_encoding" || name == "row_security" { // not how values print
			continue
		}
		b.WriteString(" SET " + name + " = " + postgres.Literal(postgres.SessionParams[name]))
	}
	return b.String()
}

// installDDLWatch installs the triggers; publication names the run's
// tables, the only ones whose changes are described.
func installDDLWatch(ctx context.Context, pool *pgxpool.Pool, slot, publication string) error {
	names := ddlWatchNamesFor(slot)
	fn := postgres.Ident(watchSchema, names.end)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The triggers are made anew on every start, so that a resumed run
		// has this build's body and events (an older build's triggers may
		// run another function, listen to fewer commands).
		var installed *string // an older build's function, in the application's schema: "schema.name()"
		if err := tx.QueryRow(ctx, `SELECT min(e.evtfoid::regprocedure::text) FROM pg_event_trigger e
			JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE e.evtname IN ($1, $2, $3) AND n.nspname <> $4`,
			names.end, names.drop, names.rewrite, watchSchema).Scan(&installed); err != nil {
			return err
		}
		truncateFn := postgres.Ident(watchSchema, names.truncate)
		watchFn := postgres.Ident(watchSchema, names.watch)
		macros := strings.NewReplacer("__PUBLICATION__", postgres.Literal(publication), "__TRUNCATE_TRIGGER__", postgres.Literal(names.truncate),
			"__TRUNCATE_FUNCTION__", postgres.Literal(truncateFn), "__WATCH_FUNCTION__", watchFn)
		body := fullXmin.ReplaceAllString(macros.Replace(ddlWatchBody), fullXminSQL)
		// search_path pinned, pg_temp last: the application's schemas
		// cannot shadow what the functions call. The trigger functions run
		// as the application's user, which reads the tables it attaches
		// (a definer's would read a foreign table as sluice's user).
		create := func(fn, returns, body string) string {
			return "CREATE OR REPLACE FUNCTION " + fn + "() RETURNS " + returns +
				" LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $sluice$" + body + "$sluice$"
		}
		// VOLATILE (the default, said so): its read of a partition takes a
		// new snapshot, after the TRUNCATE's lock; STABLE would reuse the
		// statement's, from before it.
		truncate := strings.Replace(create(truncateFn, "trigger", truncateWatchBody), " AS $sluice$", " VOLATILE"+textSettings()+" AS $sluice$", 1)
		stmts := []string{
			"CREATE SCHEMA IF NOT EXISTS " + postgres.Ident(watchSchema),
			// the event trigger, as the application's user, calls watchFn
			"GRANT USAGE ON SCHEMA " + postgres.Ident(watchSchema) + " TO PUBLIC",
			truncate,
			"CREATE OR REPLACE FUNCTION " + watchFn + "(rel regclass) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER " +
				"SET search_path = pg_catalog, pg_temp SET lock_timeout = '100ms' AS $sluice$" +
				fullXmin.ReplaceAllString(macros.Replace(watchPartitionBody), fullXminSQL) + "$sluice$",
			create(fn, "event_trigger", body),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.end),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.drop),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.rewrite),
			"CREATE EVENT TRIGGER " + postgres.Ident(names.end) + " ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE') EXECUTE FUNCTION " + fn + "()",
			// every tag: DROP SCHEMA … CASCADE and DROP OWNED drop tables too
			"CREATE EVENT TRIGGER " + postgres.Ident(names.drop) + " ON sql_drop EXECUTE FUNCTION " + fn + "()",
			"CREATE EVENT TRIGGER " + postgres.Ident(names.rewrite) + " ON table_rewrite EXECUTE FUNCTION " + fn + "()",
		}
		for _, t := range []string{names.end, names.drop, names.rewrite} {
			// in sessions with session_replication_role = replica too
			stmts = append(stmts, "ALTER EVENT TRIGGER "+postgres.Ident(t)+" ENABLE ALWAYS")
		}
		if installed != nil {
			stmts = append(stmts, "DROP FUNCTION IF EXISTS "+*installed)
		}
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropDDLWatch removes the run's triggers and their functions, and the
// _sluice schema once no run's function is left in it. The
// partitions' triggers go first: they may wait for locks and fail, and what
// is left is found again by the next try.
func dropDDLWatch(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	names := ddlWatchNamesFor(slot)
	if err := dropTruncateWatch(ctx, pool, names.truncate); err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT evtname, evtfoid::regprocedure::text FROM pg_event_trigger WHERE evtname IN ($1, $2, $3)`,
		names.end, names.drop, names.rewrite)
	if err != nil {
		return fmt.Errorf("source: look up sluice's schema-change triggers for slot %s: %w", slot, err)
	}
	type trigger struct{ name, function string }
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (trigger, error) {
		var t trigger
		err := r.Scan(&t.name, &t.function)
		return t, err
	})
	if err != nil {
		return fmt.Errorf("source: look up sluice's schema-change triggers for slot %s: %w", slot, err)
	}
	functions := map[string]bool{} // regprocedure's text, quoted where it needs to be
	for _, t := range found {
		if _, err := pool.Exec(ctx, "DROP EVENT TRIGGER IF EXISTS "+postgres.Ident(t.name)); err != nil {
			return fmt.Errorf("source: drop event trigger %s: %w", t.name, err)
		}
		functions[t.function] = true // an older build's may live elsewhere
	}
	for _, f := range WatchFunctions(slot) {
		var known *string
		if err := pool.QueryRow(ctx, `SELECT to_regprocedure($1)::text`, f).Scan(&known); err != nil {
			return fmt.Errorf("source: look up function %s: %w", f, err)
		}
		if known != nil {
			functions[*known] = true
		}
	}
	for f := range functions {
		if _, err := pool.Exec(ctx, "DROP FUNCTION IF EXISTS "+f); err != nil {
			return fmt.Errorf("source: drop function %s: %w", f, err)
		}
	}
	// The last run's cleanup takes the schema; another run's function
	// keeps it (dependent_objects_still_exist). Tried on every call: a
	// cleanup cut off after the functions went finds none to drop.
	_, err = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+postgres.Ident(watchSchema))
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && (pe.Code == "2BP01" || pe.Code == "42501") { // or another user's
		err = nil
	}
	if err != nil {
		return fmt.Errorf("source: drop schema %s: %w", watchSchema, err)
	}
	return nil
}

// dropTruncateWatch drops the TRUNCATE trigger named trigger from every
// partition. DROP TRIGGER locks the partition against its readers too, so
// each waits a moment only, and tries again for a while.
func dropTruncateWatch(ctx context.Context, pool *pgxpool.Pool, trigger string) error {
	rows, err := pool.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_trigger tg
		JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE tg.tgname = $1 ORDER BY 1`, trigger)
	if err != nil {
		return fmt.Errorf("source: look up sluice's TRUNCATE triggers %s: %w", trigger, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("source: look up sluice's TRUNCATE triggers %s: %w", trigger, err)
	}
	giveUp := time.Now().Add(time.Minute)
	for _, table := range tables {
		if err := withShortLock(ctx, pool, giveUp, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "DROP TRIGGER IF EXISTS "+postgres.Ident(trigger)+" ON "+table)
			return err
		}); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P01" { // the partition was dropped meanwhile
				continue
			}
			if errors.As(err, &pe) && pe.Code == "55P03" {
				return failure.Wrap(err, failure.Internal, "SLUICE-SOURCE-LOCKED", "could not drop sluice's TRUNCATE trigger %s on partition %s: for a minute, a transaction kept the partition locked (DROP TRIGGER must wait for its readers too)", trigger, table).
					With("table", table).
					WithHint("run the command again once that transaction has ended (SELECT pid, xact_start, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY xact_start shows the oldest); it goes on where this one stopped")
			}
			return fmt.Errorf("source: drop sluice's TRUNCATE trigger %s on %s: %w", trigger, table, err)
		}
	}
	return nil
}

// PartitionBound is what the source's catalog says now of the rows of a
// partition.
type PartitionBound struct {
	// Constraint is its partition constraint, its ancestors' bounds
	// included (pg_get_partition_constraintdef); "" when it may have
	// changed since (a default partition, or one below one). Nothing is
	// set when something cannot be read.
	Constraint string
	// Levels are its bound and those of the partitioned tables between it
	// and the migrated table, leaf first; Parents the table above each.
	Levels  []partbound.Level
	Parents []uint32
}

// Matches says whether the bound read now is the one a TRUNCATE recorded:
// the same tables above the partition (nearest first) and the same bounds
// at every level. A partition attached elsewhere since, or detached and
// attached again with another bound, held other rows.
func (b PartitionBound) Matches(ancestors []uint32, bounds []string) bool {
	if len(b.Parents) == 0 || len(b.Parents) > len(ancestors) || !slices.Equal(b.Parents, ancestors[:len(b.Parents)]) || len(bounds) < len(b.Levels) {
		return false
	}
	for i, l := range b.Levels {
		if l.Bound != bounds[i] {
			return false
		}
	}
	return true
}

// HeldBefore says whether the partition with oid holds a row that a
// transaction older than xid wrote, which a TRUNCATE in xid would have
// taken away: then the notice saying so did not come from one (any role
// may write a notice). True too when it cannot tell: the partition has
// row-level security, or the read fails or takes more than 10 s. (A
// writer that waited for the TRUNCATE's lock may have an older xid, and
// makes it say true: the stop then names no rows, which is safe.)
func HeldBefore(pool *pgxpool.Pool, oid, xid uint32) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the run's context may be ending
	defer cancel()
	var name string
	var secured bool
	if err := pool.QueryRow(ctx, `SELECT oid::regclass::text, relrowsecurity FROM pg_class WHERE oid = $1`, oid).Scan(&name, &secured); err != nil || secured {
		return true
	}
	// age() counts back from the current transaction: a larger age is an
	// older transaction; a frozen row's reads as the oldest. The context's
	// timeout ends a long read (pgx cancels the query).
	var held bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ONLY `+name+` WHERE age(xmin) > age($1::text::xid))`, fmt.Sprint(xid)).Scan(&held)
	return err != nil || held
}

// ReadBound reads the bound of the partition with oid below the migrated
// table root; the zero PartitionBound when it cannot.
func ReadBound(pool *pgxpool.Pool, oid, root uint32) PartitionBound {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the run's context may be ending
	defer cancel()
	var b PartitionBound
	// A default partition's constraint changes with every partition added
	// beside it: now it may not name the rows it held then.
	var constraint *string
	if err := pool.QueryRow(ctx, `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_partition_ancestors($1::oid::regclass) a JOIN pg_class c ON c.oid = a.relid
			WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') THEN NULL ELSE pg_get_partition_constraintdef($1::oid) END`, oid).Scan(&constraint); err != nil || constraint == nil {
		return PartitionBound{}
	}
	b.Constraint = *constraint
	rows, err := pool.Query(ctx, `WITH RECURSIVE up AS (
			SELECT $1::oid AS relid, 0 AS depth
			UNION ALL
			SELECT i.inhparent, up.depth + 1 FROM up JOIN pg_inherits i ON i.inhrelid = up.relid WHERE up.relid <> $2::oid)
		SELECT pg_get_expr(c.relpartbound, c.oid), pt.partstrat::text, i.inhparent,
			-- a key column ordered by another than its type's default
			-- operator class reads as an expression: MariaDB knows one order
			ARRAY(SELECT CASE WHEN o.opcdefault THEN coalesce(a.attname::text, '') ELSE '' END
				FROM unnest(pt.partattrs::int2[], pt.partclass::oid[]) WITH ORDINALITY k(attnum, opclass, ord)
				JOIN pg_opclass o ON o.oid = k.opclass
				LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM up JOIN pg_class c ON c.oid = up.relid JOIN pg_inherits i ON i.inhrelid = up.relid
			JOIN pg_partitioned_table pt ON pt.partrelid = i.inhparent
		WHERE up.relid <> $2::oid ORDER BY up.depth`, oid, root)
	if err != nil {
		return PartitionBound{}
	}
	for rows.Next() {
		var l partbound.Level
		var strategy string
		var parent uint32
		if err := rows.Scan(&l.Bound, &strategy, &parent, &l.Columns); err != nil || len(strategy) != 1 {
			rows.Close()
			return PartitionBound{}
		}
		l.Strategy = strategy[0]
		b.Levels = append(b.Levels, l)
		b.Parents = append(b.Parents, parent)
	}
	if rows.Err() != nil || len(b.Parents) == 0 || b.Parents[len(b.Parents)-1] != root {
		return PartitionBound{}
	}
	return b
}

// WatchFunctions are the schema-qualified functions of the run on slot's
// triggers, for a message that says how to drop them by hand (CASCADE
// takes the partitions' triggers with the second).
func WatchFunctions(slot string) []string {
	n := ddlWatchNamesFor(slot)
	return []string{postgres.Ident(watchSchema, n.end) + "()", postgres.Ident(watchSchema, n.truncate) + "()",
		postgres.Ident(watchSchema, n.watch) + "(regclass)"}
}
