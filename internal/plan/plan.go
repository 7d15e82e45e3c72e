// Package plan turns source tables plus the user's mapping (renames, dropped,
// retyped and computed columns, row filters) into what the copier, verifier
// and the `plan` command need: target DDL, per-column conversions, warnings
// for every mapping that is not exact, and errors for what cannot be moved
// safely.
package plan

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/schema"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Column is one target column and where its value comes from.
type Column struct {
	Source     string // source column name; "" for a computed column
	SourceExpr string // what the copy SELECTs on the source
	Target     string // target column name
	SQLType    string
	Kind       canonical.Kind
	Convert    typemap.Converter
	// StreamConvert turns a value from the change stream (the plain column)
	// into what SourceExpr reads, before Convert; nil when they are the same.
	StreamConvert typemap.Converter
	BulkSafe      bool   // Convert may be skipped for LOAD DATA (see typemap.Mapping)
	TargetExpr    string // what verify SELECTs on the target
	LoadExpr      string // fmt pattern turning the loaded bytes into the value, or ""
	NotNull       bool
	Default       string // DEFAULT clause, without the keyword
	// KeyExprSource/KeyExprTarget order and compare the column the same way
	// on both engines when it is part of the row key.
	KeyExprSource string
	KeyExprTarget string
	SourceType    schema.Type
	// UserType: the mapping set the target type (SQLType), whose order
	// and comparison sluice does not know.
	UserType bool
}

// Table is the plan for one source table.
type Table struct {
	Source  *schema.Table
	Target  string   // target table name
	Columns []Column // in target order
	Key     []int    // indexes into Columns of the row key, in key order
	Filter  string   // row filter evaluated on the source, or ""
	// Keyless: no primary or unique key; rows are matched on all columns
	// (sync only, with REPLICA IDENTITY FULL) and chunked by ctid.
	Keyless     bool
	CreateTable string      // target table with its row key only
	PostData    []Statement // secondary indexes, built after the data
	ForeignKeys []Statement // built once every table is copied
	Warnings    []string
	// byteOrderNotCodePoints: the source database's encoding is neither
	// UTF8 nor SQL_ASCII, so COLLATE "C" orders text by bytes that are not
	// the code points the target's binary collation orders by.
	byteOrderNotCodePoints bool
}

// Statement is DDL run after the data; Name is the index or constraint it
// creates, so a resumed run can tell whether it already ran.
type Statement struct {
	Name string
	SQL  string
}

// Plan covers all tables of a run.
type Plan struct {
	Tables []*Table
	Flavor typemap.Flavor
	Errors []error // what cannot be migrated safely; the run must not start
}

// Err returns the first error (all of them are printed by the plan command).
func (p *Plan) Err() error {
	if len(p.Errors) == 0 {
		return nil
	}
	return p.Errors[0]
}

// Options select tables and name the target flavor.
type Options struct {
	Tables   []string // "name" or "schema.name"; empty: every table of Schema
	Schema   string   // default "public"
	Mappings map[string]config.TableMapping
	Flavor   typemap.Flavor
	// AllowKeyless takes tables without a key that stream full old rows
	// (REPLICA IDENTITY FULL): sync can match their rows on all columns.
	AllowKeyless bool
	// CompareOnly: the plan only compares the tables (verify), which
	// matches a keyless table's rows on all columns whatever it streams.
	CompareOnly bool
}

// Build reads the source schema and plans every selected table.
func Build(ctx context.Context, src *postgres.Source, opt Options) (*Plan, error) {
	if opt.Schema == "" {
		opt.Schema = "public"
	}
	names, err := selectTables(ctx, src, opt)
	if err != nil {
		return nil, err
	}
	p := &Plan{Flavor: opt.Flavor}
	if p.Errors, err = checkMappedTables(ctx, src, opt.Mappings); err != nil {
		return nil, err
	}
	var encoding string
	if err := src.Pool.QueryRow(ctx, `SHOW server_encoding`).Scan(&encoding); err != nil {
		return nil, fmt.Errorf("source: read server_encoding: %w", err)
	}
	targets := map[string]schema.TableName{}
	for _, name := range names {
		st, err := src.ReadTable(ctx, name)
		if err != nil {
			return nil, err
		}
		t, errs := planTable(ctx, src, st, mappingFor(opt.Mappings, name), opt)
		p.Errors = append(p.Errors, errs...)
		if t == nil {
			continue
		}
		t.byteOrderNotCodePoints = encoding != "UTF8" && encoding != "SQL_ASCII"
		if prev, dup := targets[strings.ToLower(t.Target)]; dup {
			p.Errors = append(p.Errors, failure.New(failure.Schema, "SLUICE-PLAN-DUPTARGET",
				"source tables %s and %s would both become target table %s", prev, name, t.Target).
				WithHint("give one of them another name with tables: {%s: {rename: …}} in the config file", name))
			continue
		}
		targets[strings.ToLower(t.Target)] = name
		p.Tables = append(p.Tables, t)
	}
	for _, t := range p.Tables {
		planForeignKeys(p, t)
	}
	return p, nil
}

