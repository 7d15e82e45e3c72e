package pgstream

import "testing"

// A truncated partition's bound is read when the stop is judged: one
// attached below another table since then has another bound.
func TestPartitionBoundUnder(t *testing.T) {
	b := PartitionBound{Constraint: "((id >= 0) AND (id < 50))", Parents: []uint32{20, 10}}
	for _, c := range []struct {
		ancestors []uint32
		want      bool
	}{
		{[]uint32{20, 10}, true},
		{[]uint32{20, 10, 5}, true}, // the migrated table 10 is itself a partition of 5
		{[]uint32{21, 10}, false},   // moved below another partition of the table
		{[]uint32{20}, false},
		{nil, false},
	} {
		if got := b.Under(c.ancestors); got != c.want {
			t.Errorf("Under(%v) = %v, want %v", c.ancestors, got, c.want)
		}
	}
}
