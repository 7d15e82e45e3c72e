package plan

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/schema"
	"github.com/sluice-db/sluice/internal/typemap"
)

func typ(name, display string, length int) schema.Type {
	return schema.Type{Name: name, Display: display, Length: length, Precision: -1, Scale: -1}
}

var (
	intType   = typ("int4", "integer", -1)
	textType  = typ("text", "text", -1)
	byteaType = typ("bytea", "bytea", -1)
)

func varchar(n int) schema.Type { return typ("varchar", fmt.Sprintf("character varying(%d)", n), n) }

// planOf plans a source table without a source database (no computed
// columns), as MariaDB.
func planOf(t *testing.T, st *schema.Table, tm config.TableMapping) (*Table, []error) {
	t.Helper()
	if st.Name.Name == "" {
		st.Name = schema.TableName{Schema: "public", Name: "t"}
	}
	return planTable(context.Background(), nil, st, tm, Options{Flavor: typemap.MariaDB})
}

func mustPlan(t *testing.T, st *schema.Table) *Table {
	t.Helper()
	pt, errs := planOf(t, st, config.TableMapping{})
	if len(errs) > 0 {
		t.Fatalf("plan: %v", errs)
	}
	return pt
}

func columnType(pt *Table, name string) string {
	if c := findTarget(pt, name); c != nil {
		return c.SQLType
	}
	return ""
}

func hasWarning(pt *Table, parts ...string) bool {
	for _, w := range pt.Warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

func errorCode(errs []error) string {
	for _, err := range errs {
		if fe, ok := err.(*failure.Error); ok {
			return fe.Code
		}
	}
	return ""
}

// Keys MariaDB refused (error 1071): a bytea beside other columns took
// VARBINARY(3072), and four varchar(255) (4,080 bytes) were left alone.
func TestKeyFitsInnoDB(t *testing.T) {
	pt := mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true}, {Name: "b", Type: byteaType, NotNull: true}},
		PrimaryKey: []string{"id", "b"}})
	if got := columnType(pt, "b"); got != "VARBINARY(3068)" {
		t.Errorf("bytea beside an integer in the primary key maps to %s; want VARBINARY(3068)", got)
	}

	var cols []schema.Column
	for _, n := range []string{"a", "b", "c", "d"} {
		cols = append(cols, schema.Column{Name: n, Type: varchar(255), NotNull: true})
	}
	pt = mustPlan(t, &schema.Table{Columns: cols, PrimaryKey: []string{"a", "b", "c", "d"}})
	for _, n := range []string{"a", "b", "c", "d"} {
		if got := columnType(pt, n); !strings.HasPrefix(got, "VARCHAR(192) ") {
			t.Errorf("varchar(255) %s of a four-column key maps to %s; want VARCHAR(192)", n, got)
		}
	}
	if !hasWarning(pt, "t.a", "VARCHAR(192)", "rejected as bad rows") {
		t.Errorf("no warning about the narrowed key column: %q", pt.Warnings)
	}

	// columns that fit keep their width; a short one leaves the rest to a long one
	pt = mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "lang", Type: varchar(8), NotNull: true}, {Name: "slug", Type: textType, NotNull: true}},
		PrimaryKey: []string{"lang", "slug"}})
	if a, b := columnType(pt, "lang"), columnType(pt, "slug"); !strings.HasPrefix(a, "VARCHAR(8) ") || !strings.HasPrefix(b, "VARCHAR(760) ") {
		t.Errorf("key (varchar(8), text) maps to %s, %s; want VARCHAR(8), VARCHAR(760)", a, b)
	}

	// fixed widths alone past the limit: refused with a message
	_, errs := planOf(t, &schema.Table{Columns: []schema.Column{{Name: "bits", Type: typ("bit", "bit(4000)", 4000), NotNull: true}},
		PrimaryKey: []string{"bits"}}, config.TableMapping{})
	if code := errorCode(errs); code != "SLUICE-PLAN-KEYSIZE" || !strings.Contains(errs[0].Error(), "bits") {
		t.Errorf("a bit(4000) key: %v; want SLUICE-PLAN-KEYSIZE naming it", errs)
	}
}

// Two varchar(10000) columns passed MariaDB's 65,535-byte row (error 1118).
func TestRowFitsMariaDB(t *testing.T) {
	pt := mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true},
		{Name: "a", Type: varchar(10000)}, {Name: "b", Type: varchar(9000)}}, PrimaryKey: []string{"id"}})
	if a, b := columnType(pt, "a"), columnType(pt, "b"); !strings.HasPrefix(a, "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin") || !strings.HasPrefix(b, "VARCHAR(9000) ") {
		t.Errorf("varchar(10000), varchar(9000) map to %s, %s; want the wider one LONGTEXT", a, b)
	}
	if !hasWarning(pt, "t.a", "becomes LONGTEXT", "same values") {
		t.Errorf("no warning about the LONGTEXT: %q", pt.Warnings)
	}
	// a single widest VARCHAR with one more column
	pt = mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true},
		{Name: "a", Type: varchar(16383)}, {Name: "b", Type: textType}}, PrimaryKey: []string{"id"}})
	if a := columnType(pt, "a"); !strings.HasPrefix(a, "LONGTEXT") {
		t.Errorf("varchar(16383) beside other columns maps to %s; want LONGTEXT", a)
	}
	// what does fit stays
	pt = mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true},
		{Name: "a", Type: varchar(10000)}, {Name: "b", Type: varchar(6381)}}, PrimaryKey: []string{"id"}})
	if b := columnType(pt, "b"); !strings.HasPrefix(b, "VARCHAR(6381) ") {
		t.Errorf("a row that fits changed: b is %s", b)
	}
	// nothing left to turn into LONGTEXT: refused
	var cols []schema.Column
	for i := range 70 {
		cols = append(cols, schema.Column{Name: fmt.Sprintf("c%d", i), Type: typ("bpchar", "character(255)", 255)})
	}
	cols[0].NotNull = true
	_, errs := planOf(t, &schema.Table{Columns: cols, PrimaryKey: []string{"c0"}}, config.TableMapping{})
	if code := errorCode(errs); code != "SLUICE-PLAN-ROWSIZE" {
		t.Errorf("70 character(255) columns: %v; want SLUICE-PLAN-ROWSIZE", errs)
	}
}

