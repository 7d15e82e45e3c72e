package apply

import (
	"bytes"
	"testing"
)

// Statements are cut by rows, by bytes and by placeholders, and every row
// lands in exactly one.
func TestPartEnd(t *testing.T) {
	row := func(cols, bytesEach int) Row {
		r := make(Row, cols)
		for i := range r {
			r[i].Data = bytes.Repeat([]byte{'x'}, bytesEach)
		}
		return r
	}
	parts := func(rows []Row, cols int) []int {
		var sizes []int
		for start := 0; start < len(rows); {
			end := partEnd(rows, start, cols)
			if end <= start {
				t.Fatalf("no progress at row %d", start)
			}
			sizes = append(sizes, end-start)
			start = end
		}
		return sizes
	}
	many := func(n int, r Row) []Row {
		out := make([]Row, n)
		for i := range out {
			out[i] = r
		}
		return out
	}
	for _, tc := range []struct {
		name string
		rows []Row
		cols int
		want []int
	}{
		{"narrow rows: 500 a statement", many(1200, row(3, 10)), 3, []int{500, 500, 200}},
		{"40 kB rows: 4 MiB a statement", many(250, row(4, 10_000)), 4, []int{104, 104, 42}},
		{"a row over the budget goes alone", many(3, row(1, 5<<20)), 1, []int{1, 1, 1}},
		{"200 columns: 327 rows keep under 65,535 placeholders", many(700, row(200, 1)), 200, []int{327, 327, 46}},
	} {
		got := parts(tc.rows, tc.cols)
		if len(got) != len(tc.want) {
			t.Errorf("%s: statements of %v rows, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: statements of %v rows, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}
