package typemap

import (
	"math"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/schema"
)

func numeric(p, s int, display string) schema.Type {
	return schema.Type{Name: "numeric", Display: display, Length: -1, Precision: p, Scale: s}
}

// PostgreSQL 15 takes numeric(2,5) and numeric(2,-3); MySQL refused
// DECIMAL(2,5) (error 1427), and a negative scale fell back to DECIMAL(65,30).
func TestNumericScaleOutsidePrecision(t *testing.T) {
	for _, c := range []struct {
		typ      schema.Type
		want     string
		ok, fail []string
	}{
		{numeric(2, 5, "numeric(2,5)"), "DECIMAL(5,5)", []string{"0.00099", "-0.00001", "0"}, []string{"1", "0.000001"}},
		{numeric(2, -3, "numeric(2,-3)"), "DECIMAL(5,0)", []string{"99000", "-1000", "0"}, []string{"100000", "1000.5"}},
		{numeric(10, 2, "numeric(10,2)"), "DECIMAL(10,2)", []string{"12345678.99"}, []string{"123456789"}},
		{numeric(60, -10, "numeric(60,-10)"), "DECIMAL(65,30)", nil, nil}, // 70 digits: the widest DECIMAL, with a note
	} {
		m := Map(c.typ, Options{Flavor: MariaDB})
		if m.SQLType != c.want {
			t.Errorf("%s maps to %s, want %s", c.typ.Display, m.SQLType, c.want)
			continue
		}
		for _, v := range c.ok {
			if _, err := m.Convert([]byte(v)); err != nil {
				t.Errorf("%s: %s refused: %v", c.typ.Display, v, err)
			}
		}
		for _, v := range c.fail {
			if _, err := m.Convert([]byte(v)); err == nil {
				t.Errorf("%s: %s accepted by %s", c.typ.Display, v, m.SQLType)
			}
		}
	}
}

// Unbounded bit varying became VARCHAR(64): longer values failed mid-copy.
func TestVarbitWidth(t *testing.T) {
	varbit := schema.Type{Name: "varbit", Display: "bit varying", Length: -1}
	if m := Map(varbit, Options{Flavor: MariaDB}); !strings.HasPrefix(m.SQLType, "LONGTEXT CHARACTER SET ascii") {
		t.Errorf("bit varying maps to %s; want LONGTEXT", m.SQLType)
	}
	key := Map(varbit, Options{Flavor: MariaDB, InKey: true, KeyBytes: 100})
	if !strings.HasPrefix(key.SQLType, "VARCHAR(100) ") || !key.FitsKeyBytes {
		t.Errorf("bit varying in a key of 100 bytes maps to %s (fits %v)", key.SQLType, key.FitsKeyBytes)
	}
	if _, err := key.Convert([]byte(strings.Repeat("1", 101))); err == nil {
		t.Error("a key value longer than its VARCHAR was accepted")
	}
	if m := Map(schema.Type{Name: "varbit", Display: "bit varying(10)", Length: 10}, Options{Flavor: MariaDB}); !strings.HasPrefix(m.SQLType, "VARCHAR(10) ") {
		t.Errorf("bit varying(10) maps to %s", m.SQLType)
	}
}

// MariaDB strips trailing spaces from ENUM labels ('b ' stored as 'b';
// 'a' and 'a ' refused as duplicates).
func TestEnumLabelWithTrailingSpace(t *testing.T) {
	m := Map(schema.Type{Name: "mood", Display: "mood", EnumLabels: []string{"a", "a "}}, Options{Flavor: MariaDB})
	if !strings.HasPrefix(m.SQLType, "VARCHAR(63) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin") || len(m.Notes) != 1 || !strings.Contains(m.Notes[0], "'a '") {
		t.Errorf("enum with label 'a ' maps to %s, notes %q", m.SQLType, m.Notes)
	}
	if m := Map(schema.Type{Name: "mood", Display: "mood", EnumLabels: []string{"a", " b"}}, Options{Flavor: MariaDB}); !strings.HasPrefix(m.SQLType, "ENUM('a',' b')") {
		t.Errorf("enum without trailing spaces maps to %s", m.SQLType)
	}
}

