package plan

import (
	"testing"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/schema"
)

// A user type that holds less than the source's must not make verify compare
// at the lesser precision: a rounded copy would be called equal. And the plan
// must say that the target may change values (narrows), not promise that the
// copy stops: MariaDB trims a second's digits without a warning, and rounds
// a DECIMAL's with a note only.
func TestUserTypeKind(t *testing.T) {
	typ := func(name string, precision, scale int) schema.Type {
		return schema.Type{Name: name, Length: -1, Precision: precision, Scale: scale}
	}
	var (
		int4        = typ("int4", -1, -1)
		int8        = typ("int8", -1, -1)
		numeric     = typ("numeric", -1, -1)
		numeric10_3 = typ("numeric", 10, 3)
		money       = typ("money", -1, -1)
		float8      = typ("float8", -1, -1)
		float4      = typ("float4", -1, -1)
		text        = typ("text", -1, -1)
		bpchar      = typ("bpchar", -1, -1)
		timestamp   = typ("timestamp", -1, -1)
		timestamp3  = typ("timestamp", 3, -1)
		timestamptz = typ("timestamptz", -1, -1)
		time6       = typ("time", -1, -1)
		time0       = typ("time", 0, -1)
	)
	tests := []struct {
		src     schema.Type
		source  canonical.Kind
		sqlType string
		want    canonical.Kind
		narrows bool
	}{
		{int8, canonical.Integer, "DOUBLE", canonical.Number, true},
		{numeric, canonical.Decimal, "float", canonical.Number, true},
		{float8, canonical.Float64, "FLOAT", canonical.Float64, true},
		{text, canonical.Exact, "CHAR(10)", canonical.Exact, true},
		{numeric, canonical.Decimal, "INT", canonical.Decimal, true},
		{int8, canonical.Integer, "BIGINT", canonical.Integer, false},
		{int8, canonical.Integer, "DECIMAL(20,0)", canonical.Decimal, false},
		{text, canonical.Exact, "VARCHAR(200)", canonical.Exact, false},
		{bpchar, canonical.PaddedChar, "CHAR(20)", canonical.PaddedChar, false},
		{text, canonical.Exact, "MEDIUMTEXT", canonical.Exact, false},
		{int4, canonical.Integer, "REAL", canonical.Number, true},
		{float8, canonical.Float64, "FLOAT(53)", canonical.Float64, false},
		{float8, canonical.Float64, "FLOAT(7,4)", canonical.Float64, true},
		{float4, canonical.Float32, "FLOAT", canonical.Float32, false},

		// fewer digits after the point, or before it
		{numeric10_3, canonical.Decimal, "DECIMAL(10,2)", canonical.Decimal, true},
		{numeric10_3, canonical.Decimal, "decimal(12, 3)", canonical.Decimal, false},
		{numeric10_3, canonical.Decimal, "NUMERIC(9,3)", canonical.Decimal, true},
		{numeric10_3, canonical.Decimal, "DECIMAL(11,4)", canonical.Decimal, false},
		{numeric, canonical.Decimal, "DECIMAL(65,30)", canonical.Decimal, true},
		{money, canonical.Decimal, "DECIMAL(19,2)", canonical.Decimal, false},
		{money, canonical.Decimal, "DECIMAL(19,1)", canonical.Decimal, true},
		{int8, canonical.Integer, "DECIMAL(18,0)", canonical.Integer, true},
		{int4, canonical.Integer, "DECIMAL", canonical.Decimal, false}, // DECIMAL(10,0)
		{int8, canonical.Integer, "DECIMAL", canonical.Integer, true},
		{float8, canonical.Float64, "DECIMAL(30,10)", canonical.Float64, true},

		// fewer digits of a second, or none of the date or time
		{timestamp, canonical.Timestamp, "DATETIME(0)", canonical.Timestamp, true},
		{timestamp, canonical.Timestamp, "DATETIME", canonical.Timestamp, true},
		{timestamptz, canonical.Timestamp, "TIMESTAMP(3)", canonical.Timestamp, true},
		{timestamp, canonical.Timestamp, "DATETIME(6)", canonical.Timestamp, false},
		{timestamp3, canonical.Timestamp, "DATETIME(3)", canonical.Timestamp, false},
		{timestamp3, canonical.Timestamp, "datetime(2)", canonical.Timestamp, true},
		{time6, canonical.Time, "TIME(0)", canonical.Time, true},
		{time0, canonical.Time, "TIME", canonical.Time, false},
		{timestamp, canonical.Timestamp, "DATE", canonical.Timestamp, true},
		{timestamp, canonical.Timestamp, "TIME(6)", canonical.Timestamp, true},
		// YEAR takes 50 as 2050, SET sorts 'b,a' into 'a,b': silently
		{int4, canonical.Integer, "YEAR", canonical.Integer, true},
		{text, canonical.Exact, "SET('a','b')", canonical.Exact, true},
		{text, canonical.Exact, "set ('a','b')", canonical.Exact, true},
	}
	for _, tt := range tests {
		got, narrows := userTypeKind(tt.src, tt.source, tt.sqlType)
		if got != tt.want || narrows != tt.narrows {
			t.Errorf("%s (%v) as %s: verify compares as %v (narrows %v), want %v (narrows %v)", tt.src.Name, tt.source, tt.sqlType, got, narrows, tt.want, tt.narrows)
		}
	}
}
