package plan

import (
	"fmt"
	"strings"

	"github.com/sluice-db/sluice/internal/typemap"
)

// CreateTemporary is t.CreateTable for a temporary table called name: the
// same columns, row key and options, so that the target can show how it
// defines the table sluice creates (an existing target table is compared
// with it).
func (t *Table) CreateTemporary(name string) (string, error) {
	body, ok := strings.CutPrefix(t.CreateTable, "CREATE TABLE "+typemap.QuoteIdent(t.Target)+" ")
	if !ok {
		return "", fmt.Errorf("plan: the target DDL of %s does not start with its CREATE TABLE", t.Target)
	}
	return "CREATE TEMPORARY TABLE " + typemap.QuoteIdent(name) + " " + body, nil
}

// ColumnByTarget returns the column whose target name is name (MySQL column
// names ignore case), or nil.
func (t *Table) ColumnByTarget(name string) *Column {
	for i := range t.Columns {
		if strings.EqualFold(t.Columns[i].Target, name) {
			return &t.Columns[i]
		}
	}
	return nil
}
