package plan

import (
	"testing"

	"github.com/sluice-db/sluice/internal/canonical"
)

// A user type that holds less than the source's must not make verify compare
// at the lesser precision: a rounded copy would be called equal.
func TestUserTypeKind(t *testing.T) {
	tests := []struct {
		source  canonical.Kind
		sqlType string
		want    canonical.Kind
		narrows bool
	}{
		{canonical.Integer, "DOUBLE", canonical.Number, true},
		{canonical.Decimal, "float", canonical.Number, true},
		{canonical.Float64, "FLOAT", canonical.Float64, true},
		{canonical.Exact, "CHAR(10)", canonical.Exact, true},
		{canonical.Decimal, "INT", canonical.Decimal, true},
		{canonical.Integer, "BIGINT", canonical.Integer, false},
		{canonical.Integer, "DECIMAL(20,0)", canonical.Decimal, false},
		{canonical.Exact, "VARCHAR(200)", canonical.Exact, false},
		{canonical.PaddedChar, "CHAR(20)", canonical.PaddedChar, false},
		{canonical.Exact, "MEDIUMTEXT", canonical.Exact, false},
		{canonical.Integer, "REAL", canonical.Number, true},
		{canonical.Float64, "FLOAT(53)", canonical.Float64, false},
		{canonical.Float64, "FLOAT(7,4)", canonical.Float64, true},
		{canonical.Float32, "FLOAT", canonical.Float32, false},
	}
	for _, tt := range tests {
		got, narrows := userTypeKind(tt.source, tt.sqlType)
		if got != tt.want || narrows != tt.narrows {
			t.Errorf("%v as %s: verify compares as %v (narrows %v), want %v (narrows %v)", tt.source, tt.sqlType, got, narrows, tt.want, tt.narrows)
		}
	}
}
