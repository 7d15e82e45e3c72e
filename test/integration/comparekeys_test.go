package integration

import (
	"context"
	"sort"
	"strconv"
	"testing"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/postgres"
	"github.com/sluice-db/sluice/internal/testenv"
	"github.com/sluice-db/sluice/internal/verify"
)

// TestCompareKeysTellsWhichRows: checking a list of changed rows (what
// cutover does before and under its fence) must say which of the keys asked
// for differ — changed, missing and extra rows, text and integer key parts —
// so only those are checked again, not the whole list.
func TestCompareKeysTellsWhichRows(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE votes (region text, id integer, n integer, PRIMARY KEY (region, id))`)
	p.PG(t, `INSERT INTO votes SELECT CASE WHEN g % 2 = 0 THEN 'Seoul 서울' ELSE 'a''b\c' END, g, g FROM generate_series(1, 3000) g`)
	testenv.MustRun(t, 0, args(p, "copy")...)
	p.My(t, `UPDATE votes SET n = -1 WHERE id = 1500`)      // changed
	p.My(t, `DELETE FROM votes WHERE id = 2999`)            // missing on the target
	p.PG(t, `DELETE FROM votes WHERE id = 7`)               // extra on the target
	p.My(t, `UPDATE votes SET n = -2 WHERE id IN (10, 20)`) // changed, but not asked for

	ctx := context.Background()
	srcCfg, tgtCfg, err := config.Resolve(p.SourceURL, p.TargetURL, nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	src, err := postgres.Connect(ctx, srcCfg.ConnString(), srcCfg.Redacted(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tgt, err := mysql.Connect(ctx, tgtCfg, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	pl, err := plan.Build(ctx, src, plan.Options{Tables: []string{"votes"}, Flavor: tgt.Flavor})
	if err != nil {
		t.Fatal(err)
	}
	region := func(id int) string {
		if id%2 == 0 {
			return "Seoul 서울"
		}
		return `a'b\c`
	}
	// Every key from 1 to 3000 except 10 and 20, in an order unlike the table's.
	var keys [][]string
	for id := 3000; id >= 1; id-- {
		if id != 10 && id != 20 {
			keys = append(keys, []string{region(id), strconv.Itoa(id)})
		}
	}
	diffs, err := verify.CompareKeys(ctx, src, tgt, pl.Tables[0], keys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		if d.Index < 0 || d.Index >= len(keys) {
			t.Fatalf("diff %s key %s: Index %d does not point into the %d keys asked for", d.Kind, d.Key, d.Index, len(keys))
		}
		got = append(got, d.Kind+" "+keys[d.Index][1])
	}
	sort.Strings(got)
	want := []string{"changed 1500", "extra 7", "missing 2999"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("differing rows told by CompareKeys: %q, want %q", got, want)
	}
}