func TestFloatNegativeZeroNote(t *testing.T) {
	for _, name := range []string{"float4", "float8"} {
		m := Map(schema.Type{Name: name, Display: name}, Options{Flavor: MariaDB})
		if len(m.Notes) != 1 || !strings.Contains(m.Notes[0], "-0") {
			t.Errorf("%s: notes %q; want one about -0", name, m.Notes)
		}
	}
}

// A bytea in a key took VARBINARY(3072) whatever else the key held.
func TestByteaKeyWidth(t *testing.T) {
	m := Map(schema.Type{Name: "bytea", Display: "bytea", Length: -1}, Options{Flavor: MariaDB, InKey: true, KeyBytes: 3068})
	if m.SQLType != "VARBINARY(3068)" || !m.FitsKeyBytes {
		t.Fatalf("bytea in a key of 3068 bytes maps to %s", m.SQLType)
	}
	if _, err := m.Convert([]byte(`\x` + strings.Repeat("ab", 3069))); err == nil {
		t.Error("a 3069-byte value was accepted")
	}
}

func TestDefaults(t *testing.T) {
	text := schema.Type{Name: "text", Display: "text", Length: -1}
	for _, c := range []struct {
		typ   schema.Type
		def   string
		want  string // "" with ok false: left out
		inKey bool
	}{
		{schema.Type{Name: "bytea", Display: "bytea", Length: -1}, `'\x00ff'::bytea`, "(X'00ff')", false},
		{schema.Type{Name: "bytea", Display: "bytea", Length: -1}, `'\x00ff'::bytea`, "X'00ff'", true},
		{schema.Type{Name: "_int4", Display: "integer[]", Array: true, Elem: "int4", Length: -1}, `'{1,2}'::integer[]`, "('[1,2]')", false},
		{schema.Type{Name: "_text", Display: "text[]", Array: true, Elem: "text", Length: -1}, `'{}'::text[]`, "('[]')", false},
		{schema.Type{Name: "timestamptz", Display: "timestamp with time zone", Precision: -1}, `'2024-01-01 08:00:00+00'::timestamp with time zone`, "'2024-01-01 08:00:00'", false},
		{schema.Type{Name: "timestamptz", Display: "timestamp with time zone", Precision: -1}, `'2024-01-01 08:00:00+02'::timestamp with time zone`, "", false},
		{schema.Type{Name: "timestamp", Display: "timestamp without time zone", Precision: -1}, `'infinity'::timestamp without time zone`, "", false},
		{schema.Type{Name: "int4", Display: "integer"}, `'-1'::integer`, "-1", false},
		{schema.Type{Name: "int4", Display: "integer"}, `42`, "42", false},
		{schema.Type{Name: "bool", Display: "boolean"}, `true`, "1", false},
		{schema.Type{Name: "money", Display: "money"}, `'$1,234.50'::money`, "1234.50", false},
		{schema.Type{Name: "interval", Display: "interval", Precision: -1}, `'PT1H'::interval`, "'PT1H'", false},
		{text, `'it''s'::text`, "('it''s')", false},
		{schema.Type{Name: "varchar", Display: "character varying(4)", Length: 4}, `'abc'::character varying`, "'abc'", false},
		{schema.Type{Name: "timestamptz", Display: "timestamp with time zone", Precision: -1}, `now()`, "CURRENT_TIMESTAMP(6)", false},
		{text, `lower('X'::text)`, "", false},
	} {
		m := Map(c.typ, Options{Flavor: MariaDB, InKey: c.inKey})
		clause, ok, note := Default(schema.Column{Name: "c", Type: c.typ, Default: c.def}, m)
		if c.want == "" {
			if ok || !strings.Contains(note, "left out") {
				t.Errorf("%s default %s: got %q (ok %v, note %q); want it left out with a note", c.typ.Display, c.def, clause, ok, note)
			}
			continue
		}
		if !ok || clause != c.want {
			t.Errorf("%s default %s: got %q (ok %v, note %q); want %s", c.typ.Display, c.def, clause, ok, note, c.want)
		}
	}
}