// A plain index over long VARCHARs passed InnoDB's 3072 bytes (error 1071):
// its columns get prefixes.
func TestPlainIndexPrefixes(t *testing.T) {
	st := &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true},
		{Name: "a", Type: varchar(1000)}, {Name: "b", Type: varchar(1000)}, {Name: "n", Type: intType}, {Name: "body", Type: textType}, {Name: "doc", Type: typ("jsonb", "jsonb", -1)}},
		PrimaryKey: []string{"id"},
		Indexes: []schema.Index{{Name: "ab", Columns: []string{"a", "b", "n"}}, {Name: "small", Columns: []string{"n", "a"}}, {Name: "body", Columns: []string{"body"}},
			{Name: "doc_key", Columns: []string{"doc"}, Unique: true}, {Name: "gone", Columns: []string{"id", "x"}}}}
	pt := mustPlan(t, st)
	if len(pt.PostData) != 1 {
		t.Fatalf("post-data: %v", pt.PostData)
	}
	sql := pt.PostData[0].SQL
	for _, want := range []string{"ADD INDEX `ab` (`a`(383), `b`(383), `n`)", "ADD INDEX `small` (`n`, `a`(767))", "ADD INDEX `body` (`body`(255))"} {
		if !strings.Contains(sql, want) {
			t.Errorf("%s lacks %s", sql, want)
		}
	}
	for _, w := range [][]string{{"index ab indexes the first 383 characters of a"}, {"index doc_key is not created", "cannot index whole (doc)"}, {"index gone is not created", "drops one of its columns"}} {
		if !hasWarning(pt, w...) {
			t.Errorf("no warning %q: %q", w, pt.Warnings)
		}
	}
}

// A stored generated column: its expression was reported as an untranslatable
// default; now it is a plain column with a note saying so.
func TestGeneratedColumn(t *testing.T) {
	pt := mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true}, {Name: "a", Type: intType},
		{Name: "g", Type: intType, Generated: "(a * 2)"}}, PrimaryKey: []string{"id"}})
	if !hasWarning(pt, "t.g", "GENERATED ALWAYS AS (a * 2) STORED", "becomes a plain column holding the copied values; not computed on the target") {
		t.Errorf("no note about the generated column: %q", pt.Warnings)
	}
	if hasWarning(pt, "has no MySQL translation") || findTarget(pt, "g").Default != "" {
		t.Errorf("the generation expression was treated as a default: %q", pt.Warnings)
	}
}

// Arrays whose elements to_json writes otherwise than their text: refused.
// A domain element is its base type, which the catalog resolves.
func TestArrayElementTypes(t *testing.T) {
	pair := schema.Type{Name: "_pair", Display: "pair[]", Array: true, Elem: "pair", Length: -1,
		ElemUnsupported: "its element type pair is a composite type, which the copy writes as JSON objects and the change stream as text"}
	pt, errs := planOf(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true}, {Name: "ps", Type: pair}},
		PrimaryKey: []string{"id"}}, config.TableMapping{})
	if len(errs) > 0 || !hasWarning(pt, "t.ps", "sluice sync refuses it", "composite") {
		t.Errorf("pair[]: %v %q; want a note that sync refuses it (the copy takes it)", errs, pt.Warnings)
	}
	_, errs = planOf(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true}, {Name: "ps", Type: pair}},
		PrimaryKey: []string{"id"}}, config.TableMapping{Columns: map[string]config.ColumnMapping{"ps": {Drop: true}}})
	if len(errs) > 0 {
		t.Errorf("pair[] dropped by the mapping: %v", errs)
	}
	posints := schema.Type{Name: "_posint", Display: "posint[]", Array: true, Elem: "int4", Length: -1}
	pt = mustPlan(t, &schema.Table{Columns: []schema.Column{{Name: "id", Type: intType, NotNull: true}, {Name: "v", Type: posints}}, PrimaryKey: []string{"id"}})
	if got, err := findTarget(pt, "v").StreamConvert([]byte("{1,2}")); err != nil || string(got) != "[1,2]" {
		t.Errorf("a streamed posint[] becomes %s, %v; want [1,2] as to_json writes", got, err)
	}
}