func selectTables(ctx context.Context, src *postgres.Source, opt Options) ([]schema.TableName, error) {
	if len(opt.Tables) == 0 {
		names, err := src.ListTables(ctx, opt.Schema)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, failure.New(failure.Schema, "SLUICE-SCHEMA-EMPTY", "source schema %s has no tables", opt.Schema).
				WithHint("name the tables with --tables schema.table")
		}
		return names, nil
	}
	var names []schema.TableName
	seen := map[schema.TableName]bool{} // items and public.items are one table
	for _, s := range opt.Tables {
		if s = strings.TrimSpace(s); s != "" {
			if n := schema.ParseTableName(s, opt.Schema); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 { // --tables "," or " ": no table, not every table
		return nil, failure.New(failure.Usage, "SLUICE-USAGE-TABLES", "--tables %q names no table", strings.Join(opt.Tables, ",")).
			WithHint("list the tables, e.g. --tables public.orders,public.likes, or leave --tables out to take every table of --schema")
	}
	return names, nil
}

// checkMappedTables refuses a mapping of a table the source does not have:
// a misspelt name would leave its mapping unused, and a column it drops
// copied after all.
func checkMappedTables(ctx context.Context, src *postgres.Source, m map[string]config.TableMapping) ([]error, error) {
	var errs []error
	tables := map[string]map[string]bool{} // schema → its tables
	has := func(name schema.TableName) (bool, error) {
		if tables[name.Schema] == nil {
			names, err := src.ListTables(ctx, name.Schema)
			if err != nil {
				return false, err
			}
			tables[name.Schema] = map[string]bool{}
			for _, n := range names {
				tables[name.Schema][n.Name] = true
			}
		}
		return tables[name.Schema][name.Name], nil
	}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		name := schema.ParseTableName(key, "public")
		found, err := has(name)
		if err == nil && !found && strings.Contains(key, ".") { // a public table whose name holds a dot (see mappingFor)
			found, err = has(schema.TableName{Schema: "public", Name: key})
		}
		if err != nil {
			return nil, err
		}
		if !found {
			errs = append(errs, failure.New(failure.Schema, "SLUICE-CONFIG-TABLE", "the config maps table %q, but the source has no table %s: its mapping would be left unused", key, name).
				With("table", key).
				WithHint("check the names under tables: in the config file: schema.name, or name alone for a table in public"))
		}
	}
	return errs, nil
}

func mappingFor(m map[string]config.TableMapping, name schema.TableName) config.TableMapping {
	if tm, ok := m[name.Schema+"."+name.Name]; ok {
		return tm
	}
	if name.Schema == "public" {
		return m[name.Name]
	}
	return config.TableMapping{}
}

// maxIdentifier is MySQL's limit for table, column and index names.
const maxIdentifier = 64

