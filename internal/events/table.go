package events

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/typemap"
)

// Table is a planned table as the event and partition paths use it: where
// each target column comes from among the source columns, and the SQL that
// writes it.
type Table struct {
	Plan      *plan.Table
	Name      string // source "schema.name"
	CastTypes []string

	srcIdx     map[string]int // source column → index in Plan.Source.Columns
	colSrc     []int          // plan column → source column index, -1 when computed
	keySrc     []int          // key position → source column index
	dropped    []bool         // by source column: left out by the mapping
	evalReads  []bool         // by source column: dropped, but the row filter or a computed column names it
	fast       []bool         // by source column: an event's canonical text needs no source
	sourceEval bool           // computed columns or a row filter: rows are evaluated on the source

	quoted     string
	cols       []string
	keyCols    []string
	upsertTail string
	bytesCol   []bool
}

// NewTable prepares t; castTypes comes from plan.CastTypes.
func NewTable(t *plan.Table, castTypes []string) *Table {
	rt := &Table{Plan: t, Name: t.Source.Name.Schema + "." + t.Source.Name.Name, CastTypes: castTypes,
		srcIdx: map[string]int{}, sourceEval: t.NeedsSourceEval(), quoted: typemap.QuoteIdent(t.Target)}
	for i, c := range t.Source.Columns {
		rt.srcIdx[c.Name] = i
	}
	rt.dropped = make([]bool, len(t.Source.Columns))
	for i := range rt.dropped {
		rt.dropped[i] = true
	}
	rt.fast = make([]bool, len(t.Source.Columns))
	for _, c := range t.Columns {
		si := -1
		if c.Source != "" {
			si = rt.srcIdx[c.Source]
			rt.dropped[si] = false
			rt.fast[si] = c.SourceExpr == postgres.Ident(c.Source) && c.StreamConvert == nil && fastType(c)
		}
		rt.colSrc = append(rt.colSrc, si)
	}
	rt.evalReads = make([]bool, len(t.Source.Columns))
	exprs := []string{t.Filter}
	for _, c := range t.Columns {
		if c.Source == "" {
			exprs = append(exprs, c.SourceExpr)
		}
	}
	for si, c := range t.Source.Columns {
		rt.evalReads[si] = rt.dropped[si] && mentions(exprs, c.Name)
	}
	for _, k := range t.Key {
		rt.keySrc = append(rt.keySrc, rt.colSrc[k])
	}
	for _, k := range t.Key {
		rt.keyCols = append(rt.keyCols, typemap.QuoteIdent(t.Columns[k].Target))
	}
	for _, c := range t.Columns {
		rt.cols = append(rt.cols, typemap.QuoteIdent(c.Target))
		rt.bytesCol = append(rt.bytesCol, strings.Contains(c.SQLType, "BLOB") || strings.Contains(c.SQLType, "BINARY"))
	}
	rt.upsertTail = apply.UpsertTail(t)
	return rt
}

// fastType: types whose canonical JSON conversion is exactly the source's
// text and whose copy reads the plain column.
func fastType(c plan.Column) bool {
	if len(c.SourceType.EnumLabels) > 0 {
		return true
	}
	switch c.SourceType.Name {
	case "int2", "int4", "int8", "oid", "bool", "text", "varchar", "citext", "uuid":
		return !c.SourceType.Array
	}
	return false
}

// LoadTables plans the runtime tables of p, reading the source's column
// types for the tables that need source evaluation.
func LoadTables(ctx context.Context, src *postgres.Source, p *plan.Plan) ([]*Table, error) {
	var out []*Table
	for _, t := range p.Tables {
		types, err := plan.CastTypes(ctx, src, t)
		if err != nil {
			return nil, err
		}
		out = append(out, NewTable(t, types))
	}
	return out, nil
}

// SourceColumns is the number of source columns.
func (t *Table) SourceColumns() int { return len(t.Plan.Source.Columns) }

// SourceIndex returns the index of a source column, or -1.
func (t *Table) SourceIndex(name string) int {
	if i, ok := t.srcIdx[name]; ok {
		return i
	}
	return -1
}

// KeySourceIndexes lists the source column index of each key column.
func (t *Table) KeySourceIndexes() []int { return t.keySrc }

// KeyHash identifies a row of t's target table in the version table, by
// its key (source text, in t.Key order) in the form the target compares
// (canonical.KeyForm): an event that spells a numeric key 1 and a row the
// copy read as 1.0 are one row, with one version.
func KeyHash(t *plan.Table, key []string) [16]byte {
	h := sha256.New()
	h.Write([]byte(t.Target))
	for i, k := range key {
		h.Write([]byte{0})
		if i < len(t.Key) {
			h.Write(canonical.KeyForm(t.Columns[t.Key[i]].Kind, []byte(k)))
		} else {
			h.Write([]byte(k))
		}
	}
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (t *Table) arg(i int, data []byte) any {
	if data == nil {
		return nil
	}
	if t.bytesCol[i] {
		return data
	}
	return string(data)
}

func (t *Table) upsertSQL(n int) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s%s", t.quoted, strings.Join(t.cols, ", "),
		strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", "), t.upsertTail)
}

func (t *Table) deleteSQL(n int) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", t.quoted, t.Plan.KeyIn(n))
}

// mentions reports whether any of exprs names column: as a word, in any
// letter case (a quoted name too). A word that only looks like it (a
// string, a function) counts as well: the event then has to carry a
// column it could leave out, never the other way round.
func mentions(exprs []string, column string) bool {
	re := regexp.MustCompile(`(?i)(^|[^a-z0-9_$])` + regexp.QuoteMeta(column) + `($|[^a-z0-9_$])`)
	for _, e := range exprs {
		if e != "" && re.MatchString(e) {
			return true
		}
	}
	return false
}
