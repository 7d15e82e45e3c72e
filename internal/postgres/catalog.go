package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/schema"
)

// ListTables returns the ordinary and partitioned tables of a schema.
func (s *Source) ListTables(ctx context.Context, schemaName string) ([]schema.TableName, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r','p') AND NOT c.relispartition
		ORDER BY c.relname`, schemaName)
	if err != nil {
		return nil, fmt.Errorf("source: list tables of schema %s: %w", schemaName, err)
	}
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schema.TableName, error) {
		var t schema.TableName
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("source: list tables of schema %s: %w", schemaName, err)
	}
	return names, nil
}

// ReadTable reads one table's columns, keys, indexes and foreign keys.
func (s *Source) ReadTable(ctx context.Context, name schema.TableName) (*schema.Table, error) {
	var oid uint32
	var replIdent string
	var estimate float64
	var partitioned bool
	var partitions []uint32
	var unlogged, foreign, inheritedBy []string
	err := s.Pool.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text, greatest(c.reltuples, 0)::float8, c.relkind = 'p',
		       CASE WHEN c.relkind = 'p' THEN array(SELECT relid::oid FROM pg_partition_tree(c.oid) WHERE relid <> c.oid::regclass) END,
		       CASE WHEN c.relkind = 'p' THEN array(SELECT relid::text FROM pg_partition_tree(c.oid) t JOIN pg_class pc ON pc.oid = t.relid
		                                            WHERE pc.relpersistence = 'u') END,
		       CASE WHEN c.relkind = 'p' THEN array(SELECT format('%I.%I', pn.nspname, pc.relname) FROM pg_partition_tree(c.oid) t
		                                            JOIN pg_class pc ON pc.oid = t.relid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		                                            WHERE pc.relkind = 'f' ORDER BY 1) END,
		       CASE WHEN c.relkind = 'r' THEN array(SELECT format('%I.%I', pn.nspname, pc.relname) FROM pg_inherits i
		                                            JOIN pg_class pc ON pc.oid = i.inhrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		                                            WHERE i.inhparent = c.oid ORDER BY 1) END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p')`,
		name.Schema, name.Name).Scan(&oid, &replIdent, &estimate, &partitioned, &partitions, &unlogged, &foreign, &inheritedBy)
	if err == pgx.ErrNoRows {
		return nil, failure.New(failure.Schema, "SLUICE-SCHEMA-NOTABLE",
			"source table %s does not exist", Ident(name.Schema, name.Name)).
			With("table", name.String()).
			WithHint("check the name given to --tables (schema.table; unquoted names are case-sensitive here)")
	}
	if err != nil {
		return nil, fmt.Errorf("source: look up table %s: %w", name, err)
	}
	t := &schema.Table{Name: name, OID: oid, EstimatedRows: int64(estimate), Partitioned: partitioned, Partitions: partitions, UnloggedPartitions: unlogged,
		ForeignPartitions: foreign, InheritedBy: inheritedBy}
	t.ReplicaIdentity = map[string]string{"d": "default", "n": "nothing", "f": "full", "i": "index"}[replIdent]
	if err := s.readColumns(ctx, oid, t); err != nil {
		return nil, err
	}
	if err := s.readIndexes(ctx, oid, t); err != nil {
		return nil, err
	}
	if err := s.readForeignKeys(ctx, oid, t); err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Source) readColumns(ctx context.Context, oid uint32, t *schema.Table) error {
	rows, err := s.Pool.Query(ctx, `
		SELECT a.attname, a.attnum, a.attnotnull, a.atttypid, a.atttypmod, a.attgenerated <> '',
		       coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
		       a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%'
		FROM pg_attribute a
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, oid)
	if err != nil {
		return fmt.Errorf("source: read columns of %s: %w", t.Name, err)
	}
	type raw struct {
		col    schema.Column
		typOID uint32
		typmod int32
	}
	var raws []raw
	for rows.Next() {
		var r raw
		var generated bool
		if err := rows.Scan(&r.col.Name, &r.col.Num, &r.col.NotNull, &r.typOID, &r.typmod, &generated, &r.col.Default, &r.col.Identity); err != nil {
			rows.Close()
			return fmt.Errorf("source: read columns of %s: %w", t.Name, err)
		}
		if generated { // pg_attrdef holds its expression, not a default
			r.col.Generated, r.col.Default = r.col.Default, ""
		}
		raws = append(raws, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("source: read columns of %s: %w", t.Name, err)
	}
	for _, r := range raws {
		typ, err := s.ResolveType(ctx, r.typOID, r.typmod)
		if err != nil {
			return fmt.Errorf("source: type of %s.%s: %w", t.Name, r.col.Name, err)
		}
		r.col.Type, r.col.TypeMod = typ, r.typmod
		t.Columns = append(t.Columns, r.col)
	}
	return nil
}

// ResolveType describes a type by OID and type modifier, following domains
// down to their base type.
func (s *Source) ResolveType(ctx context.Context, oid uint32, typmod int32) (schema.Type, error) {
	typ := schema.Type{Length: -1, Precision: -1, Scale: -1, OID: oid}
	for depth := 0; depth < 10; depth++ {
		var name, kind, display, namespace string
		var base, elem uint32
		var baseMod int32
		err := s.Pool.QueryRow(ctx, `
			SELECT t.typname, t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, format_type(t.oid, $2), n.nspname
			FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`, oid, typmod).
			Scan(&name, &kind, &base, &baseMod, &elem, &display, &namespace)
		if err != nil {
			return typ, err
		}
		if kind == "d" { // a domain: migrate as its base type
			if typ.Domain == "" {
				typ.Domain = name
			}
			oid, typmod = base, baseMod
			continue
		}
		typ.Name, typ.Display, typ.OID, typ.Namespace = name, display, oid, namespace
		if typ.Domain != "" {
			typ.Display = display + " (domain " + typ.Domain + ")"
		}
		if elem != 0 && len(name) > 0 && name[0] == '_' {
			typ.Array = true
			if err := s.resolveElem(ctx, elem, &typ); err != nil {
				return typ, err
			}
		}
		if kind == "e" {
			rows, err := s.Pool.Query(ctx, `SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, oid)
			if err != nil {
				return typ, err
			}
			labels, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return typ, err
			}
			typ.EnumLabels = labels
		}
		decodeTypmod(&typ, typmod)
		return typ, nil
	}
	return typ, fmt.Errorf("domain nesting too deep at type oid %d", oid)
}

