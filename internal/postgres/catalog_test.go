package postgres

import (
	"testing"

	"github.com/sluice-db/sluice/internal/schema"
)

// numeric's typmod holds an 11-bit signed scale: PostgreSQL 15 takes
// numeric(2,-3) and numeric(2,5).
func TestDecodeNumericTypmod(t *testing.T) {
	for typmod, want := range map[int32][2]int{131081: {2, 5}, 133121: {2, -3}, 655366: {10, 2}, 4194308: {64, 0}} {
		typ := schema.Type{Name: "numeric", Precision: -1, Scale: -1}
		decodeTypmod(&typ, typmod)
		if typ.Precision != want[0] || typ.Scale != want[1] {
			t.Errorf("typmod %d: numeric(%d,%d), want numeric(%d,%d)", typmod, typ.Precision, typ.Scale, want[0], want[1])
		}
	}
}
