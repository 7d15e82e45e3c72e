package pgstream

import (
	"testing"

	"github.com/sluice-db/sluice/internal/partbound"
)

// A truncated partition's bound is read when the stop is judged, maybe
// long after the TRUNCATE: a partition attached elsewhere since, or
// detached and attached again with another bound, held other rows.
func TestPartitionBoundMatches(t *testing.T) {
	b := PartitionBound{Constraint: "((id >= 0) AND (id < 50))", Parents: []uint32{20, 10}, Levels: []partbound.Level{
		{Strategy: 'r', Columns: []string{"id"}, Bound: "FOR VALUES FROM (0) TO (50)"},
		{Strategy: 'r', Columns: []string{"id"}, Bound: "FOR VALUES FROM (0) TO (1000)"},
	}}
	recorded := []string{"FOR VALUES FROM (0) TO (50)", "FOR VALUES FROM (0) TO (1000)", ""}
	for _, c := range []struct {
		name      string
		b         PartitionBound
		ancestors []uint32
		bounds    []string
		want      bool
	}{
		{"as recorded", b, []uint32{20, 10}, recorded, true},
		{"the migrated table a partition itself", b, []uint32{20, 10, 5}, append(recorded, "FOR VALUES IN (1)"), true},
		{"moved below another partition of the table", b, []uint32{21, 10}, recorded, false},
		{"attached again with another bound", b, []uint32{20, 10}, []string{"FOR VALUES FROM (50) TO (100)", recorded[1], ""}, false},
		{"its parent attached again with another bound", b, []uint32{20, 10}, []string{recorded[0], "FOR VALUES FROM (0) TO (500)", ""}, false},
		{"no bounds recorded (an older trigger)", b, []uint32{20, 10}, nil, false},
		{"no ancestors", b, nil, recorded, false},
		{"nothing read", PartitionBound{Constraint: b.Constraint}, []uint32{20, 10}, recorded, false},
	} {
		if got := c.b.Matches(c.ancestors, c.bounds); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.want)
		}
	}
}