func planTable(ctx context.Context, src *postgres.Source, st *schema.Table, tm config.TableMapping, opt Options) (*Table, []error) {
	flavor := opt.Flavor
	t := &Table{Source: st, Target: st.Name.Name, Filter: strings.TrimSpace(tm.Where)}
	if tm.Rename != "" {
		t.Target = tm.Rename
	}
	var errs []error
	tableErr := func(code, format string, args ...any) *failure.Error {
		e := failure.New(failure.Schema, code, "table %s: "+format, append([]any{st.Name}, args...)...).With("table", st.Name.String())
		errs = append(errs, e)
		return e
	}
	if utf8.RuneCountInString(t.Target) > maxIdentifier {
		tableErr("SLUICE-PLAN-LONGNAME", "target name %q is longer than MySQL's %d characters", t.Target, maxIdentifier).
			WithHint("rename it with tables: {%s: {rename: shorter_name}}", st.Name)
	}
	if st.Partitioned {
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: partitioned: copied as one table, its changes streamed through it (PostgreSQL 13 or later); a TRUNCATE, DETACH or DROP of one of its partitions, or an ATTACH of a table holding rows, reaches no change stream: a sync that may install its triggers stops at it, naming the rows to change on the target (docs/OPERATIONS.md)", st.Name))
	}
	if f := st.ForeignPartitions; len(f) > 0 {
		which := "partition " + f[0] + " is a foreign table"
		if len(f) > 1 {
			which = "partitions " + strings.Join(f, ", ") + " are foreign tables"
		}
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: %s: its rows are copied, but it is written on another server, whose changes reach no change stream here: a sync misses every write to it (keep it unchanged until the cutover, or run sluice verify --repair --tables %s after such writes)", st.Name, which, st.Name))
	}
	if len(st.InheritedBy) > 0 {
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: inherited by %s (INHERITS): its copy holds their rows too, as a read of it returns them; sluice sync refuses it (SLUICE-SYNC-INHERITS), since their changes are not its own", st.Name, strings.Join(st.InheritedBy, ", ")))
	}
	rowKey := st.RowKey()
	quoted := postgres.Ident(st.Name.Schema, st.Name.Name)
	switch {
	case len(rowKey) > 0:
	case opt.CompareOnly:
		t.Keyless = true
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: no key: rows are compared on all their columns, as a multiset", st.Name))
	case opt.AllowKeyless && st.ReplicaIdentity == "full":
		t.Keyless = true
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: no key: rows are matched on all their columns (REPLICA IDENTITY FULL); rows that are exact duplicates of each other cannot be told apart while the copy overlaps the stream", st.Name))
	case opt.AllowKeyless:
		tableErr("SLUICE-SCHEMA-NOKEY", "has neither a primary key nor a unique index on NOT NULL columns, and its REPLICA IDENTITY is %s, so PostgreSQL does not stream which row an update or delete touched", st.ReplicaIdentity).
			WithHint("add a primary key (ALTER TABLE %s ADD COLUMN id bigserial PRIMARY KEY), or let sluice match rows on all columns: ALTER TABLE %s REPLICA IDENTITY FULL", quoted, quoted)
		return nil, errs
	default:
		tableErr("SLUICE-SCHEMA-NOKEY", "has neither a primary key nor a unique index on NOT NULL columns, so rows cannot be copied in chunks or matched exactly").
			WithHint("add one on the source, e.g. ALTER TABLE %s ADD PRIMARY KEY (…) or ALTER TABLE %s ADD COLUMN id bigserial PRIMARY KEY, or leave the table out of --tables (sluice sync also takes it with REPLICA IDENTITY FULL)",
				quoted, quoted)
		return nil, errs
	}
	inKey := map[string]bool{}
	for _, c := range rowKey {
		inKey[c] = true
	}
	for _, ix := range st.Indexes {
		if ix.Unique && ix.Unsupported == "" {
			for _, c := range ix.Columns {
				inKey[c] = true
			}
		}
	}
	keyBytes, tooWide := keyBudget(st, rowKey, flavor)
	for _, w := range tooWide {
		tableErr("SLUICE-PLAN-KEYSIZE", "%s needs at least %d bytes in a MySQL index; InnoDB allows %d", w.what, w.bytes, typemap.MaxKeyBytes).
			WithHint("narrow its columns on the source, or set narrower target types under tables: {%s: {columns: {…: {type: …}}}}", st.Name)
	}
	for name := range tm.Columns {
		if st.Column(name) == nil {
			tableErr("SLUICE-CONFIG-COLUMN", "the config maps column %q, which the source table does not have", name).
				WithHint("check the column names under tables: {%s: {columns: …}}", st.Name)
		}
	}
	targetCol := map[string]string{} // source column → target column name
	for _, col := range st.Columns {
		cm := tm.Columns[col.Name]
		if cm.Drop {
			for _, k := range rowKey {
				if k == col.Name {
					tableErr("SLUICE-CONFIG-DROPKEY", "the config drops column %s, which is part of the row key", col.Name).
						WithHint("keep the key column; rename it instead if the new schema calls it differently")
				}
			}
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: dropped by the mapping (not copied)", st.Name, col.Name))
			continue
		}
		if col.Type.ElemUnsupported != "" {
			// The copy reads it with to_json, which knows the elements; only
			// the change stream's text of it cannot become the same JSON.
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: array of %s becomes the JSON to_json writes; sluice sync refuses it (%s)", st.Name, col.Name, col.Type.Elem, col.Type.ElemUnsupported))
		}
		auto := col.Identity && len(st.PrimaryKey) > 0 && st.PrimaryKey[0] == col.Name && isInteger(col.Type.Name)
		m := typemap.Map(col.Type, typemap.Options{Flavor: flavor, InKey: inKey[col.Name], AutoIncrement: auto, KeyBytes: keyBytes[col.Name]})
		c := Column{Source: col.Name, Target: col.Name, SQLType: m.SQLType, Kind: m.Kind, Convert: m.Convert,
			NotNull: col.NotNull, SourceType: col.Type, LoadExpr: m.LoadExpr, StreamConvert: m.StreamConvert, BulkSafe: m.BulkSafe}
		if cm.Rename != "" {
			c.Target = cm.Rename
		}
		c.SourceExpr = postgres.Ident(col.Name)
		if m.SourceExpr != nil {
			c.SourceExpr = m.SourceExpr(c.SourceExpr)
		}
		c.TargetExpr = typemap.QuoteIdent(c.Target)
		if m.TargetExpr != nil {
			c.TargetExpr = m.TargetExpr(c.TargetExpr)
		}
		for _, n := range m.Notes {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: %s", st.Name, col.Name, n))
		}
		if col.Type.Domain != "" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: domain %s becomes its base type %s; its CHECK constraints are not carried over", st.Name, col.Name, col.Type.Domain, col.Type.Name))
		}
		if col.Generated != "" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: generated column (GENERATED ALWAYS AS %s STORED) becomes a plain column holding the copied values; not computed on the target. sluice sync refuses it (the change stream leaves it out): drop it from the mapping for a sync", st.Name, col.Name, col.Generated))
		}
		if col.Identity && !auto {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: identity/serial column does not lead the primary key, so it gets no AUTO_INCREMENT", st.Name, col.Name))
		}
		if cm.Type != "" {
			narrows := c.setUserType(cm.Type)
			note := "a value the target cannot convert exactly stops the copy or sync"
			if narrows {
				note = "the target may round or trim values without a warning (a value it warns about stops the copy or sync); verify compares at the source's precision and reports every value that changed"
			}
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: type set to %s by the mapping (was %s); %s", st.Name, col.Name, cm.Type, col.Type.Display, note))
		}
		if clause, ok, note := typemap.Default(col, m); ok {
			c.Default = clause
			if c.UserType && strings.HasPrefix(clause, "CURRENT_TIMESTAMP") {
				// MySQL wants the column's digits of a second in its default
				// too: a DATETIME(3) set by the mapping takes CURRENT_TIMESTAMP(3)
				c.Default = "CURRENT_TIMESTAMP"
				if n := typeArg(c.SQLType, 0, 0); n > 0 {
					c.Default = fmt.Sprintf("CURRENT_TIMESTAMP(%d)", n)
				}
			}
			if note != "" {
				t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: %s", st.Name, col.Name, note))
			}
		} else {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: %s", st.Name, col.Name, note))
		}
		if cm.Rename != "" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: renamed to %s.%s by the mapping", st.Name, col.Name, t.Target, c.Target))
		}
		targetCol[col.Name] = c.Target
		t.Columns = append(t.Columns, c)
	}
	for _, cc := range tm.Computed {
		c, err := planComputed(ctx, src, st, cc, flavor)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: computed on the source as %s (%s)", st.Name, cc.Name, cc.Expr, c.SQLType))
		t.Columns = append(t.Columns, c)
	}
	if t.Filter != "" {
		// checked now: a condition the source refuses failed every chunk of
		// the copy, as an internal error
		if typ, err := src.DescribeExpr(ctx, st.Name, t.Filter); err != nil || typ.Name != "bool" {
			why := fmt.Sprintf("its type is %s, not boolean", typ.Display)
			if err != nil {
				why = err.Error()
			}
			tableErr("SLUICE-CONFIG-WHERE", "where: %q is not a condition the source can evaluate over the table's rows: %s", t.Filter, why).
				WithHint("write where as a PostgreSQL condition over the columns of %s, e.g. where: \"deleted_at IS NULL\"", st.Name)
		}
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s: only rows WHERE %s are copied", st.Name, t.Filter))
	}
	// MariaDB's column names are case-insensitive: a rename onto a name
	// another source column keeps fails the CREATE TABLE late, as a DDL error.
	byTarget := map[string]string{}
	for _, c := range t.Columns {
		from := c.Source
		if from == "" {
			from = "the computed column " + c.Target
		}
		if prev, ok := byTarget[strings.ToLower(c.Target)]; ok && (c.Target != c.Source || !strings.EqualFold(prev, c.Target)) {
			// (two source columns differing only in case: the probe of the
			// target's tables reports the table)
			tableErr("SLUICE-CONFIG-COLUMN", "target column %s would hold both %s and %s", c.Target, prev, from).
				WithHint("rename one of them under tables: {%s: {columns: {…: {rename: …}}}}, or drop one", st.Name)
			continue
		}
		byTarget[strings.ToLower(c.Target)] = from
	}
	for _, c := range t.Columns {
		if utf8.RuneCountInString(c.Target) > maxIdentifier {
			tableErr("SLUICE-PLAN-LONGNAME", "target column name %q is longer than MySQL's %d characters", c.Target, maxIdentifier).
				WithHint("rename it under tables: {%s: {columns: {%s: {rename: …}}}}", st.Name, c.Source)
		}
	}
	for _, k := range rowKey {
		for i := range t.Columns {
			if t.Columns[i].Source == k {
				t.Key = append(t.Key, i)
				setKeyExprs(&t.Columns[i], flavor)
			}
		}
	}
	if err := fitRow(t, inKey, tm); err != nil {
		tableErr("SLUICE-PLAN-ROWSIZE", "%s", err).
			WithHint("map wide columns to LONGTEXT with tables: {%s: {columns: {…: {type: LONGTEXT}}}}, or leave some out with drop: true", st.Name)
	}
	if len(errs) > 0 {
		return t, errs
	}
	t.CreateTable = createTable(t, rowKey, targetCol, flavor)
	t.PostData = secondaryIndexes(t, targetCol)
	return t, nil
}

