package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-db/sluice/internal/testenv"
)

const fewerDigitsConfig = `
tables:
  events:
    columns:
      at:
        type: DATETIME(0)
      took:
        type: TIME(0)
      amount:
        type: DECIMAL(10,2)
      kept:
        type: DATETIME(6)
`

// TestFewerDigitsArePlannedAsNarrowing: a type set by the mapping with fewer
// digits of a second or after the point than the source's may change values
// (MariaDB trims a second's digits without any warning), so the plan says
// so instead of promising that such a value stops the copy; verify then
// reports the rows that changed.
func TestFewerDigitsArePlannedAsNarrowing(t *testing.T) {
	t.Parallel()
	p := testenv.NewPair(t)
	p.PG(t, `CREATE TABLE events (id int PRIMARY KEY, at timestamp DEFAULT now(), took time, amount numeric(10,3), kept timestamp)`)
	p.PG(t, `INSERT INTO events VALUES (1, '2024-01-02 03:04:00.5', '01:02:03.5', 1.250, '2024-01-02 03:04:00.5'),
		(2, '2024-01-02 03:04:00', '01:02:03', 2.500, '2024-01-02 03:04:00.25')`)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(fewerDigitsConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := testenv.MustRun(t, 0, args(p, "plan", "--config", cfg)...).Stdout
	mustContain(t, "plan output", plan,
		"events.at: type set to DATETIME(0) by the mapping (was timestamp without time zone); the target may round or trim values without a warning",
		"events.took: type set to TIME(0) by the mapping (was time without time zone); the target may round or trim values without a warning",
		"events.amount: type set to DECIMAL(10,2) by the mapping (was numeric(10,3)); the target may round or trim values without a warning",
		"events.kept: type set to DATETIME(6) by the mapping (was timestamp without time zone); a value the target cannot convert exactly stops the copy",
		// the default takes the column's digits of a second (MySQL refuses others)
		"`at` DATETIME(0) NULL DEFAULT CURRENT_TIMESTAMP,")

	testenv.MustRun(t, 0, args(p, "copy", "--config", cfg)...) // the trimmed second passes without a warning
	r := testenv.MustRun(t, 1, args(p, "verify", "--config", cfg)...)
	mustContain(t, "verify output", r.Stdout, "events → events: 2 rows compared, DIFFERENT: 1 changed", `changed key "1"`)
}
