package apply

import (
	"reflect"
	"testing"

	"github.com/sluice-db/sluice/internal/plan"
)

func val(s string) Val { return Val{Data: []byte(s)} }

var unchanged = Val{Unchanged: true}

// rowText shows a row as its values ("?" for an unchanged TOAST value).
func rowText(r Row) []string {
	out := make([]string, len(r))
	for i, v := range r {
		switch {
		case v.Unchanged:
			out[i] = "?"
		case v.Data == nil:
			out[i] = "NULL"
		default:
			out[i] = string(v.Data)
		}
	}
	return out
}

func rowsText(rows []Row) [][]string {
	var out [][]string
	for _, r := range rows {
		out = append(out, rowText(r))
	}
	return out
}

// A batch holds many source transactions; what reaches the target must be
// each row's last state, whatever the order of the changes that led to it.
func TestNetEffect(t *testing.T) {
	orders := &Table{Plan: &plan.Table{Target: "orders"}}
	notes := &Table{Plan: &plan.Table{Target: "notes"}}
	history := &Table{Plan: &plan.Table{Target: "history", Keyless: true}}
	ops := []Op{
		{Kind: Upsert, Table: orders, Key: "1", Row: Row{val("1"), val("new"), val("big text")}},
		{Kind: Patch, Table: orders, Key: "1", Row: Row{val("1"), val("paid"), unchanged}}, // TOAST column left out
		{Kind: Upsert, Table: orders, Key: "2", Row: Row{val("2"), val("new"), val("x")}},
		{Kind: Delete, Table: orders, Key: "2", Row: Row{val("2"), {}, {}}}, // inserted and deleted in one batch
		{Kind: Delete, Table: orders, Key: "3", Row: Row{val("3"), {}, {}}},
		{Kind: Upsert, Table: orders, Key: "3", Row: Row{val("3"), val("again"), val("y")}}, // deleted, then inserted again
		{Kind: Patch, Table: orders, Key: "4", Row: Row{val("4"), val("shipped"), unchanged}},
		{Kind: Patch, Table: orders, Key: "4", Row: Row{val("4"), unchanged, val("note")}}, // two updates of a row not in the batch
		{Kind: Append, Table: history, Row: Row{val("a")}},
		{Kind: Load, Table: notes, Key: "9", Row: Row{val("9"), val("copied")}},
		{Kind: Upsert, Table: notes, Key: "9", Row: Row{val("9"), val("changed after the copy")}},
		{Kind: Append, Table: history, Row: Row{val("b")}},
	}
	tables, keyless := netEffect(ops)
	if len(tables) != 2 || tables[0].table != orders || tables[1].table != notes {
		t.Fatalf("tables %v; want orders then notes", tables)
	}
	o := tables[0]
	checks := []struct {
		what      string
		got, want [][]string
	}{
		{"orders deleted", rowsText(o.deletes), [][]string{{"2", "NULL", "NULL"}}},
		{"orders patched", rowsText(o.patches), [][]string{{"4", "shipped", "note"}}},
		{"orders upserted", rowsText(o.upserts), [][]string{{"1", "paid", "big text"}, {"3", "again", "y"}}},
		{"orders loaded", rowsText(o.loads), nil},
		{"notes upserted", rowsText(tables[1].upserts), [][]string{{"9", "changed after the copy"}}},
		{"notes loaded", rowsText(tables[1].loads), nil},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %v; want %v", c.what, c.got, c.want)
		}
	}
	if len(keyless) != 2 || string(keyless[0].Row[0].Data) != "a" || string(keyless[1].Row[0].Data) != "b" {
		t.Errorf("keyless ops %v; want both appends, in source order", keyless)
	}
}
