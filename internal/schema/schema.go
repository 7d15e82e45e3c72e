// Package schema is the engine-neutral description of a source table that the
// planner, copier and verifier share. Engine packages fill it in; nothing here
// talks to a database.
package schema

import "strings"

// TableName is a schema-qualified table name on the source.
type TableName struct {
	Schema string
	Name   string
}

func (t TableName) String() string {
	if t.Schema == "" || t.Schema == "public" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// ParseTableName splits "schema.table" (or "table", in defaultSchema).
func ParseTableName(s, defaultSchema string) TableName {
	if i := strings.IndexByte(s, '.'); i > 0 {
		return TableName{Schema: s[:i], Name: s[i+1:]}
	}
	return TableName{Schema: defaultSchema, Name: s}
}

// Type describes a source column type after domains are resolved to their base.
type Type struct {
	Name       string   // base type name as the catalog spells it: int4, varchar, timestamptz, _int4 …
	Display    string   // how the source shows it: "numeric(10,2)", "character varying(160)"
	Array      bool     // a one- or multi-dimensional array of Elem
	Elem       string   // element type name of an array (a domain element: its base type)
	Length     int      // varchar(n)/char(n)/bit(n) length, or -1
	Precision  int      // numeric precision, or -1 when unbounded
	Scale      int      // numeric scale, or -1
	EnumLabels []string // labels in order, for enums
	Domain     string   // the domain the column was declared with, if any
	OID        uint32
	Namespace  string // the schema of the type (pg_catalog for built-in ones)

	// ElemUnsupported says why an array's elements cannot travel as the
	// same JSON by the copy (to_json) and by the change stream (the array's
	// text): a composite element type, or one with its own cast to json.
	// Empty when they can.
	ElemUnsupported string
}

// Column is one source column.
type Column struct {
	Name    string
	Type    Type
	TypeMod int32 // atttypmod as the catalog holds it (-1: none), to tell a changed length or precision
	// Num is the column's attnum: a column dropped and added again under
	// the same name and type gets a new one (and its rows lose their values).
	Num      int16
	NotNull  bool
	Default  string // the source's default expression, as SQL text, or ""
	Identity bool   // serial, bigserial or GENERATED … AS IDENTITY

	// Generated is the expression of a stored generated column (GENERATED
	// ALWAYS AS (…) STORED), which the source computes; "" for other columns.
	Generated string
}

// Index is a primary key, unique constraint/index or plain index.
type Index struct {
	Name    string
	Columns []string
	Unique  bool
	Primary bool
	// Deferrable: a unique constraint checked at commit (DEFERRABLE), not
	// row by row as MySQL does.
	Deferrable bool
	// ReplicaIdentity: the index REPLICA IDENTITY USING INDEX names.
	ReplicaIdentity bool
	// Unsupported says why the index cannot be recreated (expression or
	// partial index, non-btree method); empty when it can.
	Unsupported string
}

// ForeignKey is a foreign key constraint of the table.
type ForeignKey struct {
	Name       string
	Columns    []string
	RefTable   TableName
	RefColumns []string
	OnDelete   string // NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT
	OnUpdate   string
}

// Table is one source table.
type Table struct {
	Name       TableName
	OID        uint32 // the source's pg_class OID: the change stream names tables by it
	Columns    []Column
	PrimaryKey []string // empty when the table has none
	// PrimaryKeyDeferrable: the primary key is checked at commit (DEFERRABLE)
	PrimaryKeyDeferrable bool
	Indexes              []Index // secondary indexes and unique constraints (not the primary key)
	ForeignKeys          []ForeignKey
	ReplicaIdentity      string // default, full, nothing, index
	EstimatedRows        int64
	Partitioned          bool // declaratively partitioned: its rows live in its partitions
	// Partitions are the OIDs of its partitions, at every level, when the
	// table was read: one detached or dropped takes rows away without a
	// change in the stream.
	Partitions []uint32
	// UnloggedPartitions name those that write no WAL: their changes reach
	// no change stream.
	UnloggedPartitions []string
	// ForeignPartitions name those that are foreign tables: their rows
	// live on another server, whose changes reach no change stream here.
	ForeignPartitions []string
	// InheritedBy names the tables that inherit from it (INHERITS, not
	// partitions): a read of it holds their rows too, but their changes
	// come through the stream under their own names.
	InheritedBy []string
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// RowKey returns the columns that identify a row: the primary key, else the
// first unique index whose columns are all NOT NULL. Nil when there is none.
func (t *Table) RowKey() []string {
	if len(t.PrimaryKey) > 0 {
		return t.PrimaryKey
	}
	if ix := t.rowKeyIndex(); ix != nil {
		return ix.Columns
	}
	return nil
}

// RowKeyDeferrable reports whether the constraint behind RowKey is checked
// at commit (DEFERRABLE): within a transaction two rows may then hold one
// key value for a while.
func (t *Table) RowKeyDeferrable() bool {
	if len(t.PrimaryKey) > 0 {
		return t.PrimaryKeyDeferrable
	}
	ix := t.rowKeyIndex()
	return ix != nil && ix.Deferrable
}

// rowKeyIndex is the unique index RowKey uses when there is no primary key:
// the first whose columns are all NOT NULL.
func (t *Table) rowKeyIndex() *Index {
	for i, ix := range t.Indexes {
		if !ix.Unique || ix.Unsupported != "" {
			continue
		}
		allNotNull := true
		for _, c := range ix.Columns {
			if col := t.Column(c); col == nil || !col.NotNull {
				allNotNull = false
			}
		}
		if allNotNull {
			return &t.Indexes[i]
		}
	}
	return nil
}
