package copier_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-db/sluice/internal/config"
	"github.com/sluice-db/sluice/internal/copier"
	"github.com/sluice-db/sluice/internal/failure"
	"github.com/sluice-db/sluice/internal/plan"
	"github.com/sluice-db/sluice/internal/testenv"
)

// TestExistingTargetTableMustBeSluices: an empty target table that exists
// already is written into only when it is the table sluice would create.
// One sluice created itself (a run stopped before it recorded the table),
// with every kind of mapping and the types the config sets, is taken as it
// is; each deviation that would change values without a word (a collation
// that makes 'Résumé' equal 'resume', fewer digits of a second, a narrower
// decimal, another length, NOT NULL, an extra or missing column, no key) is
// refused before anything is written, naming table and column, found and
// expected, and how to align it.
func TestExistingTargetTableMustBeSluices(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
	p.PG(t, `CREATE TABLE words (
		w text PRIMARY KEY,
		id bigserial UNIQUE,
		n int NOT NULL DEFAULT 0,
		price numeric(10,3),
		score numeric(10,3),
		cost money,
		ratio real,
		big double precision,
		flag boolean DEFAULT true,
		code char(4),
		name varchar(40),
		body text,
		data bytea,
		born date,
		at time(3),
		seen timestamp NOT NULL DEFAULT now(),
		seen_tz timestamptz(0),
		uid uuid,
		doc jsonb,
		tags int[],
		ip inet,
		span interval,
		feel mood,
		stamp timestamp,
		renamed text)`)
	src, tgt := p.Handles(t)
	ctx := context.Background()
	pl, err := plan.Build(ctx, src, plan.Options{Tables: []string{"words"}, Flavor: tgt.Flavor,
		Mappings: map[string]config.TableMapping{"words": {Columns: map[string]config.ColumnMapping{
			"score":   {Type: "DECIMAL(12,2)"},
			"stamp":   {Type: "DATETIME(0)"},
			"data":    {Type: "MEDIUMBLOB"},
			"renamed": {Rename: "label", Type: "VARCHAR(100)"},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Err(); err != nil {
		t.Fatal(err)
	}
	table := pl.Tables[0]
	if err := copier.CreateTargetTable(ctx, tgt, table); err != nil {
		t.Fatalf("create: %v", err)
	}
	// a run that created the table and stopped: the next run takes it
	if err := copier.CreateTargetTable(ctx, tgt, table); err != nil {
		t.Fatalf("the table sluice created itself is refused: %v", err)
	}

	for _, tc := range []struct {
		name   string
		alter  string // turns sluice's table into the one found
		column string
		wants  []string // in the message
	}{
		{"default collation", "MODIFY w varchar(768) COLLATE utf8mb4_general_ci NOT NULL", "w", []string{"utf8mb4_general_ci", "utf8mb4_nopad_bin"}},
		{"a second's digits", "MODIFY seen datetime NOT NULL DEFAULT current_timestamp()", "seen", []string{"column seen is datetime NOT NULL", "expected datetime(6) NOT NULL"}},
		{"narrower decimal", "MODIFY price decimal(10,2)", "price", []string{"decimal(10,2)", "decimal(10,3)"}},
		{"the source's type where the mapping sets one", "MODIFY score decimal(10,3)", "score", []string{"decimal(10,3)", "expected decimal(12,2)"}},
		{"a shorter varchar", "MODIFY name varchar(20) COLLATE utf8mb4_nopad_bin", "name", []string{"varchar(20)", "varchar(40)"}},
		{"NOT NULL", "MODIFY body longtext COLLATE utf8mb4_nopad_bin NOT NULL", "body", []string{"NOT NULL"}},
		{"ON UPDATE", "MODIFY seen datetime(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6)", "seen", []string{"ON UPDATE"}},
		{"missing column", "DROP COLUMN big", "big", []string{"column big is missing", "ADD COLUMN `big` DOUBLE"}},
		{"extra column", "ADD COLUMN note text", "note", []string{"column note", "not one sluice writes", "DROP COLUMN `note`"}},
		{"no key", "DROP PRIMARY KEY", "", []string{"no unique index on (w)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.My(t, "DROP TABLE IF EXISTS words")
			p.My(t, table.CreateTable)
			p.My(t, "ALTER TABLE words "+tc.alter)
			err := copier.CreateTargetTable(ctx, tgt, table)
			if failure.Code(err) != "SLUICE-TARGET-SHAPE" || failure.ExitCode(err) != failure.ExitSchema {
				t.Fatalf("a target table with %s: %v (code %s); want SLUICE-TARGET-SHAPE, exit 4", tc.name, err, failure.Code(err))
			}
			c := failure.ContextOf(err)
			if c["table"] != "words" || c["column"] != tc.column {
				t.Errorf("error context %v; want table words, column %q", c, tc.column)
			}
			for _, w := range append(tc.wants, "words", "drop the table") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
	// The hint's ALTER aligns the table, which is then taken.
	p.My(t, "DROP TABLE words")
	p.My(t, table.CreateTable)
	p.My(t, "ALTER TABLE words MODIFY w varchar(255) COLLATE utf8mb4_general_ci NOT NULL, MODIFY stamp datetime(6), ADD COLUMN note text")
	err = copier.CreateTargetTable(ctx, tgt, table)
	_, alter, ok := strings.Cut(err.Error(), "Or align it: ")
	if !ok {
		t.Fatalf("no ALTER in the hint: %v", err)
	}
	p.My(t, strings.TrimSuffix(alter, ")"))
	if err := copier.CreateTargetTable(ctx, tgt, table); err != nil {
		t.Fatalf("after the hint's ALTER: %v", err)
	}
}
