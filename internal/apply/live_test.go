package apply_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/apply"
	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/testenv"
)

// liveTable plans the source table name of p (with the given column
// mappings) and creates its target table.
func liveTable(tb testing.TB, p *testenv.Pair, name string, columns map[string]config.ColumnMapping) (*apply.Table, *sql.DB) {
	tb.Helper()
	ctx := context.Background()
	src, tgt := p.Handles(tb)
	pl, err := plan.Build(ctx, src, plan.Options{Tables: []string{name}, Flavor: tgt.Flavor,
		Mappings: map[string]config.TableMapping{name: {Columns: columns}}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := pl.Err(); err != nil {
		tb.Fatal(err)
	}
	if err := copier.CreateTargetTable(ctx, tgt, pl.Tables[0]); err != nil {
		tb.Fatal(err)
	}
	return apply.NewTable(pl.Tables[0]), tgt.DB
}

func newApplier(db *sql.DB) *apply.Applier {
	return apply.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context, *sql.Tx) error { return nil })
}

func row(vals ...string) apply.Row {
	r := make(apply.Row, len(vals))
	for i, v := range vals {
		r[i] = apply.Val{Data: []byte(v)}
	}
	return r
}

// BenchmarkApply measures how many changes a second the applier writes to
// the live target, in batches of the sync's default 5,000 changes: whole
// rows (upserts, half of them new) and partial rows (patches, one UPDATE
// each).
func BenchmarkApply(b *testing.B) {
	const batch = 5000
	for _, kind := range []apply.OpKind{apply.Upsert, apply.Patch} {
		name := map[apply.OpKind]string{apply.Upsert: "upserts", apply.Patch: "patches"}[kind]
		b.Run(name, func(b *testing.B) {
			p := testenv.NewPair(b)
			p.PG(b, `CREATE TABLE bench (id bigint PRIMARY KEY, amount numeric(12,2), note text, at timestamptz)`)
			t, db := liveTable(b, p, "bench", nil)
			a := newApplier(db)
			ctx := context.Background()
			write := func(n, round int, kind apply.OpKind) {
				for i := range batch {
					id := strconv.Itoa(n*batch/2 + i)
					r := row(id, fmt.Sprintf("%d.%02d", i, round%100), "note "+id+" round "+strconv.Itoa(round), "2024-01-02 03:04:05.123456")
					if kind == apply.Patch {
						r[3] = apply.Val{Unchanged: true}
					}
					a.Add(apply.Op{Kind: kind, Table: t, Key: id, Row: r})
				}
				if err := a.Commit(ctx, nil); err != nil {
					b.Fatal(err)
				}
			}
			if kind == apply.Patch {
				for n := range b.N + 1 {
					write(n, 0, apply.Upsert)
				}
			}
			b.ResetTimer()
			for n := range b.N {
				write(n, n+1, kind)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// TestApplyRefusesChangedValue: MariaDB rounds a value into a narrower
// DECIMAL with only a note (1265), which strict mode lets through. Whether
// the stream upserts, patches or bulk-loads it, the applier must stop with
// the table, key and column named, and store nothing of the batch.
func TestApplyRefusesChangedValue(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,3), label text)`)
	tbl, db := liveTable(t, p, "prices", map[string]config.ColumnMapping{"amount": {Type: "DECIMAL(10,2)"}})
	a := newApplier(db)
	ctx := context.Background()
	if _, err := db.Exec(`INSERT INTO prices VALUES (1, 1.00, 'one')`); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		t.Helper()
		var s string
		if err := db.QueryRow(`SELECT CONCAT_WS(' ', COUNT(*), SUM(amount), SUM(CRC32(CONCAT_WS(',', id, amount, label)))) FROM prices`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	check := func(what string, wantKey string, ops ...apply.Op) {
		t.Helper()
		before := snapshot()
		for _, op := range ops {
			a.Add(op)
		}
		err := a.Commit(ctx, nil)
		if code := failure.Code(err); code != "SLUICE-APPLY-TARGETWARN" || failure.ExitCode(err) != failure.ExitBadRow {
			t.Fatalf("%s: applied with %v (code %s); want SLUICE-APPLY-TARGETWARN, exit 5", what, err, code)
		}
		c := failure.ContextOf(err)
		if c["table"] != "prices" || c["key"] != wantKey || c["column"] != "amount" {
			t.Errorf("%s: error names %v; want table prices, key %s, column amount (%v)", what, c, wantKey, err)
		}
		a = newApplier(db) // the failed batch stays queued in the old one
		if after := snapshot(); after != before {
			t.Errorf("%s: the refused batch changed the target (rows, sum, checksum: %s, was %s)", what, after, before)
		}
	}
	upsert := func(id, amount string) apply.Op {
		return apply.Op{Kind: apply.Upsert, Table: tbl, Key: id, Row: row(id, amount, "x")}
	}
	check("an upsert", "id=2", upsert("2", "1.005"))
	var many []apply.Op
	for i := 10; i < 30; i++ {
		amount := "2.50"
		if i == 17 {
			amount = "2.505"
		}
		many = append(many, upsert(strconv.Itoa(i), amount))
	}
	check("the 8th row of a multi-row upsert", "id=17", many...)
	check("an update of one row", "id=1", upsert("1", "0.125"))
	patch := row("1", "3.333", "")
	patch[2] = apply.Val{Unchanged: true}
	check("a patch (unchanged TOAST)", "id=1", apply.Op{Kind: apply.Patch, Table: tbl, Key: "1", Row: patch})
	// patches go many to a round trip: the one with the warning is named,
	// and an error in the middle of a round trip is reported, not skipped
	if _, err := db.Exec(`INSERT INTO prices SELECT seq, 1.00, 'x' FROM seq_1000_to_1499`); err != nil {
		t.Fatal(err)
	}
	patches := func(badAt int, bad string) []apply.Op {
		var ops []apply.Op
		for i := 1000; i < 1500; i++ {
			r := row(strconv.Itoa(i), "1.25", "")
			if i == badAt {
				r[1] = apply.Val{Data: []byte(bad)}
			}
			r[2] = apply.Val{Unchanged: true}
			ops = append(ops, apply.Op{Kind: apply.Patch, Table: tbl, Key: strconv.Itoa(i), Row: r})
		}
		return ops
	}
	a.Add(apply.Op{Kind: apply.Delete, Table: tbl, Key: "1", Row: row("1", "", "")}) // a barrier-free segment: deletes, then patches
	for _, op := range patches(1300, "not a number") {
		a.Add(op)
	}
	if err := a.Commit(ctx, nil); err == nil || !strings.Contains(err.Error(), "Incorrect decimal value") {
		t.Fatalf("a patch the target refuses, in the middle of a round trip: %v", err)
	}
	a = newApplier(db)
	if _, err := db.Exec(`DELETE FROM prices WHERE id >= 1000`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO prices SELECT seq, 1.00, 'x' FROM seq_1000_to_1499`); err != nil {
		t.Fatal(err)
	}
	check("the 451st of 500 patches", "id=1450", patches(1450, "1.255")...)
	if _, err := db.Exec(`DELETE FROM prices WHERE id >= 1000`); err != nil {
		t.Fatal(err)
	}

	var load []apply.Op
	for i := 100; i < 1600; i++ {
		amount := "4.25"
		if i == 1200 {
			amount = "4.2501"
		}
		load = append(load, apply.Op{Kind: apply.Load, Table: tbl, Key: strconv.Itoa(i), Row: row(strconv.Itoa(i), amount, "x")})
	}
	check("a bulk load of a copied chunk", "id=1200", load...)

	// values the column holds exactly go through, whatever the statement
	a.Add(upsert("1", "1.50"))
	a.Add(upsert("2", "2.000"))
	if err := a.Commit(ctx, nil); err != nil {
		t.Fatalf("exact values refused: %v", err)
	}
}

// A server that counts a write's warnings but lists none of them
// (max_error_count 0; on MySQL a SELECT of @@warning_count also empties the
// list) has still changed a value: the write is refused, not taken for one
// whose warnings were all harmless.
func TestApplyRefusesUnlistedWarnings(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE prices (id int PRIMARY KEY, amount numeric(10,3), label text)`)
	tbl, db := liveTable(t, p, "prices", map[string]config.ColumnMapping{"amount": {Type: "DECIMAL(10,2)"}})
	db.SetMaxOpenConns(1) // one session, so that its max_error_count holds for the applier
	if _, err := db.Exec(`SET SESSION max_error_count = 0`); err != nil {
		t.Fatal(err)
	}
	a := newApplier(db)
	a.Add(apply.Op{Kind: apply.Upsert, Table: tbl, Key: "1", Row: row("1", "1.005", "x")})
	err := a.Commit(context.Background(), nil)
	if failure.Code(err) != "SLUICE-APPLY-TARGETWARN" || !strings.Contains(err.Error(), "did not list") {
		t.Fatalf("a rounded value whose warning the server did not list: %v; want SLUICE-APPLY-TARGETWARN", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM prices`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the refused write is on the target: %d rows (%v)", n, err)
	}
}

// A key move whose row is not on the target yet (its chunk not copied)
// reads the row under the new key from the source as it is now, which may
// be later than the stream: here row A moved 1→2, then 2→3, and B took key
// 2, all before the read. The next move, 2→3, must not carry the row it
// finds under key 2 (B's, read ahead) to key 3 with A's columns: a move out
// of a key read ahead (Ahead) takes the new key's row from the source.
func TestMoveDoesNotCarryRowsReadAhead(t *testing.T) {
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL, big text NOT NULL)`)
	tbl, db := liveTable(t, p, "t", nil)
	src, _ := p.Handles(t)
	ahead := map[string]bool{} // as the sync keeps it: the keys read, until the stream passes them
	tbl.Refetch = func(ctx context.Context, tx *sql.Tx, keys ...string) error {
		split := make([][]string, len(keys))
		for i, k := range keys {
			split[i] = strings.Split(k, "\x00")
			ahead[k] = true
		}
		_, err := copier.CopyKeys(ctx, src, tx, tbl.Plan, split, false)
		return err
	}
	tbl.Ahead = func(key string) bool { return ahead[key] }
	// The source's history: (1, A0, AAA) copied by no chunk yet; UPDATE t
	// SET id = 2, note = 'A1' WHERE id = 1; UPDATE t SET id = 3, note = 'A2'
	// WHERE id = 2; INSERT (2, B, BBB). Its rows now:
	p.PG(t, `INSERT INTO t VALUES (2, 'B', 'BBB'), (3, 'A2', 'AAA')`)
	unchanged := apply.Val{Unchanged: true}
	a := newApplier(db)
	a.Add(apply.Op{Kind: apply.Move, Table: tbl, Key: "2", OldKeyID: "1", Row: apply.Row{{Data: []byte("2")}, {Data: []byte("A1")}, unchanged}, OldKey: row("1", "", "")})
	a.Add(apply.Op{Kind: apply.Move, Table: tbl, Key: "3", OldKeyID: "2", Row: apply.Row{{Data: []byte("3")}, {Data: []byte("A2")}, unchanged}, OldKey: row("2", "", "")})
	a.Add(apply.Op{Kind: apply.Upsert, Table: tbl, Key: "2", Row: row("2", "B", "BBB")})
	if err := a.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	rows, err := db.Query(`SELECT CONCAT_WS(' ', id, note, big) FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if want := "2 B BBB, 3 A2 AAA"; strings.Join(got, ", ") != want {
		t.Errorf("target rows: %s; want the source's: %s", strings.Join(got, ", "), want)
	}
}
