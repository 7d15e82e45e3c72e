package syncer

import (
	"testing"

	"github.com/sluice-db/sluice/internal/apply"
)

func drow(id, item string) apply.Row {
	return apply.Row{{Data: []byte(id)}, {Data: []byte(item)}}
}

// A transaction on a table with a DEFERRABLE key, replayed whole: every
// shape ends with one row per key, as the source has it at commit.
func TestDeferredTxEndState(t *testing.T) {
	tbl := &table{}
	type change struct {
		op       string // i, u, d
		old, new apply.Row
	}
	key := func(r apply.Row) string { return string(r[0].Data) }
	tests := []struct {
		name    string
		changes []change
		want    []string // "upsert k item" or "delete k", in first-touched order
	}{
		{"shift every key by one (rows 1 and 2 existed)", []change{
			{"u", drow("1", "a"), drow("2", "a")},
			{"u", drow("2", "b"), drow("3", "b")},
		}, []string{"delete 1", "upsert 2 a", "upsert 3 b"}},
		{"shift in the other physical order", []change{
			{"u", drow("2", "b"), drow("3", "b")},
			{"u", drow("1", "a"), drow("2", "a")},
		}, []string{"upsert 2 a", "upsert 3 b", "delete 1"}},
		{"swap two keys through a third", []change{
			{"u", drow("1", "a"), drow("2", "a")},
			{"u", drow("2", "b"), drow("1", "b")},
		}, []string{"upsert 1 b", "upsert 2 a"}},
		{"a row moved twice while another keeps its key", []change{
			{"u", drow("1", "a"), drow("2", "a")},
			{"u", drow("2", "a"), drow("3", "a")},
		}, []string{"delete 1", "upsert 3 a"}},
		{"inserted and deleted in the transaction", []change{
			{"i", nil, drow("5", "x")},
			{"d", drow("5", "x"), nil},
		}, nil},
		{"insert on a key the transaction freed", []change{
			{"d", drow("4", "old"), nil},
			{"i", nil, drow("4", "new")},
		}, []string{"upsert 4 new"}},
	}
	for _, tt := range tests {
		d := newDeferredTx()
		for _, c := range tt.changes {
			if c.old != nil {
				d.remove(key(c.old), c.old)
			}
			if c.new != nil {
				d.add(key(c.new), c.new)
			}
		}
		var got []string
		for _, op := range d.ops(tbl) {
			switch {
			case op.Kind != apply.Rewrite:
				t.Fatalf("%s: op kind %v, want Rewrite", tt.name, op.Kind)
			case op.Row != nil:
				got = append(got, "upsert "+op.Key+" "+string(op.Row[1].Data))
			default:
				got = append(got, "delete "+op.Key)
			}
			if string(op.OldKey[0].Data) != op.Key {
				t.Errorf("%s: the op for key %s holds key columns of %s", tt.name, op.Key, op.OldKey[0].Data)
			}
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
				break
			}
		}
		if len(d.order) != 0 || len(d.images) != 0 {
			t.Errorf("%s: the state is not reset after ops", tt.name)
		}
	}
}

// The stream broke inside a transaction and resumed before it: what the
// broken attempt left is forgotten at the transaction's start again, or a
// row updated then deleted would come back (two images, one removed).
func TestDeferredTxForgetsABrokenAttempt(t *testing.T) {
	tbl := &table{deferred: newDeferredTx()}
	s := &Syncer{tables: []*table{tbl}, deferredTables: []*table{tbl}}
	d := s.tables[0].deferred
	d.remove("5", drow("5", "x"))
	d.add("5", drow("5", "y")) // the stream breaks here
	s.beginDeferred()          // the transaction again, whole
	d.remove("5", drow("5", "x"))
	d.add("5", drow("5", "y"))
	d.remove("5", drow("5", "y"))
	ops := d.ops(s.tables[0])
	if len(ops) != 1 || ops[0].Row != nil {
		t.Fatalf("ops %v; want one delete of key 5", ops)
	}
}
