package syncer

import (
	"testing"

	"github.com/sluice-db/sluice/internal/apply"
)

func val(s string) apply.Val { return apply.Val{Data: []byte(s)} }

func keys(rows []bufRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.key + "=" + string(r.row[1].Data)
	}
	return out
}

// The chunk as read meets the changes the stream delivered in its window:
// whole-row changes win (the stream wrote them), partial updates (unchanged
// TOAST left out) are merged into the chunk's row, key moves carry the row.
func TestReplayWindow(t *testing.T) {
	chunk := func() []bufRow {
		return []bufRow{
			{key: "1", row: apply.Row{val("1"), val("a")}},
			{key: "2", row: apply.Row{val("2"), val("b")}},
			{key: "3", row: apply.Row{val("3"), val("c")}},
			{key: "4", row: apply.Row{val("4"), val("d")}},
		}
	}
	ops := []apply.Op{
		{Kind: apply.Upsert, Key: "1", Row: apply.Row{val("1"), val("A")}},
		{Kind: apply.Delete, Key: "2"},
		{Kind: apply.Patch, Key: "3", Row: apply.Row{{Unchanged: true}, val("C")}},
		{Kind: apply.Move, Key: "9", OldKeyID: "4", Row: apply.Row{val("9"), {Unchanged: true}}},
		{Kind: apply.Patch, Key: "1", Row: apply.Row{{Unchanged: true}, val("late")}}, // row 1 is the stream's now
	}
	got := keys(replayWindow(chunk(), ops))
	want := []string{"3=C", "9=d"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
	if all := replayWindow(chunk(), []apply.Op{{Kind: apply.Truncate}}); len(all) != 0 {
		t.Fatalf("a TRUNCATE in the window must empty the chunk, got %v", keys(all))
	}
	if none := replayWindow(chunk(), nil); len(none) != 4 {
		t.Fatalf("no changes: the chunk goes as read, got %v", keys(none))
	}
}

// Without a key, equal rows are interchangeable: each streamed insert,
// delete or update (both images) takes exactly one equal row out.
func TestReplayKeyless(t *testing.T) {
	rows := []bufRow{
		{key: "x", row: apply.Row{val("x"), val("1")}},
		{key: "x", row: apply.Row{val("x"), val("2")}},
		{key: "y", row: apply.Row{val("y"), val("3")}},
		{key: "z", row: apply.Row{val("z"), val("4")}},
	}
	ops := []apply.Op{
		{Kind: apply.Append, Key: "x"},
		{Kind: apply.UpdateOne, OldKeyID: "y", Key: "w"},
		{Kind: apply.DeleteOne, Key: "q"}, // not in the chunk: nothing to take
	}
	got := keys(replayKeyless(rows, ops))
	if len(got) != 2 || got[0] != "x=2" || got[1] != "z=4" {
		t.Fatalf("got %v, want [x=2 z=4]", got)
	}
}

func TestSlotName(t *testing.T) {
	if got := SlotName("Likes-V2.prod"); got != "sluice_likes_v2_prod" {
		t.Fatalf("SlotName: %s", got)
	}
	long := SlotName("a_very_long_database_name_that_goes_on_and_on_and_on_and_on_forever")
	if len(long) > 63 {
		t.Fatalf("slot names are limited to 63 bytes: %d", len(long))
	}
}
