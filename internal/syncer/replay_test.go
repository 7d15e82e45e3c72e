package syncer

import (
	"maps"
	"math/rand/v2"
	"strings"
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

func ids(rows []bufRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.key
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
	got := keys(replayWindow(chunk(), ops, make([]bool, len(ops))))
	want := []string{"3=C", "9=d"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
	if all := replayWindow(chunk(), []apply.Op{{Kind: apply.Truncate}}, []bool{false}); len(all) != 0 {
		t.Fatalf("a TRUNCATE in the window must empty the chunk, got %v", keys(all))
	}
	if none := replayWindow(chunk(), nil, nil); len(none) != 4 {
		t.Fatalf("no changes: the chunk goes as read, got %v", keys(none))
	}
}

// A key move the read saw (it committed between the low watermark and the
// read) left the row under its new key in the chunk; the row the read found
// under the old key is another one, put there later. Carrying that one to
// the new key with the move's columns gave the new key another row's
// unchanged TOASTed value.
func TestReplayWindowMoveTheReadSaw(t *testing.T) {
	chunk := []bufRow{
		{key: "2", row: apply.Row{val("2"), val("AAA")}}, // row A, moved from 5 to 2
		{key: "5", row: apply.Row{val("5"), val("BBB")}}, // row B, inserted at 5 after that
	}
	ops := []apply.Op{
		{Kind: apply.Move, Key: "2", OldKeyID: "5", Row: apply.Row{val("2"), {Unchanged: true}}},
		{Kind: apply.Upsert, Key: "5", Row: apply.Row{val("5"), val("BBB")}},
	}
	if got := strings.Join(keys(replayWindow(chunk, ops, []bool{true, true})), " "); got != "2=AAA" {
		t.Fatalf("the read saw the move and the insert: chunk keeps [%s], want [2=AAA]", got)
	}
	unseen := []bufRow{{key: "5", row: apply.Row{val("5"), val("AAA")}}} // read before the move
	if got := strings.Join(keys(replayWindow(unseen, ops, []bool{false, false})), " "); got != "2=AAA" {
		t.Fatalf("the read saw neither: chunk keeps [%s], want [2=AAA]", got)
	}
}

// Without a key, equal rows are interchangeable: the chunk keeps as many
// copies of each row as the source has at the high watermark minus those the
// stream wrote to the target in the window. Whether the read saw an op decides
// it: an insert after the read must not take out an older equal row.
func TestReplayKeyless(t *testing.T) {
	chunk := func() []bufRow {
		return []bufRow{{key: "x"}, {key: "x"}, {key: "y"}, {key: "z"}}
	}
	for _, tc := range []struct {
		name string
		ops  []apply.Op
		seen []bool
		want string
	}{
		{"insert the read saw: the stream wrote it", []apply.Op{{Kind: apply.Append, Key: "x"}}, []bool{true}, "x y z"},
		{"insert after the read: the chunk keeps its copies", []apply.Op{{Kind: apply.Append, Key: "x"}}, []bool{false}, "x x y z"},
		{"delete the read saw: nothing of the chunk's", []apply.Op{{Kind: apply.DeleteOne, Key: "x"}}, []bool{true}, "x x y z"},
		{"delete after the read: one copy goes", []apply.Op{{Kind: apply.DeleteOne, Key: "x"}}, []bool{false}, "x y z"},
		{"update the read saw: its new row was written", []apply.Op{{Kind: apply.UpdateOne, OldKeyID: "w", Key: "y"}}, []bool{true}, "x x z"},
		{"update after the read: its old row goes", []apply.Op{{Kind: apply.UpdateOne, OldKeyID: "y", Key: "x"}}, []bool{false}, "x x z"},
		{"truncate after the read: nothing", []apply.Op{{Kind: apply.Truncate}, {Kind: apply.Append, Key: "x"}}, []bool{false, false}, ""},
		{"truncate the read saw: only later inserts count", []apply.Op{{Kind: apply.Append, Key: "y"}, {Kind: apply.Truncate}, {Kind: apply.Append, Key: "x"}}, []bool{true, true, true}, "x y z"},
	} {
		got := strings.Join(ids(replayKeyless(chunk(), tc.ops, tc.seen)), " ")
		if got != tc.want {
			t.Errorf("%s: chunk keeps [%s], want [%s]", tc.name, got, tc.want)
		}
	}
}

// The whole window at random: a source table of a few equal rows changes by
// inserts, deletes and updates; the read sees a prefix of them; the stream
// plays all of them on the emptied target. Target plus what the chunk keeps
// must be the source at the high watermark, copy for copy.
func TestReplayKeylessMatchesTheSource(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []string{"a", "b", "c"}
	for round := 0; round < 5000; round++ {
		source := map[string]int{}
		for range r.IntN(5) {
			source[values[r.IntN(3)]]++
		}
		n := r.IntN(8)
		ops := make([]apply.Op, 0, n)
		for range n {
			v, w := values[r.IntN(3)], values[r.IntN(3)]
			switch k := r.IntN(3); {
			case k == 0:
				ops = append(ops, apply.Op{Kind: apply.Append, Key: v})
			case k == 1 && source[v] > 0:
				ops = append(ops, apply.Op{Kind: apply.DeleteOne, Key: v})
			case k == 2 && source[v] > 0:
				ops = append(ops, apply.Op{Kind: apply.UpdateOne, OldKeyID: v, Key: w})
			default:
				continue
			}
			play(source, ops[len(ops)-1], false)
		}
		// replay from the start, with the read taken after the first `cut` ops
		cut := r.IntN(len(ops) + 1)
		atRead, final, target := map[string]int{}, map[string]int{}, map[string]int{}
		for v, c := range source { // undo the ops to get the table at the low watermark
			final[v] = c
		}
		start := maps.Clone(final)
		for i := len(ops) - 1; i >= 0; i-- {
			unplay(start, ops[i])
		}
		maps.Copy(atRead, start)
		seen := make([]bool, len(ops))
		for i, op := range ops {
			seen[i] = i < cut
			if seen[i] {
				play(atRead, op, false)
			}
			play(target, op, true)
		}
		var chunk []bufRow
		for _, v := range values {
			for range atRead[v] {
				chunk = append(chunk, bufRow{key: v})
			}
		}
		for _, k := range ids(replayKeyless(chunk, ops, seen)) {
			target[k]++
		}
		for _, v := range values {
			if target[v] != final[v] {
				t.Fatalf("round %d: ops %v, read after %d: target has %d of %q, source %d", round, ops, cut, target[v], v, final[v])
			}
		}
	}
}

// play applies op to a table's row counts; onTarget, a delete of a row the
// table lacks does nothing (the stream's DELETE … LIMIT 1 on the target).
func play(counts map[string]int, op apply.Op, onTarget bool) {
	sub := func(v string) {
		if counts[v] > 0 || !onTarget {
			counts[v]--
		}
	}
	switch op.Kind {
	case apply.Append:
		counts[op.Key]++
	case apply.DeleteOne:
		sub(op.Key)
	case apply.UpdateOne:
		sub(op.OldKeyID)
		counts[op.Key]++
	}
}

func unplay(counts map[string]int, op apply.Op) {
	switch op.Kind {
	case apply.Append:
		counts[op.Key]--
	case apply.DeleteOne:
		counts[op.Key]++
	case apply.UpdateOne:
		counts[op.Key]--
		counts[op.OldKeyID]++
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
