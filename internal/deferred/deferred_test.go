package deferred

import (
	"slices"
	"testing"
)

// row is a test row: key and one value.
type row struct{ id, item string }

func identity(r row) string { return r.id + "\x00" + r.item }

// end lists the transaction's end state: "upsert k item" or "delete k", in
// first-touched order, checking each keyRow holds its key.
func end(t *testing.T, name string, d *Tx[row]) []string {
	var got []string
	err := d.End(func(key string, r row, exists bool, keyRow row) error {
		if keyRow.id != key {
			t.Errorf("%s: the end state of key %s holds the key columns of %s", name, key, keyRow.id)
		}
		if exists {
			got = append(got, "upsert "+key+" "+r.item)
		} else {
			got = append(got, "delete "+key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A transaction on a table with a DEFERRABLE key, replayed whole: every
// shape ends with one row per key, as the source has it at commit.
func TestEndState(t *testing.T) {
	type change struct {
		old, new *row
	}
	r := func(id, item string) *row { return &row{id, item} }
	tests := []struct {
		name    string
		changes []change
		want    []string
	}{
		{"shift every key by one (rows 1 and 2 existed)", []change{
			{r("1", "a"), r("2", "a")},
			{r("2", "b"), r("3", "b")},
		}, []string{"delete 1", "upsert 2 a", "upsert 3 b"}},
		{"shift in the other physical order", []change{
			{r("2", "b"), r("3", "b")},
			{r("1", "a"), r("2", "a")},
		}, []string{"upsert 2 a", "upsert 3 b", "delete 1"}},
		{"swap two keys through a third", []change{
			{r("1", "a"), r("2", "a")},
			{r("2", "b"), r("1", "b")},
		}, []string{"upsert 1 b", "upsert 2 a"}},
		{"a row moved twice while another keeps its key", []change{
			{r("1", "a"), r("2", "a")},
			{r("2", "a"), r("3", "a")},
		}, []string{"delete 1", "upsert 3 a"}},
		{"inserted and deleted in the transaction", []change{
			{nil, r("5", "x")},
			{r("5", "x"), nil},
		}, nil},
		{"insert on a key the transaction freed", []change{
			{r("4", "old"), nil},
			{nil, r("4", "new")},
		}, []string{"upsert 4 new"}},
	}
	for _, tt := range tests {
		d := New(identity)
		for _, c := range tt.changes {
			if c.old != nil {
				d.Remove(c.old.id, *c.old)
			}
			if c.new != nil {
				d.Add(c.new.id, *c.new)
			}
		}
		if got := end(t, tt.name, d); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
		if d.Pending() || len(d.images) != 0 {
			t.Errorf("%s: the state is not reset after End", tt.name)
		}
	}
}

// The stream broke inside a transaction and resumed before it: what the
// broken attempt left is forgotten by Reset at the transaction's start
// again, or a row updated then deleted would come back (two images, one
// removed).
func TestResetForgetsABrokenAttempt(t *testing.T) {
	d := New(identity)
	d.Remove("5", row{"5", "x"})
	d.Add("5", row{"5", "y"}) // the stream breaks here
	d.Reset()                 // the transaction again, whole
	d.Remove("5", row{"5", "x"})
	d.Add("5", row{"5", "y"})
	d.Remove("5", row{"5", "y"})
	if got := end(t, "broken attempt", d); !slices.Equal(got, []string{"delete 5"}) {
		t.Fatalf("%q; want one delete of key 5", got)
	}
}