// firstNormalOID is PostgreSQL's FirstNormalObjectId: types with a lower
// OID are built in.
const firstNormalOID = 16384

// resolveElem names an array's element type, following a domain down to its
// base type, and says when to_json (the copy) writes the elements otherwise
// than as the JSON form of their text (what the change stream sends): a
// composite becomes an object, and a type that is not built in converts
// through its own cast to json if it has one (hstore's makes an object).
func (s *Source) resolveElem(ctx context.Context, oid uint32, typ *schema.Type) error {
	for depth := 0; depth < 10; depth++ {
		var name, kind, delim string
		var base uint32
		var jsonCast bool
		err := s.Pool.QueryRow(ctx, `
			SELECT t.typname, t.typtype::text, t.typbasetype, t.typdelim::text,
			       EXISTS (SELECT FROM pg_cast c WHERE c.castsource = t.oid AND c.casttarget = 'json'::regtype)
			FROM pg_type t WHERE t.oid = $1`, oid).Scan(&name, &kind, &base, &delim, &jsonCast)
		if err != nil {
			return err
		}
		if kind == "d" {
			oid = base
			continue
		}
		typ.Elem = name
		switch {
		case kind == "c":
			typ.ElemUnsupported = "its element type " + name + " is a composite type, which the copy writes as JSON objects and the change stream as text"
		case oid >= firstNormalOID && jsonCast:
			typ.ElemUnsupported = "its element type " + name + " has its own cast to json, which the copy uses and the change stream does not"
		case delim != ",": // box: its values hold commas
			typ.ElemUnsupported = "its element type " + name + " separates array elements with " + strconv.Quote(delim) + ", which sluice does not read in the change stream's array text"
		}
		return nil
	}
	return fmt.Errorf("domain nesting too deep at type oid %d", oid)
}

// decodeTypmod unpacks PostgreSQL's atttypmod for the types that use it.
func decodeTypmod(typ *schema.Type, typmod int32) {
	if typmod < 0 {
		return
	}
	switch typ.Name {
	case "varchar", "bpchar", "bit", "varbit":
		typ.Length = int(typmod - 4)
		if typ.Name == "bit" || typ.Name == "varbit" {
			typ.Length = int(typmod)
		}
	case "numeric":
		// the scale is an 11-bit signed number: PostgreSQL 15 allows a
		// negative one (numeric(2,-3) rounds to thousands) and one above
		// the precision (numeric(2,5))
		typ.Precision = int((typmod - 4) >> 16 & 0xffff)
		typ.Scale = int(((typmod-4)&0x7ff)^1024) - 1024
	case "timestamp", "timestamptz", "time", "timetz", "interval":
		typ.Precision = int(typmod & 0xffff)
	}
}