func isInteger(typ string) bool { return typ == "int2" || typ == "int4" || typ == "int8" }

// setKeyExprs makes both engines order and compare key values the same way:
// text by code point (PostgreSQL's "C" collation matches MySQL's binary
// collations), and MariaDB's UUID type as text because it sorts time-based
// UUIDs by their timestamp.
func setKeyExprs(c *Column, flavor typemap.Flavor) {
	src := postgres.Ident(c.Source)
	tgt := typemap.QuoteIdent(c.Target)
	switch c.SourceType.Name {
	case "text", "varchar", "bpchar", "name", "citext":
		src += ` COLLATE "C"`
	case "uuid":
		if flavor == typemap.MariaDB {
			tgt = "CONVERT(" + tgt + " USING ascii) COLLATE ascii_bin"
		}
	}
	c.KeyExprSource, c.KeyExprTarget = src, tgt
}

// KeyOrderAgrees reports whether t's key sorts the same way on both sides
// (after setKeyExprs), so that a key range selects the same rows from each.
// Not so for types the target keeps as text (inet, interval, …) or compares
// as text (an enum against a string), nor for citext, which PostgreSQL
// compares ignoring case even under COLLATE "C". Nor for a CHAR key: its
// index on MariaDB sorts values padded with spaces while a range condition
// compares them unpadded, so 'a' sorts after 'a\t' in the index and a range
// scan skips it. Nor for text in a source database whose encoding is not
// UTF8 (COLLATE "C" orders its bytes, not code points), nor for "char". Nor for a key column whose target type the mapping set
// (an int key kept as VARCHAR sorts '10' before '9'; a case-insensitive
// collation makes 'a' and 'A' one).
func (t *Table) KeyOrderAgrees() bool {
	for _, k := range t.Key {
		typ := t.Columns[k].SourceType
		if len(typ.EnumLabels) > 0 || t.Columns[k].Kind == canonical.PaddedChar || t.Columns[k].UserType {
			return false
		}
		switch typ.Name {
		case "citext", "inet", "cidr", "interval", "timetz", "macaddr", "macaddr8", "bit", "varbit", "money",
			"char": // "char" prints bytes past 127 as \ooo, whose text sorts elsewhere
			return false
		case "text", "varchar", "name":
			if t.byteOrderNotCodePoints {
				return false
			}
		}
	}
	return true
}

func planComputed(ctx context.Context, src *postgres.Source, st *schema.Table, cc config.ComputedColumn, flavor typemap.Flavor) (Column, error) {
	typ, err := src.DescribeExpr(ctx, st.Name, cc.Expr)
	if err != nil {
		return Column{}, failure.Wrap(err, failure.Schema, "SLUICE-CONFIG-EXPR",
			"table %s: computed column %s: the source cannot evaluate %q", st.Name, cc.Name, cc.Expr).
			With("table", st.Name.String()).With("column", cc.Name).
			WithHint("write expr as a PostgreSQL expression over the columns of %s", st.Name)
	}
	m := typemap.Map(typ, typemap.Options{Flavor: flavor})
	c := Column{Target: cc.Name, SQLType: m.SQLType, Kind: m.Kind, Convert: m.Convert, SourceType: typ, LoadExpr: m.LoadExpr,
		SourceExpr: "(" + cc.Expr + ")", TargetExpr: typemap.QuoteIdent(cc.Name)}
	if m.SourceExpr != nil {
		c.SourceExpr = m.SourceExpr(c.SourceExpr)
	}
	if m.TargetExpr != nil {
		c.TargetExpr = m.TargetExpr(c.TargetExpr)
	}
	if cc.Type != "" {
		c.setUserType(cc.Type)
	}
	return c, nil
}

