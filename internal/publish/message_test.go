package publish

import (
	"encoding/json"
	"testing"

	"github.com/sluice-db/sluice/internal/canonical"
	"github.com/sluice-db/sluice/internal/events"
	"github.com/sluice-db/sluice/internal/plan"
)

func TestMessageRoundTrip(t *testing.T) {
	v := "it's \"quoted\"\n😀"
	row := &Message{Table: "public.likes", Op: OpPatch, Cols: map[string]*string{"a": &v, "b": nil}, Copy: true, LSN: 1 << 40, N: 7}
	in := &Message{V: 1, Kind: KindRows, Parts: 3, Rows: []*Message{row, {Table: "x", Op: OpDelete, LSN: 1 << 40, N: 8}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindRows || m.Parts != 3 || len(m.Rows) != 2 || m.Rows[1].N != 8 {
		t.Fatalf("round trip: %+v", m)
	}
	out := m.Rows[0]
	if out.Table != row.Table || out.Op != row.Op || !out.Copy || out.LSN != row.LSN || out.N != 7 ||
		*out.Cols["a"] != v || out.Cols["b"] != nil || len(out.Cols) != 2 {
		t.Errorf("round trip: %+v", out)
	}
	if _, err := Decode([]byte(`{"v":2,"k":"row"}`)); err == nil {
		t.Error("format 2 accepted")
	}
	if (Pos{1, 5}).Less(Pos{1, 5}) || !(Pos{1, 5}).Less(Pos{1, 6}) || !(Pos{1, 9}).Less(Pos{2, 0}) {
		t.Error("position order")
	}
}

func TestPartition(t *testing.T) {
	counts := make([]int, 3)
	for i := 0; i < 3000; i++ {
		p := Partition("public.t", []string{string(rune('a' + i%26)), string(rune(i))}, 3)
		counts[p]++
		if p != Partition("public.t", []string{string(rune('a' + i%26)), string(rune(i))}, 3) {
			t.Fatal("partition is not stable")
		}
	}
	for i, c := range counts {
		if c < 800 {
			t.Errorf("partition %d got %d of 3000 keys", i, c)
		}
	}
	if Partition("t", []string{"x"}, 1) != 0 {
		t.Error("one partition")
	}
}

// Texts PostgreSQL (and the target) take for one key go to one partition:
// else two appliers apply the same row's delete and upsert in no fixed
// order, and a key rewritten 1.0 → 1.00 could lose its row.
func TestPartitionKeyOneFormPerRow(t *testing.T) {
	table := func(k canonical.Kind) *pubTable {
		return &pubTable{rt: &events.Table{Name: "public.t", Plan: &plan.Table{Columns: []plan.Column{{Kind: k}}, Key: []int{0}}}}
	}
	for _, c := range []struct {
		kind canonical.Kind
		same []string
	}{
		{canonical.Decimal, []string{"1", "1.0", "1.00", "01.000"}},
		{canonical.Float64, []string{"0", "-0"}},
		{canonical.PaddedChar, []string{"a", "a ", "a    "}},
	} {
		pt := table(c.kind)
		for n := 2; n <= 16; n++ {
			want := Partition("public.t", pt.partitionKey([]string{c.same[0]}), n)
			for _, k := range c.same[1:] {
				if got := Partition("public.t", pt.partitionKey([]string{k}), n); got != want {
					t.Errorf("%s key %q goes to partition %d of %d, %q to %d", c.kind, k, got, n, c.same[0], want)
				}
			}
		}
	}
	// keys that differ still spread
	pt := table(canonical.Exact)
	seen := map[int]bool{}
	for i := 0; i < 100; i++ {
		seen[Partition("public.t", pt.partitionKey([]string{string(rune('a' + i%26)), string(rune(i))}), 3)] = true
	}
	if len(seen) != 3 {
		t.Errorf("100 keys went to %d of 3 partitions", len(seen))
	}
}