func (s *Source) readIndexes(ctx context.Context, oid uint32, t *schema.Table) error {
	rows, err := s.Pool.Query(ctx, `
		SELECT i.relname, ix.indisunique, ix.indisprimary, NOT ix.indimmediate, ix.indisreplident, am.amname,
		       ix.indexprs IS NOT NULL, ix.indpred IS NOT NULL,
		       array(SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
		             WHERE k.ord <= ix.indnkeyatts ORDER BY k.ord)
		FROM pg_index ix
		JOIN pg_class i ON i.oid = ix.indexrelid
		JOIN pg_am am ON am.oid = i.relam
		WHERE ix.indrelid = $1 AND ix.indisvalid -- a failed CREATE INDEX CONCURRENTLY leaves one that enforces nothing
		ORDER BY ix.indisprimary DESC, i.relname`, oid)
	if err != nil {
		return fmt.Errorf("source: read indexes of %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ix schema.Index
		var method string
		var hasExprs, partial bool
		if err := rows.Scan(&ix.Name, &ix.Unique, &ix.Primary, &ix.Deferrable, &ix.ReplicaIdentity, &method, &hasExprs, &partial, &ix.Columns); err != nil {
			return fmt.Errorf("source: read indexes of %s: %w", t.Name, err)
		}
		switch {
		case hasExprs:
			ix.Unsupported = "it indexes an expression"
		case partial:
			ix.Unsupported = "it is a partial index (WHERE …)"
		case method != "btree" && method != "hash":
			ix.Unsupported = "its method " + method + " has no MySQL equivalent"
		}
		if ix.Primary {
			t.PrimaryKey, t.PrimaryKeyDeferrable = ix.Columns, ix.Deferrable
			continue
		}
		t.Indexes = append(t.Indexes, ix)
	}
	return rows.Err()
}

func (s *Source) readForeignKeys(ctx context.Context, oid uint32, t *schema.Table) error {
	rows, err := s.Pool.Query(ctx, `
		SELECT c.conname, rn.nspname, rc.relname, c.confdeltype::text, c.confupdtype::text,
		       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
		             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
		       array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
		             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
		FROM pg_constraint c
		JOIN pg_class rc ON rc.oid = c.confrelid
		JOIN pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE c.conrelid = $1 AND c.contype = 'f'
		ORDER BY c.conname`, oid)
	if err != nil {
		return fmt.Errorf("source: read foreign keys of %s: %w", t.Name, err)
	}
	defer rows.Close()
	actions := map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
	for rows.Next() {
		var fk schema.ForeignKey
		var del, upd string
		if err := rows.Scan(&fk.Name, &fk.RefTable.Schema, &fk.RefTable.Name, &del, &upd, &fk.Columns, &fk.RefColumns); err != nil {
			return fmt.Errorf("source: read foreign keys of %s: %w", t.Name, err)
		}
		fk.OnDelete, fk.OnUpdate = actions[del], actions[upd]
		t.ForeignKeys = append(t.ForeignKeys, fk)
	}
	return rows.Err()
}

// DescribeExpr returns the type of a SQL expression evaluated over a table's
// rows, without reading any row.
func (s *Source) DescribeExpr(ctx context.Context, table schema.TableName, expr string) (schema.Type, error) {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return schema.Type{}, err
	}
	defer conn.Release()
	sd, err := conn.Conn().Prepare(ctx, "", "SELECT ("+expr+") FROM "+Ident(table.Schema, table.Name)+" LIMIT 0")
	if err != nil {
		return schema.Type{}, err
	}
	f := sd.Fields[0]
	return s.ResolveType(ctx, f.DataTypeOID, f.TypeModifier)
}

// KeyRange returns the smallest and largest value of a single-column key as
// text; ok is false for an empty table.
func (s *Source) KeyRange(ctx context.Context, table schema.TableName, keyExpr string) (lo, hi string, ok bool, err error) {
	var l, h *string
	q := fmt.Sprintf("SELECT min(%s)::text, max(%s)::text FROM %s", keyExpr, keyExpr, Ident(table.Schema, table.Name))
	if err := s.Pool.QueryRow(ctx, q).Scan(&l, &h); err != nil {
		return "", "", false, fmt.Errorf("source: key range of %s: %w", table, err)
	}
	if l == nil || h == nil {
		return "", "", false, nil
	}
	return *l, *h, true, nil
}

// KeyBoundaries returns every every-th key in key order (as text), which
// splits the table into chunks of that many rows. One index-only scan.
func (s *Source) KeyBoundaries(ctx context.Context, table schema.TableName, keyExprs []string, every int) ([][]string, error) {
	cols := make([]string, len(keyExprs))
	for i := range keyExprs {
		cols[i] = fmt.Sprintf("k%d::text", i)
	}
	aliased := make([]string, len(keyExprs))
	for i, k := range keyExprs {
		aliased[i] = fmt.Sprintf("%s AS k%d", k, i)
	}
	order := strings.Join(keyExprs, ", ")
	q := fmt.Sprintf("SELECT %s FROM (SELECT %s, row_number() OVER (ORDER BY %s) AS rn FROM %s) s WHERE rn %% %d = 0 ORDER BY rn",
		strings.Join(cols, ", "), strings.Join(aliased, ", "), order, Ident(table.Schema, table.Name), every)
	rows, err := s.Pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("source: chunk boundaries of %s: %w", table, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals := make([]string, len(keyExprs))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("source: chunk boundaries of %s: %w", table, err)
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}