// Definition is the column as CREATE TABLE defines it: name, type, NULL or
// NOT NULL and default.
func (c Column) Definition() string {
	def := typemap.QuoteIdent(c.Target) + " " + c.SQLType
	if c.NotNull {
		def += " NOT NULL"
	} else if !strings.Contains(c.SQLType, "AUTO_INCREMENT") {
		def += " NULL"
	}
	if c.Default != "" {
		def += " DEFAULT " + c.Default
	}
	return def
}

func createTable(t *Table, rowKey []string, targetCol map[string]string, flavor typemap.Flavor) string {
	var lines []string
	for _, c := range t.Columns {
		lines = append(lines, "  "+c.Definition())
	}
	keyCols := quoteTargets(rowKey, targetCol)
	switch {
	case len(rowKey) == 0: // keyless: matched on all columns
	case len(t.Source.PrimaryKey) > 0:
		lines = append(lines, fmt.Sprintf("  PRIMARY KEY (%s)", keyCols))
	default:
		lines = append(lines, fmt.Sprintf("  UNIQUE KEY %s (%s)", typemap.QuoteIdent(truncate("sluice_rowkey_"+t.Target)), keyCols))
	}
	return fmt.Sprintf("CREATE TABLE %s (\n%s\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=%s",
		typemap.QuoteIdent(t.Target), strings.Join(lines, ",\n"), typemap.TextCollation(flavor))
}

func secondaryIndexes(t *Table, targetCol map[string]string) []Statement {
	var adds []string
	first := ""
	rowKey := t.Source.RowKey()
	for _, ix := range t.Source.Indexes {
		if ix.Unsupported != "" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: index %s is not created because %s; create an equivalent on the target if queries need it", t.Source.Name, ix.Name, ix.Unsupported))
			continue
		}
		if len(t.Source.PrimaryKey) == 0 && sameColumns(ix.Columns, rowKey) {
			continue // already the table's row key
		}
		var cols []string
		var sizes []typemap.Size
		skip := ""
		for _, c := range ix.Columns {
			tc, ok := targetCol[c]
			if !ok {
				skip = "the mapping drops one of its columns"
				break
			}
			size := typemap.SizeOf(findTarget(t, tc).SQLType)
			if size.Blob && ix.Unique && !ix.Deferrable { // a deferrable one becomes a plain index, which a prefix serves
				skip = "it covers a column MySQL cannot index whole (" + tc + ")"
				break
			}
			cols, sizes = append(cols, tc), append(sizes, size)
		}
		switch {
		case skip != "":
		case ix.Unique && !ix.Deferrable: // whole columns, narrowed to fit when mapped (keyBudget)
			for i, c := range cols {
				cols[i] = typemap.QuoteIdent(c)
			}
		default:
			var prefixes []string
			if cols, prefixes = prefixColumns(cols, sizes); cols == nil {
				skip = "its columns take more than InnoDB's 3072 bytes per index even with prefixes"
			}
			for _, p := range prefixes {
				t.Warnings = append(t.Warnings, fmt.Sprintf("%s: index %s indexes %s", t.Source.Name, ix.Name, p))
			}
		}
		if skip != "" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: index %s is not created because %s", t.Source.Name, ix.Name, skip))
			continue
		}
		kind := "INDEX"
		switch {
		case ix.Unique && ix.Deferrable:
			// MySQL checks uniqueness row by row: a transaction that swaps
			// or shifts values (why a constraint is made DEFERRABLE) would be
			// refused when replayed, so the target gets a plain index
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: unique constraint %s is DEFERRABLE (checked at commit), which MySQL cannot do; the target gets a plain index during the migration: add UNIQUE on (%s) after the cutover, once the application no longer relies on deferred checks", t.Source.Name, ix.Name, strings.Join(cols, ", ")))
		case ix.Unique:
			kind = "UNIQUE INDEX"
		}
		if first == "" {
			first = truncate(ix.Name)
		}
		adds = append(adds, fmt.Sprintf("ADD %s %s (%s)", kind, typemap.QuoteIdent(truncate(ix.Name)), strings.Join(cols, ", ")))
	}
	if len(adds) == 0 {
		return nil
	}
	// One ALTER builds all indexes in a single pass over the table.
	return []Statement{{Name: first, SQL: fmt.Sprintf("ALTER TABLE %s %s", typemap.QuoteIdent(t.Target), strings.Join(adds, ", "))}}
}

// prefixColumns quotes the columns of a plain index, with the prefix MySQL
// needs: a TEXT or BLOB is indexed by its first 255 characters, and when the
// columns would pass InnoDB's 3072 bytes the VARCHAR, VARBINARY, TEXT and
// BLOB ones share what the others leave. prefixes says which columns took
// one ("the first 255 characters of body"); cols is nil when even one
// character each does not fit.
func prefixColumns(names []string, sizes []typemap.Size) (cols, prefixes []string) {
	fixed, total := 0, 0
	var varying, want []int
	for i, s := range sizes {
		n := s.Key
		if s.Blob {
			n = 255 * s.CharBytes
		}
		total += n
		if s.Varying {
			varying, want = append(varying, i), append(want, n)
		} else {
			fixed += n
		}
	}
	chars := make([]int, len(names)) // 0: the whole column
	for _, i := range varying {
		if sizes[i].Blob {
			chars[i] = 255
		}
	}
	if total > typemap.MaxKeyBytes {
		if typemap.MaxKeyBytes-fixed < 4*len(varying) {
			return nil, nil
		}
		for k, n := range share(typemap.MaxKeyBytes-fixed, want) {
			if i := varying[k]; n < want[k] {
				chars[i] = n / sizes[i].CharBytes
			}
		}
	}
	for i, name := range names {
		q := typemap.QuoteIdent(name)
		if chars[i] > 0 {
			q += fmt.Sprintf("(%d)", chars[i])
			prefixes = append(prefixes, fmt.Sprintf("the first %d characters of %s", chars[i], name))
		}
		cols = append(cols, q)
	}
	return cols, prefixes
}

