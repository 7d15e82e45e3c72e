package typemap

import (
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/schema"
)

// bpchar without a length holds values of any length: mapping it to CHAR(1)
// failed every longer value. character(n) keeps CHAR(n).
func TestBpcharWithoutLength(t *testing.T) {
	m := Map(schema.Type{Name: "bpchar", Display: "bpchar", Length: -1}, Options{Flavor: MariaDB})
	if !strings.HasPrefix(m.SQLType, "LONGTEXT") {
		t.Errorf("bpchar without a length maps to %s; want LONGTEXT", m.SQLType)
	}
	got, err := m.Convert([]byte("a longer value   "))
	if err != nil || string(got) != "a longer value" {
		t.Errorf("convert: %q, %v; want the value without its trailing spaces", got, err)
	}
	key := Map(schema.Type{Name: "bpchar", Display: "bpchar", Length: -1}, Options{Flavor: MariaDB, InKey: true})
	if _, err := key.Convert([]byte(strings.Repeat("x", MaxKeyChars+1))); err == nil {
		t.Errorf("in a key (%s), a value longer than %d characters was accepted", key.SQLType, MaxKeyChars)
	}
	if c := Map(schema.Type{Name: "bpchar", Display: "character(3)", Length: 3}, Options{Flavor: MariaDB}); !strings.HasPrefix(c.SQLType, "CHAR(3)") {
		t.Errorf("character(3) maps to %s; want CHAR(3)", c.SQLType)
	}
}
