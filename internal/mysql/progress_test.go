package mysql_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/chunk"
	"github.com/sluice-db/sluice/internal/mysql"
	"github.com/sluice-db/sluice/internal/testenv"
)

// A chunk plan stored by an earlier sluice (bounds as values joined by the
// unit separator, no bound_format column) still resumes with its own bounds,
// including one whose text also reads as the current form: a composite key
// whose first value is empty and whose second looks like a JSON array.
// Read as JSON, that bound would move the chunk's edge and skip rows.
func TestChunkPlanOfAnEarlierVersionResumesWithItsBounds(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	p.My(t, `CREATE TABLE `+mysql.ChunksTable+` (
		table_name VARCHAR(64) NOT NULL, chunk_no INT NOT NULL, lo LONGTEXT NULL, hi LONGTEXT NULL,
		done BOOLEAN NOT NULL DEFAULT 0, rows_copied BIGINT NOT NULL DEFAULT 0,
		rows_rejected BIGINT NOT NULL DEFAULT 0, finished_at DATETIME(6) NULL,
		PRIMARY KEY (table_name, chunk_no)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
	joined := strings.Join([]string{"", `["a","b"]`}, "\x1f")
	p.My(t, `INSERT INTO `+mysql.ChunksTable+` (table_name, chunk_no, lo, hi, done, rows_copied) VALUES
		('likes', 0, NULL, ?, 1, 10), ('likes', 1, ?, NULL, 0, 0)`, joined, joined)

	tgt := &mysql.Target{DB: p.Target}
	if err := tgt.EnsureProgressTables(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tgt.EnsureProgressTables(ctx); err != nil { // a second run finds the column
		t.Fatal(err)
	}
	got, err := tgt.Chunks(ctx, "likes")
	if err != nil {
		t.Fatal(err)
	}
	bound := []string{"", `["a","b"]`}
	if len(got) != 2 || got[0].Range.Lo != nil || !reflect.DeepEqual(got[0].Range.Hi, bound) ||
		!reflect.DeepEqual(got[1].Range.Lo, bound) || got[1].Range.Hi != nil || !got[0].Done || got[0].Rows != 10 || got[1].Done {
		t.Fatalf("earlier plan read back as %+v; want chunk 0 (done, 10 rows) up to %q and chunk 1 from it", got, bound)
	}

	// Planned again by this version: the same bounds round-trip, and so does
	// one holding the separator.
	odd := []string{"x\x1fy", ""}
	if err := tgt.StartTable(ctx, "likes", "public.likes", []chunk.Range{{Hi: bound}, {Lo: bound, Hi: odd}, {Lo: odd}}, nil); err != nil {
		t.Fatal(err)
	}
	got, err = tgt.Chunks(ctx, "likes")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !reflect.DeepEqual(got[0].Range.Hi, bound) || !reflect.DeepEqual(got[1].Range.Lo, bound) ||
		!reflect.DeepEqual(got[1].Range.Hi, odd) || !reflect.DeepEqual(got[2].Range.Lo, odd) || got[0].Done {
		t.Fatalf("new plan read back as %+v", got)
	}

	// A bound in neither form is refused with the table and chunk named.
	p.My(t, `UPDATE `+mysql.ChunksTable+` SET hi = 'garbage' WHERE table_name = 'likes' AND chunk_no = 1`)
	if _, err := tgt.Chunks(ctx, "likes"); err == nil || !strings.Contains(err.Error(), "chunk 1 of likes") {
		t.Fatalf("corrupt bound: err = %v; want one naming chunk 1 of likes", err)
	}
}

// ChunkDone tells a retried chunk whether its earlier commit went in (its
// answer may have been lost with the connection).
func TestChunkDone(t *testing.T) {
	p := testenv.NewPair(t)
	ctx := context.Background()
	tgt := &mysql.Target{DB: p.Target}
	if err := tgt.EnsureProgressTables(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tgt.StartTable(ctx, "likes", "public.likes", []chunk.Range{{Hi: []string{"100"}}, {Lo: []string{"100"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if done, _, _, err := tgt.ChunkDone(ctx, "likes", 1); err != nil || done {
		t.Fatalf("a chunk not copied: done %v, %v", done, err)
	}
	tx, err := p.Target.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := mysql.MarkChunkDone(ctx, tx, "likes", 1, 70, 2); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if done, rows, rejected, err := tgt.ChunkDone(ctx, "likes", 1); err != nil || !done || rows != 70 || rejected != 2 {
		t.Fatalf("a committed chunk: done %v, %d rows, %d rejected, %v; want done, 70, 2", done, rows, rejected, err)
	}
	if done, _, _, err := tgt.ChunkDone(ctx, "likes", 9); err != nil || done {
		t.Fatalf("a chunk that does not exist: done %v, %v", done, err)
	}
}