func planForeignKeys(p *Plan, t *Table) {
	for _, fk := range t.Source.ForeignKeys {
		ref := p.find(fk.RefTable)
		if ref == nil {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: foreign key %s is not created: it references %s, which is not migrated", t.Source.Name, fk.Name, fk.RefTable))
			continue
		}
		cols, ok1 := targetNames(t, fk.Columns)
		refCols, ok2 := targetNames(ref, fk.RefColumns)
		if !ok1 || !ok2 {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: foreign key %s is not created: the mapping drops one of its columns", t.Source.Name, fk.Name))
			continue
		}
		if fk.OnDelete == "SET DEFAULT" || fk.OnUpdate == "SET DEFAULT" {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: foreign key %s uses SET DEFAULT, which InnoDB does not support; created with NO ACTION", t.Source.Name, fk.Name))
		}
		name := foreignKeyName(p, t, fk.Name)
		if name != fk.Name {
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: foreign key %s is created as %s: MySQL needs a constraint name unique in the database, and apart from the table's index names", t.Source.Name, fk.Name, name))
		}
		t.ForeignKeys = append(t.ForeignKeys, Statement{Name: name, SQL: fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s ON UPDATE %s",
			typemap.QuoteIdent(t.Target), typemap.QuoteIdent(name), cols, typemap.QuoteIdent(ref.Target), refCols,
			innodbAction(fk.OnDelete), innodbAction(fk.OnUpdate))})
	}
}

// foreignKeyName is the target name of t's foreign key named name: its
// own (cut to the limit) unless another foreign key of the plan has it
// (PostgreSQL names them per table, MySQL per database) or one of t's
// indexes does (sluice would take the index for the key and skip it);
// then the table's name goes in front, and a number after if need be.
func foreignKeyName(p *Plan, t *Table, name string) string {
	taken := func(n string) bool {
		for _, o := range p.Tables {
			for _, fk := range o.ForeignKeys {
				if strings.EqualFold(fk.Name, n) {
					return true
				}
			}
		}
		for _, ix := range t.Source.Indexes {
			if strings.EqualFold(truncate(ix.Name), n) {
				return true
			}
		}
		return false
	}
	if n := truncate(name); !taken(n) {
		return n
	}
	base := []rune(t.Target + "_" + name)
	n := truncate(string(base))
	for i := 2; taken(n); i++ {
		suffix := fmt.Sprintf("_%d", i)
		n = string(base[:min(len(base), maxIdentifier-len(suffix))]) + suffix
	}
	return n
}

func innodbAction(a string) string {
	if a == "SET DEFAULT" || a == "" {
		return "NO ACTION"
	}
	return a
}

func (p *Plan) find(name schema.TableName) *Table {
	for _, t := range p.Tables {
		if t.Source.Name == name {
			return t
		}
	}
	return nil
}

func targetNames(t *Table, sourceCols []string) (string, bool) {
	var out []string
	for _, sc := range sourceCols {
		found := false
		for _, c := range t.Columns {
			if c.Source == sc {
				out = append(out, typemap.QuoteIdent(c.Target))
				found = true
			}
		}
		if !found {
			return "", false
		}
	}
	return strings.Join(out, ", "), true
}

func findTarget(t *Table, target string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Target == target {
			return &t.Columns[i]
		}
	}
	return nil
}

func quoteTargets(cols []string, targetCol map[string]string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = typemap.QuoteIdent(targetCol[c])
	}
	return strings.Join(q, ", ")
}

// Replace is LoadData's REPLACE mode for t's target table: it refuses a
// unique index the source does not enforce.
func (t *Table) Replace() *mysql.Replace {
	return &mysql.Replace{Source: t.Source.Name.String(), Enforced: t.EnforcedUnique}
}

// EnforcedUnique reports whether the source keeps the target columns cols
// unique: they include the row key or a unique index of the source (every
// column of it migrated).
func (t *Table) EnforcedUnique(cols []string) bool {
	have := map[string]bool{}
	for _, c := range cols {
		have[c] = true
	}
	targetOf := map[string]string{}
	for _, c := range t.Columns {
		if c.Source != "" {
			targetOf[c.Source] = c.Target
		}
	}
	covers := func(source []string) bool {
		for _, c := range source {
			if tc, ok := targetOf[c]; !ok || !have[tc] {
				return false
			}
		}
		return len(source) > 0
	}
	if len(t.Key) > 0 {
		key := make([]string, len(t.Key))
		for i, k := range t.Key {
			key[i] = t.Columns[k].Source
		}
		if covers(key) {
			return true
		}
	}
	for _, ix := range t.Source.Indexes {
		// a DEFERRABLE constraint is checked at commit, so rows (and a replay
		// on an index MySQL checks row by row) may hold its values twice
		if ix.Unique && !ix.Deferrable && ix.Unsupported == "" && covers(ix.Columns) {
			return true
		}
	}
	return false
}