func TestSizeOf(t *testing.T) {
	for _, c := range []struct {
		typ      string
		row, key int
		blob     bool
	}{
		{"INT AUTO_INCREMENT", 4, 4, false},
		{"VARCHAR(10000) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin", 40002, 40000, false},
		{"VARCHAR(63) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin", 253, 252, false},
		{"VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin", 65, 64, false},
		{"VARBINARY(3068)", 3070, 3068, false},
		{"DECIMAL(65,30)", 30, 30, false},
		{"DECIMAL(5,5)", 3, 3, false},
		{"DATETIME(6)", 8, 8, false},
		{"TIME(6)", 6, 6, false},
		{"CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin", 40, 40, false},
		{"UUID", 16, 16, false},
		{"LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin", 12, 0, true},
		{"JSON", 12, 0, true},
		{"MEDIUMTEXT", 11, 0, true},
	} {
		s := SizeOf(c.typ)
		if s.Row != c.row || s.Key != c.key || s.Blob != c.blob {
			t.Errorf("SizeOf(%s) = %+v; want row %d, key %d, blob %v", c.typ, s, c.row, c.key, c.blob)
		}
	}
	if long, ok := LongText("VARCHAR(9) CHARACTER SET ascii COLLATE ascii_bin"); !ok || long != "LONGTEXT CHARACTER SET ascii COLLATE ascii_bin" {
		t.Errorf("LongText: %q, %v", long, ok)
	}
	if _, ok := LongText("CHAR(9)"); ok {
		t.Error("LongText took CHAR")
	}
}

// The cutover sets a target AUTO_INCREMENT no higher than its column can
// hold: past it, every insert on the target fails.
func TestIntegerMax(t *testing.T) {
	for typ, want := range map[string]int64{
		"SMALLINT AUTO_INCREMENT":        32767,
		"INT AUTO_INCREMENT":             2147483647,
		"INT UNSIGNED":                   4294967295,
		"MEDIUMINT":                      8388607,
		"tinyint(4) unsigned":            255,
		"BIGINT AUTO_INCREMENT":          math.MaxInt64,
		"BIGINT UNSIGNED AUTO_INCREMENT": math.MaxInt64,
		"DECIMAL(20,0)":                  math.MaxInt64,
	} {
		if got := IntegerMax(typ); got != want {
			t.Errorf("IntegerMax(%q) = %d, want %d", typ, got, want)
		}
	}
}

// MariaDB's json_valid refuses 32 levels of nesting and lone UTF-16
// surrogates: such a document is a bad value (named by its row); brackets
// inside strings are no nesting.
func TestJSONDepthForMariaDB(t *testing.T) {
	for doc, ok := range map[string]bool{
		strings.Repeat("[", 31) + strings.Repeat("]", 31):                     true,
		strings.Repeat("[", 32) + strings.Repeat("]", 32):                     false,
		`{"a":` + strings.Repeat(`{"b":`, 40) + "1" + strings.Repeat("}", 41): false,
		`{"s": "` + strings.Repeat("[", 50) + `\"]"}`:                         true,
		// a UTF-16 surrogate only as half of a pair (PostgreSQL's json keeps any)
		`"\ud83d\ude00"`:  true,
		`"\ud800"`:        false,
		`"\ude00\ud83d"`:  false,
		`["\ud800", 1]`:   false,
		`{"k\ud800x": 1}`: false,
		`"\\ud800"`:       true, // an escaped backslash, then plain text
		`"\u00e9\n"`:      true,
	} {
		if _, err := checkJSON([]byte(doc)); (err == nil) != ok {
			t.Errorf("%.40s…: error %v, want accepted %v", doc, err, ok)
		}
	}
}
