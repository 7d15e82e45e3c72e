package pgstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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
// the run on slot: one per event, as a trigger has one.
type ddlWatchNames struct{ end, drop, rewrite string }

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
	return ddlWatchNames{end: name("sluice_ddl_"), drop: name("sluice_drop_"), rewrite: name("sluice_rewrite_")}
}

// ddlWatchBody is the trigger function. Whatever goes wrong in it becomes
// a warning: sluice must never make the application's DDL fail.
const ddlWatchBody = `
DECLARE
  r record;
  part record;
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
    -- and a partition's (a new one's, one's below) concerns its root
    -- Only the run's tables (its publication's) are described: DDL on
    -- other tables, a big partition tree's above all, costs one lookup.
    FOR r IN WITH RECURSIVE altered(objid) AS (
        SELECT objid FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_class'::regclass
        UNION SELECT pg_partition_root(objid)::oid FROM pg_event_trigger_ddl_commands()
          WHERE classid = 'pg_class'::regclass AND pg_partition_root(objid) IS NOT NULL
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
          -- xmin with the epoch of this transaction's id (a savepoint's id
          -- is a little above it, one of the last epoch far above)
          FOR part IN SELECT t.relid FROM pg_partition_tree(r.objid) t JOIN pg_inherits i ON i.inhrelid = t.relid,
              LATERAL (SELECT ((txid_current() >> 32) << 32) + i.xmin::text::bigint AS x) e
              WHERE age(i.xmin) <= 0 -- not older than this transaction: the rest need no lookup
                AND txid_status(CASE WHEN e.x > txid_current() + 2147483648 THEN e.x - 4294967296 ELSE e.x END) = 'in progress' LOOP
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', part.relid) INTO has_rows;
            IF has_rows THEN
              attached := attached || jsonb_build_object('oid', part.relid::oid::bigint, 'name', part.relid::text);
            END IF;
          END LOOP;
        EXCEPTION WHEN OTHERS THEN
          -- cannot tell: better a stop the user goes on past than rows missed
          attached := jsonb_build_array(jsonb_build_object('oid', 0, 'name', '(one sluice could not tell: ' || SQLERRM || ')'));
        END;
        shape := (shape::jsonb || jsonb_build_object('attached', attached, 'parts',
          (SELECT coalesce(jsonb_agg(relid::oid::bigint), '[]') FROM pg_partition_tree(r.objid) WHERE relid <> r.objid::regclass),
          'unlogged', (SELECT coalesce(jsonb_agg(relid::text), '[]') FROM pg_partition_tree(r.objid) t JOIN pg_class pc ON pc.oid = t.relid
            WHERE pc.relpersistence = 'u')))::text;
      END IF;
      IF shape IS NOT NULL THEN
        PERFORM pg_logical_emit_message(true, 'sluice', 'D:' || shape);
      END IF;
    END LOOP;
  END IF;
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'sluice could not record a schema change for its migration: %', SQLERRM;
END`

// SchemaWatchNames are the names of the event triggers, and of the
// function they run, that the run on slot installs.
func SchemaWatchNames(slot string) (triggers []string, function string) {
	n := ddlWatchNamesFor(slot)
	return []string{n.end, n.drop, n.rewrite}, n.end
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
func EnsureDDLWatch(ctx context.Context, pool *pgxpool.Pool, slot, publication string) error {
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
	return nil
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
		body := strings.ReplaceAll(ddlWatchBody, "__PUBLICATION__", "'"+strings.ReplaceAll(publication, "'", "''")+"'")
		create := func(fn string) string {
			// search_path pinned: the application's schemas cannot shadow what it calls
			return "CREATE OR REPLACE FUNCTION " + fn + "() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $sluice$" + body + "$sluice$"
		}
		stmts := []string{
			"CREATE SCHEMA IF NOT EXISTS " + postgres.Ident(watchSchema),
			create(fn),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.end),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.drop),
			"DROP EVENT TRIGGER IF EXISTS " + postgres.Ident(names.rewrite),
			"CREATE EVENT TRIGGER " + postgres.Ident(names.end) + " ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE') EXECUTE FUNCTION " + fn + "()",
			// every tag: DROP SCHEMA … CASCADE and DROP OWNED drop tables too
			"CREATE EVENT TRIGGER " + postgres.Ident(names.drop) + " ON sql_drop EXECUTE FUNCTION " + fn + "()",
			"CREATE EVENT TRIGGER " + postgres.Ident(names.rewrite) + " ON table_rewrite EXECUTE FUNCTION " + fn + "()",
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

// dropDDLWatch removes the run's event triggers and their function; a
// source without them (the user could not create them) is left as is.
func dropDDLWatch(ctx context.Context, pool *pgxpool.Pool, slot string) error {
	names := ddlWatchNamesFor(slot)
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
	functions := map[string]bool{}
	for _, t := range found {
		if _, err := pool.Exec(ctx, "DROP EVENT TRIGGER IF EXISTS "+postgres.Ident(t.name)); err != nil {
			return fmt.Errorf("source: drop event trigger %s: %w", t.name, err)
		}
		functions[t.function] = true
	}
	for f := range functions {
		// regprocedure's text is already quoted where it needs to be
		if _, err := pool.Exec(ctx, "DROP FUNCTION IF EXISTS "+f); err != nil {
			return fmt.Errorf("source: drop function %s: %w", f, err)
		}
	}
	if len(functions) == 0 {
		return nil
	}
	// The last run's cleanup takes the schema; another run's function
	// keeps it (dependent_objects_still_exist).
	_, err = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+postgres.Ident(watchSchema))
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "2BP01" {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("source: drop schema %s: %w", watchSchema, err)
	}
	return nil
}

// WatchFunction is the schema-qualified function of the run on slot's
// triggers, for a message that says how to drop it by hand.
func WatchFunction(slot string) string {
	return postgres.Ident(watchSchema, ddlWatchNamesFor(slot).end) + "()"
}