func sameColumns(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// truncate cuts name to MySQL's limit, which counts characters: a cut by
// bytes could end inside one (error 1300) or cut a name that fits.
func truncate(name string) string {
	if utf8.RuneCountInString(name) <= maxIdentifier {
		return name
	}
	return string([]rune(name)[:maxIdentifier])
}

// setUserType gives the column the target type the user set: the target
// converts the source's text (sluice refuses any conversion warning it
// reports), and verify compares as userTypeKind says. The text keeps the
// form the target reads as the same value (bytea as bytes, typemap.TextForm);
// the range checks of the type sluice chose go. narrows reports a type that
// holds less than the source's.
func (c *Column) setUserType(sqlType string) (narrows bool) {
	c.SQLType, c.UserType = sqlType, true
	c.Kind, narrows = userTypeKind(c.SourceType, c.Kind, sqlType)
	c.Convert, c.LoadExpr, c.BulkSafe = typemap.TextForm(c.SourceType), "", false
	switch target := KindOfSQLType(sqlType, c.Kind); {
	case target == canonical.Float32:
		// MariaDB prints a FLOAT to 6 digits; read as DOUBLE, its value shows whole
		c.TargetExpr = "CAST(" + typemap.QuoteIdent(c.Target) + " AS DOUBLE)"
	case c.Kind == canonical.Timestamp && (target == canonical.Date || target == canonical.Time):
		// compared as the source's timestamp: read the DATE or TIME as one,
		// so a dropped time of day or date shows as a change, not an error
		c.TargetExpr = "CAST(" + typemap.QuoteIdent(c.Target) + " AS DATETIME(6))"
	}
	return narrows
}

// userTypeKind is how verify compares a column of source type src whose
// target type the user set, given how it compares the source type. Where
// the target type holds less than the source's (bigint or numeric in a
// DOUBLE, double in a FLOAT or DECIMAL, text in a CHAR that drops trailing
// spaces, fewer digits after the point or of a second, a timestamp in a
// DATE or TIME) MariaDB converts with a note or without any warning, and
// comparing at the target's precision would call the changed copy equal:
// the source's kind is kept, and narrows says so.
func userTypeKind(src schema.Type, source canonical.Kind, sqlType string) (kind canonical.Kind, narrows bool) {
	target := KindOfSQLType(sqlType, source)
	isFloat := func(k canonical.Kind) bool { return k == canonical.Float32 || k == canonical.Float64 }
	upper := strings.ToUpper(strings.TrimSpace(sqlType))
	switch {
	case strings.HasPrefix(upper, "YEAR") || strings.HasPrefix(upper, "SET("), strings.HasPrefix(upper, "SET ("):
		// YEAR takes 50 as 2050 and SET sorts 'b,a' into 'a,b', both silently
		return source, true
	case isFloat(target) && (source == canonical.Integer || source == canonical.Decimal):
		return canonical.Number, true
	case target == canonical.Float32 && source == canonical.Float64,
		target == canonical.PaddedChar && source == canonical.Exact,
		target == canonical.Integer && (source == canonical.Decimal || isFloat(source)),
		target == canonical.Decimal && isFloat(source),
		target == canonical.Decimal && (source == canonical.Integer || source == canonical.Decimal) && fewerDecimalDigits(src, sqlType),
		(target == canonical.Timestamp || target == canonical.Time) && (source == canonical.Timestamp || source == canonical.Time) &&
			typeArg(sqlType, 0, 0) < secondDigits(src),
		(target == canonical.Date || target == canonical.Time) && source == canonical.Timestamp:
		return source, true
	}
	return target, false
}

// unbounded stands for the digits of a numeric without precision.
const unbounded = 1 << 30

// fewerDecimalDigits reports whether a DECIMAL(p,s) target type holds fewer
// digits before or after the point than the integer, numeric or money
// source type src.
func fewerDecimalDigits(src schema.Type, sqlType string) bool {
	before, after := unbounded, unbounded
	switch src.Name {
	case "int2":
		before, after = 5, 0
	case "int4":
		before, after = 10, 0
	case "int8":
		before, after = 19, 0
	case "money":
		before, after = 17, 2
	case "numeric":
		if src.Precision > 0 {
			before, after = src.Precision-max(src.Scale, 0), max(src.Scale, 0)
		}
	}
	p, s := typeArg(sqlType, 0, 10), typeArg(sqlType, 1, 0) // MySQL's DECIMAL is DECIMAL(10,0)
	return s < after || p-s < before
}

// secondDigits is how many digits of a second the time or timestamp type
// src keeps.
func secondDigits(src schema.Type) int {
	if src.Precision >= 0 && src.Precision < 6 {
		return src.Precision
	}
	return 6
}

// typeArg returns the i-th number in the parentheses of sqlType
// (DECIMAL(12,2): 12, then 2), or def when it has none.
func typeArg(sqlType string, i, def int) int {
	_, rest, ok := strings.Cut(sqlType, "(")
	if !ok {
		return def
	}
	args, _, _ := strings.Cut(rest, ")")
	parts := strings.Split(args, ",")
	if i >= len(parts) {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
	if err != nil {
		return def
	}
	return n
}

// KindOfSQLType guesses how verify compares a column whose target type the
// user set; fallback is used when the type says nothing more specific.
func KindOfSQLType(sqlType string, fallback canonical.Kind) canonical.Kind {
	u := strings.ToUpper(strings.TrimSpace(sqlType))
	if p, ok := strings.CutPrefix(u, "FLOAT("); ok { // FLOAT(p) with p > 24 is a DOUBLE; FLOAT(M,D) a FLOAT
		if digits, _, _ := strings.Cut(p, ")"); !strings.Contains(digits, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(digits)); err == nil && n > 24 {
				return canonical.Float64
			}
		}
	}
	prefixes := []struct {
		p string
		k canonical.Kind
	}{
		{"TINYINT(1)", canonical.Bool}, {"BOOL", canonical.Bool},
		{"TINYINT", canonical.Integer}, {"SMALLINT", canonical.Integer}, {"MEDIUMINT", canonical.Integer},
		{"INT", canonical.Integer}, {"BIGINT", canonical.Integer},
		{"DECIMAL", canonical.Decimal}, {"NUMERIC", canonical.Decimal},
		{"FLOAT", canonical.Float32}, {"DOUBLE", canonical.Float64}, {"REAL", canonical.Float64},
		{"DATETIME", canonical.Timestamp}, {"TIMESTAMP", canonical.Timestamp}, {"DATE", canonical.Date}, {"TIME", canonical.Time},
		{"CHAR", canonical.PaddedChar}, {"VARCHAR", canonical.Exact}, {"TEXT", canonical.Exact}, {"LONGTEXT", canonical.Exact},
		{"JSON", canonical.JSON}, {"BLOB", canonical.Bytes}, {"LONGBLOB", canonical.Bytes}, {"VARBINARY", canonical.Bytes},
	}
	sort.SliceStable(prefixes, func(i, j int) bool { return len(prefixes[i].p) > len(prefixes[j].p) })
	for _, p := range prefixes {
		if strings.HasPrefix(u, p.p) {
			return p.k
		}
	}
	return fallback
}

// wideIndex is a key whose fixed-width columns alone pass InnoDB's limit.
type wideIndex struct {
	what  string // "the primary key (a, b)", "unique index x (a, b)"
	bytes int
}

// keyBudget shares InnoDB's 3072 bytes per index among the columns of the
// row key and of each unique index whose mapping can narrow in a key (text,
// bytea: typemap.Mapping.FitsKeyBytes): what the other columns take is
// subtracted, and the rest goes to these, each keeping its whole width when
// that is less than an even share. It returns the bytes each such column
// may take (the least over its indexes) where that is less than its width,
// and the keys that do not fit even so.
func keyBudget(st *schema.Table, rowKey []string, flavor typemap.Flavor) (map[string]int, []wideIndex) {
	type index struct {
		what string
		cols []string
	}
	what := "the primary key"
	if len(st.PrimaryKey) == 0 {
		what = "the row key"
	}
	indexes := []index{{what, rowKey}}
	for _, ix := range st.Indexes {
		if ix.Unique && ix.Unsupported == "" && (len(st.PrimaryKey) > 0 || !sameColumns(ix.Columns, rowKey)) {
			indexes = append(indexes, index{"unique index " + ix.Name, ix.Columns})
		}
	}
	out := map[string]int{}
	var tooWide []wideIndex
	for _, ix := range indexes {
		fixed := 0
		var narrow []string
		var want []int
		for _, name := range ix.cols {
			col := st.Column(name)
			if col == nil {
				continue
			}
			m := typemap.Map(col.Type, typemap.Options{Flavor: flavor, InKey: true})
			if n := typemap.SizeOf(m.SQLType).Key; m.FitsKeyBytes {
				narrow, want = append(narrow, name), append(want, n)
			} else {
				fixed += n
			}
		}
		// a narrowed column keeps at least one utf8mb4 character
		if typemap.MaxKeyBytes-fixed < 4*len(narrow) {
			tooWide = append(tooWide, wideIndex{fmt.Sprintf("%s (%s)", ix.what, strings.Join(ix.cols, ", ")), fixed + 4*len(narrow)})
			continue
		}
		for i, n := range share(typemap.MaxKeyBytes-fixed, want) {
			if cur, ok := out[narrow[i]]; n < want[i] && (!ok || n < cur) {
				out[narrow[i]] = n
			}
		}
	}
	return out, tooWide
}

// share splits budget among columns that want want[i] each: a column that
// wants no more than an even share of what is left gets what it wants,
// the others split the rest evenly.
func share(budget int, want []int) []int {
	order := make([]int, len(want))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return want[order[a]] < want[order[b]] })
	got := make([]int, len(want))
	for k, i := range order {
		got[i] = min(want[i], budget/(len(order)-k))
		budget -= got[i]
	}
	return got
}

// fitRow keeps t within MySQL's 65,535 bytes per row: while its columns
// pass it, the widest VARCHAR that is in no key and has no type set by the
// mapping becomes LONGTEXT (same character set and collation, so the same
// values; the row then holds a 12-byte pointer). It returns an error when
// no such column is left.
func fitRow(t *Table, inKey map[string]bool, tm config.TableMapping) error {
	row := 0
	nullable := 0
	var wide []int
	for i, c := range t.Columns {
		row += typemap.SizeOf(c.SQLType).Row
		if !c.NotNull {
			nullable++
		}
		_, varchar := typemap.LongText(c.SQLType)
		if varchar && !inKey[c.Source] && (c.Source == "" || tm.Columns[c.Source].Type == "") {
			wide = append(wide, i)
		}
	}
	row += (nullable + 7) / 8
	sort.SliceStable(wide, func(a, b int) bool {
		return typemap.SizeOf(t.Columns[wide[a]].SQLType).Row > typemap.SizeOf(t.Columns[wide[b]].SQLType).Row
	})
	for _, i := range wide {
		if row <= typemap.MaxRowBytes {
			break
		}
		c := &t.Columns[i]
		long, _ := typemap.LongText(c.SQLType)
		row += typemap.SizeOf(long).Row - typemap.SizeOf(c.SQLType).Row
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s.%s: %s becomes %s: the table's columns would pass MySQL's %d bytes per row; it holds the same values (an index on it covers a prefix)",
			t.Source.Name, c.Target, strings.Fields(c.SQLType)[0], strings.Fields(long)[0], typemap.MaxRowBytes))
		c.SQLType = long
	}
	if row > typemap.MaxRowBytes {
		return fmt.Errorf("its target columns take up to %d bytes per row; MySQL allows %d (a TEXT or BLOB counts 12)", row, typemap.MaxRowBytes)
	}
	return nil
}
